import { randomBytes } from 'node:crypto'
import { rmSync, writeFileSync } from 'node:fs'
import { type Cidr, formatCidr } from '../config/cidr'
import { parseListen } from '../config/listen'
import { resolveSshConfig } from '../config/ssh-config'
import type { SshHostConfig, SshRequest } from '../config/ssh-config-types'
import { localAddressNetworks, resolveNetworks, transportExcludes } from '../config/subnets'
import { TunnelError, errorMessage } from '../errors'
import { type Logger, createLogger, levelFromFlags } from '../observe/logger'
import { selectMethod } from '../platform/choose-method'
import { type HelperClient, startHelper } from '../platform/helper-client'
import { getOriginalDst } from '../platform/original-dst'
import type { CaptureSpec } from '../platform/types'
import { RouteTable } from '../router/route-table'
import { TransparentListener } from '../router/transparent'
import { SshSession } from '../ssh/session'
import { SshDialer } from '../ssh/ssh-dialer'
import { hostKeyVerifierFor } from '../ssh/host-key-verifier'
import { createTtyPrompter } from '../ssh/tty-prompter'
import { runRemote } from '../ssh/remote-exec'
import type { TunnelArgs } from './args'
import { type DnsRuntime, planDns, startDns } from './dns-setup'

/** Everything that must be undone, newest first. Each step is best-effort and logged. */
class Teardown {
  private readonly steps: { what: string; run: () => Promise<unknown> }[] = []
  constructor(private readonly log: Logger) {}
  push(what: string, run: () => Promise<unknown>): void {
    this.steps.unshift({ what, run })
  }
  async run(): Promise<void> {
    for (const s of this.steps.splice(0)) {
      try {
        await s.run()
      } catch (e) {
        this.log.warn('cli', `teardown: ${s.what}: ${errorMessage(e)}`)
      }
    }
  }
}

/**
 * The main command. Order matters for "nothing left behind": validate everything that can be
 * validated offline first, then start the privileged helper (which removes leftovers of dead
 * instances), connect and authenticate SSH, and only then listen and install rules. Any
 * failure unwinds exactly what was done so far.
 */
export async function runTunnel(args: TunnelArgs): Promise<number> {
  const log = createLogger({ level: levelFromFlags(args.verbose, args.quiet) })

  // 1. Offline validation: nothing has been touched yet.
  if (!args.remote) {
    throw new TunnelError('NO_REMOTE', 'no SSH destination given', {
      hint: 'use -r [user@]host[:port] or set SUBNET_TUNNEL_REMOTE',
    })
  }
  if (args.subnets.length === 0) {
    throw new TunnelError('NO_SUBNETS', 'no subnets to tunnel', {
      hint: 'name at least one, e.g. subnet-tunnel -r bastion 10.0.0.0/16 (0/0 for everything)',
    })
  }
  const listen = parseListen(args.listen)
  const includes = await resolveNetworks(args.subnets)
  const userExcludes = await resolveNetworks(args.exclude)
  const dnsPlan = args.dns.enabled ? await planDns(args.dns) : undefined
  const req: SshRequest = {
    destination: args.remote,
    configFile: args.sshConfig,
    port: args.port,
    identities: args.identity,
    jump: args.jump,
    options: args.sshOption,
  }
  const target = await resolveSshConfig(req)
  const hops = await Promise.all(target.proxyJump.map((h) => resolveSshConfig({ destination: h, configFile: args.sshConfig, identities: [], options: [] })))

  const teardown = new Teardown(log)
  let helper: HelperClient | undefined
  try {
    // 2. Privileged side first: fail on a missing firewall before asking for passphrases.
    helper = await startHelper({ log })
    const h = helper
    teardown.push('stop privileged helper', () => h.close())
    const ipv6 = includes.some((c) => c.family === 6) || (dnsPlan?.capture.some((s) => s.includes(':')) ?? false)
    const method = await selectMethod(args.method, (m) => h.probe(m, { ipv6 }))
    log.verbose('fw', `method ${method.method}: ${method.why}`)

    // 3. SSH: connect and authenticate (may prompt on the terminal).
    const prompter = createTtyPrompter()
    const session = new SshSession({
      target,
      hops,
      prompter,
      log,
      makeVerifier: (cfg) => hostKeyVerifierFor(cfg, { prompter, log }),
    })
    teardown.push('close SSH connection', () => session.close())
    await session.start()
    const dialer = new SshDialer(session)

    // DNS: find the remote resolver (the bastion's resolv.conf unless --to-ns), start serving.
    let dns: DnsRuntime | undefined
    if (dnsPlan) {
      const readRemote = async (): Promise<string> => {
        const r = await runRemote(session, 'cat /etc/resolv.conf')
        if (r.code !== 0) throw new Error(`exit ${r.code}: ${(r.stderr || r.stdout).trim().split('\n')[0] ?? ''}`)
        return r.stdout
      }
      const started = await startDns(dnsPlan, { dialer, readRemote, includes, log })
      dns = started
      teardown.push('stop DNS', () => started.stop())
      log.verbose('dns', `capturing DNS to ${dnsPlan.capture.join(', ')}; resolving via ${started.remote.map(fmtDest).join(', ')}`)
    }

    // 4. Routes: the user's subnets, minus excludes, minus our own transport and this machine.
    const own = await transportExcludes(transportHosts(target, hops))
    const local = localAddressNetworks()
    const excludes = [...userExcludes, ...own, ...local]
    for (const c of own) log.verbose('route', `excluding SSH transport address ${formatCidr(c)}`)
    const routes = new RouteTable([
      ...includes.map((cidr) => ({ cidr, action: 'tunnel' as const })),
      ...excludes.map((cidr) => ({ cidr, action: 'direct' as const })),
    ])

    // 5. Listener, then rules: a redirect must never point at a port nobody listens on.
    const listener = new TransparentListener({
      host: listen.host,
      port: listen.port,
      ipv6,
      routes,
      dialer,
      originalDst: getOriginalDst,
      log,
    })
    await listener.start()
    teardown.push('stop listener', () => listener.stop())
    const spec: CaptureSpec = {
      instanceId: randomBytes(4).toString('hex'),
      listenPort: listener.port,
      include: includes,
      exclude: excludes,
      dns: dns?.capture,
    }
    await h.apply(method.method, spec)
    teardown.push('remove firewall rules', () => h.revert())

    if (args.pidfile) {
      writeFileSync(args.pidfile, `${process.pid}\n`)
      const pf = args.pidfile
      teardown.push('remove pidfile', async () => rmSync(pf, { force: true }))
    }
    if (args.quiet < 2) {
      process.stderr.write(
        `subnet-tunnel up: remote ${target.user}@${hostPort(target)}${hops.length ? ` via ${hops.map(hostPort).join(',')}` : ''}` +
          `, subnets ${describeSubnets(includes, userExcludes)}, method ${method.method}, listener ${listen.host}:${listener.port}` +
          (dns ? `, DNS via ${dns.remote.map(fmtDest).join(', ')}${dnsPlan!.domains.length ? ` for ${dnsPlan!.domains.join(', ')}` : ''}` : '') +
          '\n',
      )
    }

    // 6. Run until a signal, or until the helper dies (then the rules may be gone: stop loudly).
    const reason = await waitForStop(helper, session, listener, log)
    log.info('cli', `stopping (${reason})`)
    await teardown.run()
    return reason.startsWith('helper') ? 1 : 0
  } catch (e) {
    await teardown.run()
    throw e
  }
}

/** What the user asked for (automatic excludes of local and transport addresses are left out). */
function describeSubnets(inc: readonly Cidr[], exc: readonly Cidr[]): string {
  const list = inc.map(formatCidr).join(', ')
  return exc.length ? `${list} (excluding ${exc.map(formatCidr).join(', ')})` : list
}

function fmtDest(d: { host: string; port: number }): string {
  return d.host.includes(':') ? `[${d.host}]:${d.port}` : `${d.host}:${d.port}`
}

function hostPort(c: SshHostConfig): string {
  const h = c.hostName.includes(':') ? `[${c.hostName}]` : c.hostName
  return `${h}:${c.port}`
}

/** Hosts our SSH transport connects to from this machine (the first hop, or the target). */
function transportHosts(target: SshHostConfig, hops: readonly SshHostConfig[]): string[] {
  const first = hops[0] ?? target
  if (first.proxyCommand) return [] // we cannot know where a ProxyCommand connects
  return [first.hostName, ...hops.slice(1).map((h) => h.hostName), target.hostName]
}

function waitForStop(helper: HelperClient, session: SshSession, listener: TransparentListener, log: Logger): Promise<string> {
  return new Promise((resolve) => {
    let stopping = false
    const stop = (why: string): void => {
      if (stopping) {
        // A second Ctrl-C: leave now. Closing our end of the helper's stdin makes it revert.
        log.warn('cli', 'forced exit; the helper removes the rules as it exits')
        process.exit(130)
      }
      stopping = true
      resolve(why)
    }
    for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) process.on(sig, () => stop(sig))
    helper.onExit((info) => {
      // Ctrl-C on a terminal reaches the helper too; it reverts and exits on its own. That is
      // not a failure when we are stopping anyway.
      // Our own SIGINT handler may run just after the helper's exit is seen: wait a moment.
      setTimeout(() => {
        if (stopping) return
        log.error('helper', `privileged helper exited unexpectedly (${info.reason}); stopping`)
        stop(`helper exited: ${info.reason}`)
      }, 200)
    })
    session.on('down', (why: unknown) => {
      log.warn('ssh', `connection lost: ${errorMessage(why)}; reconnecting`)
      // Channels of a dead connection end with a clean EOF; reset their clients instead, so
      // no application mistakes a cut-off transfer for a complete one.
      listener.resetAll()
    })
    session.on('up', () => log.info('ssh', 'connection re-established'))
  })
}


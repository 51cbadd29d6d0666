import type { ClientChannel } from 'ssh2'
import { Client } from './ssh2-compat'
import { captureServerOffer, watchAuthMessages } from './ssh2-compat-auth'
import type { SshHostConfig } from '../../config/ssh-config-types'
import { TunnelError, errorMessage, isTunnelError, toTunnelError } from '../../errors'
import type { Logger } from '../../observe/logger'
import { algorithmsFor } from './algorithms'
import { createAuth, type KeyCache } from './auth'
import { tooManyFailures } from './auth-failure'
import { negotiationError } from './negotiation-errors'
import { terminalText } from './terminal-text'
import { mapChannelOpenError, mapConnectError, type Where } from './errors-map'
import { connectTimeoutMs, openTransport, type Transport } from './transport'
import type { HostKeyVerifier, Prompter } from './types'
import { formatHostPort } from '../../config/host-port'

export interface ConnectDeps {
  makeVerifier(cfg: SshHostConfig): HostKeyVerifier
  readonly prompter: Prompter
  readonly log: Logger
  /** Decrypted keys shared across reconnects (see auth.ts). */
  readonly keyCache?: KeyCache
  /** Aborts an attempt in progress (session.close() during a reconnect). */
  readonly signal?: AbortSignal
}

/** Budget for user authentication once the handshake is done (excluding time spent in prompts). */
const AUTH_TIMEOUT_MS = 60_000

/**
 * Connects to target, through each ProxyJump hop in order (outermost first). Each hop's
 * host key is checked by its own verifier. Ending the returned client ends the whole chain.
 * Rejects with a TunnelError naming the host:port and, for inner hosts, the hop they were
 * reached through.
 */
export async function connectChain(target: SshHostConfig, hops: readonly SshHostConfig[], deps: ConnectDeps): Promise<Client> {
  const chain = [...hops, target]
  const clients: Client[] = []
  try {
    for (let i = 0; i < chain.length; i++) {
      const cfg = chain[i]!
      const via = i > 0 ? `via jump host ${chain[i - 1]!.alias}` : undefined
      if (i > 0 && cfg.proxyCommand) deps.log.debug('ssh', `ignoring ProxyCommand of ${cfg.alias}: it is reached through a jump host`)
      const transport = i === 0 ? await openTransport(cfg, deps.log, deps.signal) : await forwardTransport(clients[i - 1]!, chain[i - 1]!, cfg)
      clients.push(await connectOne(cfg, transport, deps, via))
      if (i < chain.length - 1) deps.log.verbose('ssh', `jump host ${cfg.alias} is up`)
    }
  } catch (e) {
    for (const c of clients.reverse()) c.end()
    throw e
  }
  const final = clients[clients.length - 1]!
  if (clients.length > 1) {
    // The hops' channels die with the final client, but the hop connections themselves would
    // stay open: end them, innermost first.
    final.once('close', () => {
      for (const c of clients.slice(0, -1).reverse()) c.end()
    })
  }
  return final
}

/** A direct-tcpip channel from the previous hop to cfg, used as the next client's socket. */
function forwardTransport(prev: Client, prevCfg: SshHostConfig, cfg: SshHostConfig): Promise<Transport> {
  const ms = connectTimeoutMs(cfg)
  return new Promise((resolve, reject) => {
    let done = false
    const timer = setTimeout(() => {
      done = true
      reject(new TunnelError('SSH_CONNECT_TIMEOUT', `ssh: jump host ${prevCfg.alias} did not open a channel to ${formatHostPort(cfg.hostName, cfg.port)} within ${ms / 1000} s`))
    }, ms)
    prev.forwardOut('127.0.0.1', 0, cfg.hostName, cfg.port, (err, ch: ClientChannel) => {
      clearTimeout(timer)
      if (done) {
        ch?.close()
        return
      }
      done = true
      if (err) {
        const ce = mapChannelOpenError(err, { host: cfg.hostName, port: cfg.port }, `jump host ${prevCfg.alias}`)
        const code = ce.reason === 'refused' ? 'SSH_CONNECT_REFUSED' : 'SSH_CONNECT'
        reject(new TunnelError(code, ce.message.replace(/^ssh: open /, 'ssh: connect to '), { hint: ce.hint, cause: err }))
        return
      }
      resolve({ sock: ch, explain: async () => undefined, close: () => ch.close() })
    })
  })
}

/** Runs one SSH client over transport until it is authenticated. */
export function connectOne(cfg: SshHostConfig, transport: Transport, deps: ConnectDeps, via?: string): Promise<Client> {
  const { log } = deps
  const where: Where = { host: cfg.hostName, port: cfg.port, via }
  const verifier = deps.makeVerifier(cfg)
  const client = new Client()
  // The server's KEXINIT lists, for "no matching …" (ssh2 does not keep them).
  let offer: ReturnType<typeof captureServerOffer> = { offer: {}, stop: () => {} }
  let ready = false
  let settled = false
  // Kept aside because ssh2 only reports "Host denied (verification failed)".
  let verifierError: TunnelError | undefined
  let acceptedKey: Buffer | undefined

  // One timer, paused while a human is answering (passphrase, unknown host key question).
  let phase: 'handshake' | 'auth' = 'handshake'
  let paused = 0
  let timer: NodeJS.Timeout | undefined
  const arm = (): void => {
    clearTimeout(timer)
    if (paused > 0 || ready || settled) return
    const ms = phase === 'handshake' ? connectTimeoutMs(cfg) : AUTH_TIMEOUT_MS
    timer = setTimeout(() => {
      const what = phase === 'handshake' ? 'no SSH handshake' : 'authentication did not finish'
      void fail(new TunnelError('SSH_CONNECT_TIMEOUT', `ssh: ${formatHostPort(cfg.hostName, cfg.port)}${via ? ` (${via})` : ''}: ${what} within ${ms / 1000} s`, {
        hint: 'is this really an SSH server? raise ConnectTimeout with -o if the path is slow',
      }))
    }, ms)
  }
  const onPrompt = (active: boolean): void => {
    paused += active ? 1 : -1
    arm()
  }
  // Aborted once the connection is gone: a prompt still open is closed cleanly.
  const gone = new AbortController()
  const auth = createAuth(cfg, { prompter: deps.prompter, log, keyCache: deps.keyCache, onPrompt, signal: gone.signal })

  let resolveP!: (c: Client) => void
  let rejectP!: (e: TunnelError) => void
  const result = new Promise<Client>((res, rej) => {
    resolveP = res
    rejectP = rej
  })

  const fail = async (e: unknown): Promise<void> => {
    if (settled || ready) return
    settled = true
    clearTimeout(timer)
    gone.abort()
    offer.stop()
    deps.signal?.removeEventListener('abort', onAbort)
    const msg = errorMessage(e)
    const authFailed = (e as { level?: string })?.level === 'client-authentication' && /authentication methods failed/i.test(msg)
    let err: TunnelError | undefined = verifierError
    // OpenSSH's sshd disconnects after MaxAuthTries with "Too many authentication failures".
    if (!err && phase === 'auth' && /too many authentication failures/i.test(msg)) err = tooManyFailures(cfg, auth.state, msg)
    if (!err && authFailed) err = auth.failure()
    // "no matching …": OpenSSH's words, the server's offer, and whose fault it is.
    if (!err && phase === 'handshake') err = negotiationError(msg, offer.offer, where)
    // A dead ProxyCommand shows up as a closed socket or a lost handshake; its exit status
    // and stderr say more, whichever of ssh2's events came first.
    if (!err && !isTunnelError(e, 'NOT_CONNECTED')) err = await transport.explain()
    err ??= mapConnectError(e, where)
    client.destroy()
    transport.close()
    rejectP(err)
  }
  const onAbort = (): void => void fail(new TunnelError('NOT_CONNECTED', `ssh: connecting to ${cfg.alias} was cancelled`))
  if (deps.signal?.aborted) {
    void fail(new TunnelError('NOT_CONNECTED', `ssh: connecting to ${cfg.alias} was cancelled`))
    return result
  }
  deps.signal?.addEventListener('abort', onAbort, { once: true })

  client.on('handshake', () => {
    if (phase === 'handshake') {
      offer.stop()
      phase = 'auth'
      arm()
    }
  })
  client.on('ready', () => {
    if (settled) return
    ready = true
    clearTimeout(timer)
    deps.signal?.removeEventListener('abort', onAbort)
    log.verbose('ssh', `authenticated to ${cfg.alias} (${formatHostPort(cfg.hostName, cfg.port)}) as ${cfg.user}`)
    resolveP(client)
  })
  client.on('error', (e: Error & { level?: string }) => {
    // A missing/broken agent is not fatal: ssh2 goes on with the next method.
    if (e.level === 'agent') return log.debug('ssh', `ssh-agent: ${e.message}`)
    if (!ready) void fail(e)
  })
  client.on('close', () => void fail(closedEarly()))
  // A server that closes during authentication has not refused a key: it ran out of patience
  // (LoginGraceTime) or of slots (MaxStartups), or an admin rule ended the login.
  const closedEarly = (): TunnelError =>
    new TunnelError('SSH_CONNECT', `ssh: ${formatHostPort(cfg.hostName, cfg.port)}${via ? ` (${via})` : ''}: connection closed by the server during ${phase === 'auth' ? 'authentication' : 'the handshake'}`, {
      hint:
        phase === 'auth'
          ? 'not a refused key: sshd ends logins slower than its LoginGraceTime (default 120 s) and drops connections over MaxStartups; see the server log'
          : 'check the server logs (sshd may refuse this client: AllowUsers, MaxStartups, tcp wrappers)',
    })
  // The server's Banner, as OpenSSH shows it (unless -qq); its text filtered for the terminal.
  client.on('banner', (text: string) => {
    if (log.enabled('warn')) deps.prompter.notice(terminalText(text).replace(/\n$/, ''))
  })

  try {
    client.connect({
      sock: transport.sock,
      username: cfg.user,
      authHandler: auth.handler,
      hostVerifier: (key: Buffer, verify: (ok: boolean) => void) => {
        // ssh2 calls this again on every re-key; the key cannot change within a connection
        // (and if it did, refuse), so only the first one goes to the verifier.
        if (acceptedKey) return verify(acceptedKey.equals(key))
        onPrompt(true)
        verifier.verify(key).then(
          () => {
            acceptedKey = Buffer.from(key)
            onPrompt(false)
            verify(true)
          },
          (e: unknown) => {
            verifierError = toTunnelError(e, 'SSH_PROTOCOL')
            onPrompt(false)
            verify(false)
          },
        )
      },
      algorithms: algorithmsFor(verifier.preferredAlgorithms(), cfg, log),
      // We time the handshake ourselves: ssh2's readyTimeout would also run while the user
      // types a passphrase.
      readyTimeout: 0,
      keepaliveInterval: cfg.serverAliveInterval > 0 ? cfg.serverAliveInterval * 1000 : 0,
      keepaliveCountMax: cfg.serverAliveCountMax,
      debug: log.enabled('debug') ? (m: string) => { if (!ready) log.debug('ssh', m) } : undefined,
    })
  } catch (e) {
    void fail(e)
    return result
  }
  offer = captureServerOffer(client)
  if (!watchAuthMessages(client, auth.hooks)) log.debug('ssh', 'ssh2 internals moved: server-sig-algs and agent-time failures are not seen')
  arm()
  return result
}

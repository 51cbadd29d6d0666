/**
 * A network-namespace testbed (scripts/testbed) seen from a test file: bring it up in
 * beforeAll, tear it down in afterAll. Teardown also runs from a process 'exit' hook, so a
 * crashed or interrupted test file does not leave namespaces, sshd or the http server behind.
 *
 * Topology and addresses: see the header of scripts/testbed. Each file should use its own
 * testbed (newTestbedName) — names are at most 8 characters.
 */
import { execFileSync } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { run, describeRun, TESTBED_SCRIPT, type RunOptions, type RunResult } from './exec'

export type Role = 'client' | 'bastion' | 'private'

/** What `scripts/testbed env NAME` prints (ST_* variables, prefix removed, camel-cased keys). */
export interface TestbedEnv {
  name: string
  dir: string
  clientNs: string
  bastionNs: string
  privateNs: string
  clientIp: string
  clientIp6: string
  bastionIp: string
  bastionIp6: string
  privateIp: string
  privateIp6: string
  /** Second address of the private host (for "exclude one host, reach its neighbour"). */
  privateAltIp: string
  privateAltIp6: string
  bastionHostname: string
  privateHostname: string
  privateNet: string
  privateNet6: string
  httpPort: number
  echoPort: number
  iperfPort: number
  /** A port on the private host where nothing listens. */
  closedPort: number
  /** The private DNS server (dnsmasq on the private host), authoritative for dnsDomain. */
  dnsIp: string
  dnsIp6: string
  /** corp.internal */
  dnsDomain: string
  /** A name only the private DNS server knows: A privateIp, AAAA privateIp6. */
  dnsName: string
  /** A second private name: A privateAltIp only. */
  dnsAltName: string
  /** TXT records of ~1.9 KB in all: truncated over UDP (even with EDNS 1232), complete over TCP. */
  dnsBigName: string
  /** TTL of the private zone's answers and of its negative answers (SOA), seconds. */
  dnsTtl: number
  /** The bastion's resolver stub (dnsmasq forwarding to dnsIp), named in its resolv.conf. */
  bastionResolver: string
  /** 1 when the testbed was built with a client resolver (UpOptions.clientDns), else 0. */
  clientDns: number
  /** A name only the client's own resolver (dnsmasq on the client's 127.0.0.1, clientDns only) knows. */
  outsideName: string
  outsideIp: string
  /** Addresses on the client–bastion link where nothing runs: resolvers unreachable without a tunnel. */
  unreachableNs: string
  unreachableNs6: string
  /** dnsmasq query logs (--log-queries) of the private server, the bastion stub and the client resolver. */
  dnsLogPrivate: string
  dnsLogBastion: string
  dnsLogClient: string
  sshKey: string
  sshKeyFwdonly: string
  sshKeyNofwd: string
  /** restrict,port-forwarding,command="/usr/sbin/nologin": forwards, but every exec runs nologin. */
  sshKeyNoexec: string
  knownHosts: string
  /** known_hosts pinning a different key for the bastion's addresses. */
  knownHostsBad: string
  /** known_hosts with no entry at all. */
  knownHostsEmpty: string
  /** A key the bastion does not accept. */
  sshKeyUnauthorized: string
  /**
   * ssh_config with Host aliases: bastion (v4), bastion6, bastion-badkey (known_hosts pins another
   * key), bastion-nokey (empty known_hosts), bastion-badauth (unauthorized key), bastion-fwdonly
   * (restrict,port-forwarding), bastion-nofwd (restrict: direct-tcpip prohibited), bastion-noexec
   * (forwarding allowed, exec runs nologin).
   */
  sshConfig: string
  /** URL path of the 64 MiB random file on the private http server. */
  bigFile: string
  bigFileBytes: number
  bigFileSha256: string
  /** The main sshd's log (LogLevel VERBOSE): "Accepted publickey for root …" once per login. */
  sshdLog: string
  /** 1 when built with UpOptions.authVariants (`up --auth-variants`), else 0; the fields below exist only then. */
  authVariants: number
  // --- auth variants (scripts/testbed-auth.bash; narrowed by authVariantsOf in ./testbed-auth) ---
  // Aliases in sshConfig: bastion-cert, bastion-cert-file, bastion-cert-agent, bastion-hostcert,
  // bastion-hostcert-badca, bastion-hostcert-plain, bastion-rsa512, bastion-pq, bastion-kbd.
  // Every variant's sshd logs at VERBOSE to its own *Log file.
  /** Public keys of the user CA (TrustedUserCAKeys on usercertPort) and the host CA (knownHostsCa). */
  userCa?: string
  hostCa?: string
  /** sshd that accepts certificates by userCa only (no authorized_keys), principal root. */
  usercertPort?: number
  usercertLog?: string
  /** Key with its certificate beside it (usercertKey + "-cert.pub"): alias bastion-cert. */
  usercertKey?: string
  usercertCert?: string
  /** Key whose certificate is elsewhere, named by CertificateFile: alias bastion-cert-file. */
  usercertFileKey?: string
  usercertFileCert?: string
  /** Key + certificate that `scripts/testbed agent NAME` (startAgent) loads: alias bastion-cert-agent. */
  agentKey?: string
  agentCert?: string
  /** sshd whose HostCertificate is signed by hostCa: alias bastion-hostcert. */
  hostcertPort?: number
  hostcertLog?: string
  /** sshd whose HostCertificate is signed by another CA: alias bastion-hostcert-badca (refused). */
  hostcertBadcaPort?: number
  hostcertBadcaLog?: string
  /** known_hosts with only `@cert-authority` (hostCa) for the bastion's names on ports 22, hostcert*Port. */
  knownHostsCa?: string
  /** sshd with PubkeyAcceptedAlgorithms rsa-sha2-512: alias bastion-rsa512 (key sshKeyRsa). */
  rsa512Port?: number
  rsa512Log?: string
  sshKeyRsa?: string
  /** sshd whose only KEX is pqKex (mlkem768x25519-sha256 or sntrup761x25519-sha512@openssh.com): alias bastion-pq. */
  pqPort?: number
  pqLog?: string
  pqKex?: string
  /** sshd with AuthenticationMethods publickey,keyboard-interactive (PAM): alias bastion-kbd, user kbdUser. */
  kbdPort?: number
  kbdLog?: string
  /** Throwaway local user (removed by down), authorized sshKey, password in kbdPasswordFile (root-only). */
  kbdUser?: string
  kbdPasswordFile?: string
  /** Script that prints the password: SSH_ASKPASS=kbdAskpass SSH_ASKPASS_REQUIRE=force. */
  kbdAskpass?: string
}

const NUMERIC = new Set([
  'httpPort', 'echoPort', 'iperfPort', 'closedPort', 'bigFileBytes', 'dnsTtl', 'clientDns',
  'authVariants', 'usercertPort', 'hostcertPort', 'hostcertBadcaPort', 'rsa512Port', 'pqPort', 'kbdPort',
])

/**
 * Parses ST_KEY='value' lines as printed by `scripts/testbed env` (a quote inside is '\''),
 * strictly: any other non-empty line is an error. Exported for its unit test.
 */
export function parseTestbedEnv(text: string): TestbedEnv {
  const out: Record<string, string | number> = {}
  for (const line of text.split('\n')) {
    if (line.trim() === '') continue
    const m = /^ST_([A-Z0-9_]+)='((?:[^']|'\\'')*)'$/.exec(line)
    if (!m) throw new Error(`testbed env: unexpected line ${JSON.stringify(line)}`)
    const key = m[1]!.toLowerCase().replace(/_([a-z0-9])/g, (_, c: string) => c.toUpperCase())
    const value = m[2]!.replace(/'\\''/g, "'")
    out[key] = NUMERIC.has(key) ? Number(value) : value
  }
  for (const k of ['name', 'dir', 'clientNs', 'sshConfig', 'privateIp', 'bigFileSha256']) {
    if (out[k] === undefined) throw new Error(`testbed env: missing ST_ variable for ${k} in:\n${text}`)
  }
  return out as unknown as TestbedEnv
}

/** A unique testbed name: prefix (≤ 3 chars, [a-z0-9]) + random, 8 characters at most. */
export function newTestbedName(prefix: string): string {
  if (!/^[a-z0-9]{1,3}$/.test(prefix)) throw new Error(`bad testbed prefix ${prefix}`)
  const rnd = randomBytes(8).toString('hex').replace(/[^a-z0-9]/g, '')
  return (prefix + rnd).slice(0, 8)
}

const live = new Set<string>()
let exitHookInstalled = false

function installExitHook(): void {
  if (exitHookInstalled) return
  exitHookInstalled = true
  // 'exit' handlers must be synchronous: execFileSync is the point.
  process.on('exit', () => {
    for (const name of live) {
      try {
        execFileSync(TESTBED_SCRIPT, ['down', name], { stdio: 'ignore', timeout: 20_000 })
      } catch {
        // best effort: nothing else can be done while exiting
      }
    }
  })
}

export interface UpOptions {
  /**
   * Also run a resolver in the client namespace (dnsmasq on 127.0.0.1:53, nsswitch `files dns`):
   * it knows only env.outsideName. Off by default, because then the client namespace runs no
   * process at all until a test starts one.
   */
  clientDns?: boolean
  /** Soft open-files limit of the bastion's sshd and its sessions (`up --sshd-nofile N`). */
  sshdNofile?: number
  /**
   * Also start the authentication variants (`up --auth-variants`): sshd with user and host
   * certificates, rsa-sha2-512 only, a post-quantum KEX only, key + keyboard-interactive (PAM) —
   * see TestbedEnv and ./testbed-auth. Makes a throwaway local user, removed by down().
   */
  authVariants?: boolean
}

export class Testbed {
  private constructor(readonly env: TestbedEnv) {}

  get name(): string {
    return this.env.name
  }

  /** Builds namespaces, sshd and services (scripts/testbed up); throws with its stderr on failure. */
  static async up(name: string, opts: UpOptions = {}): Promise<Testbed> {
    installExitHook()
    live.add(name)
    const flags = [...(opts.clientDns ? ['--client-dns'] : []), ...(opts.sshdNofile ? ['--sshd-nofile', String(opts.sshdNofile)] : [])]
    if (opts.authVariants) flags.push('--auth-variants')
    const up = await run([TESTBED_SCRIPT, 'up', name, ...flags], { timeoutMs: 60_000, env: { ...process.env, TESTBED_QUIET: '1' } })
    if (up.code !== 0) {
      await run([TESTBED_SCRIPT, 'down', name], { timeoutMs: 30_000 })
      live.delete(name)
      throw new Error(`scripts/testbed up ${name} failed: ${describeRun(up)}`)
    }
    const env = await run([TESTBED_SCRIPT, 'env', name])
    if (env.code !== 0) throw new Error(`scripts/testbed env ${name} failed: ${describeRun(env)}`)
    return new Testbed(parseTestbedEnv(env.stdout))
  }

  /** Kills the testbed's processes, deletes its namespaces and state. Safe to call twice. */
  async down(): Promise<void> {
    const r = await run([TESTBED_SCRIPT, 'down', this.name], { timeoutMs: 30_000 })
    live.delete(this.name)
    if (r.code !== 0) throw new Error(`scripts/testbed down ${this.name} failed: ${describeRun(r)}`)
  }

  ns(role: Role): string {
    return role === 'client' ? this.env.clientNs : role === 'bastion' ? this.env.bastionNs : this.env.privateNs
  }

  /** argv prefix that runs a command inside a namespace. */
  nsArgv(role: Role, argv: readonly string[]): string[] {
    return ['ip', 'netns', 'exec', this.ns(role), ...argv]
  }

  /** Runs argv inside a namespace to completion. */
  exec(role: Role, argv: readonly string[], opts?: RunOptions): Promise<RunResult> {
    return run(this.nsArgv(role, argv), opts)
  }

  /** Pids of every process inside a namespace (for "nothing left running" checks). */
  async pids(role: Role): Promise<number[]> {
    const r = await run(['ip', 'netns', 'pids', this.ns(role)])
    return r.stdout.split('\n').filter(Boolean).map(Number)
  }

  /** Polls until no process is left in a namespace, or withinMs passes; returns what is left. */
  async waitForNoPids(role: Role, withinMs = 2_000): Promise<number[]> {
    const deadline = Date.now() + withinMs
    for (;;) {
      const pids = await this.pids(role)
      if (pids.length === 0 || Date.now() >= deadline) return pids
      await new Promise((r) => setTimeout(r, 100))
    }
  }

  /** URL of the private host's http server; host may be an IPv6 literal. */
  url(host: string, path = '/', port = this.env.httpPort): string {
    const h = host.includes(':') ? `[${host}]` : host
    return `http://${h}:${port}${path}`
  }
}

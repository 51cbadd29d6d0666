/**
 * What `sudo subnet-tunnel demo` needs on the machine, and installing it: on a fresh Debian or
 * Ubuntu the first README command must work, so the demo says which packages are missing and
 * why, then installs them with apt-get — unless --no-install, when it only says the command.
 */
import { spawn } from 'node:child_process'
import * as fs from 'node:fs'
import * as path from 'node:path'
import { TunnelError } from '../errors'

export interface DemoNeed {
  /** A program (found on PATH or in the sbin directories) or an absolute path. */
  readonly tool: string
  readonly pkg: string
  readonly why: string
}

/** The demo's needs (scripts/demo checks the same before it starts). */
export const DEMO_NEEDS: readonly DemoNeed[] = [
  { tool: '/usr/sbin/sshd', pkg: 'openssh-server', why: "the demo's bastion runs a real sshd" },
  { tool: 'ssh-keygen', pkg: 'openssh-client', why: 'keys for that sshd (and the OpenSSH engine)' },
  { tool: 'ip', pkg: 'iproute2', why: 'network namespaces and links' },
  { tool: 'curl', pkg: 'curl', why: 'the client that fetches a page through the tunnel' },
  { tool: 'python3', pkg: 'python3', why: 'the web server on the private network' },
  { tool: 'iperf3', pkg: 'iperf3', why: 'the throughput check' },
  { tool: 'sysctl', pkg: 'procps', why: 'routing settings inside the namespaces' },
]

/** nft or iptables, either will do. */
const FIREWALL: DemoNeed = { tool: 'nft', pkg: 'nftables', why: 'the redirect rules (nftables, or iptables)' }

/** The needs not met here. `exists`: injectable (tests). */
export function missingDemoNeeds(envPath = process.env.PATH ?? '', exists: (p: string) => boolean = fs.existsSync): DemoNeed[] {
  const dirs = [...envPath.split(':').filter(Boolean), '/usr/sbin', '/sbin', '/usr/bin', '/bin']
  const found = (tool: string): boolean => (tool.startsWith('/') ? exists(tool) : dirs.some((d) => exists(path.join(d, tool))))
  const missing = DEMO_NEEDS.filter((n) => !found(n.tool))
  if (!found('nft') && !found('iptables')) missing.push(FIREWALL)
  return missing
}

/** Runs one command (argv), inheriting the terminal; resolves its exit code. Injectable (tests). */
export type Runner = (argv: readonly string[]) => Promise<number>

export const runInherit: Runner = (argv) =>
  new Promise((resolve) => {
    const c = spawn(argv[0]!, argv.slice(1), { stdio: 'inherit', env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' } })
    c.on('error', () => resolve(127))
    c.on('close', (code) => resolve(code ?? 1))
  })

/**
 * Makes sure the demo's packages are installed: says what is missing and why, then runs
 * `apt-get update` and `apt-get install` (argv lists). `install: false` (--no-install) and a
 * machine without apt-get: a DEMO_DEPS error that gives the command instead.
 */
export async function ensureDemoNeeds(o: { install: boolean; say: (line: string) => void; missing?: DemoNeed[]; run?: Runner; hasApt?: boolean }): Promise<void> {
  const missing = o.missing ?? missingDemoNeeds()
  if (missing.length === 0) return
  const pkgs = missing.map((m) => m.pkg)
  const command = `apt-get install -y --no-install-recommends ${pkgs.join(' ')}`
  o.say(`subnet-tunnel demo: ${missing.length === 1 ? 'a package is' : 'packages are'} missing here:`)
  for (const m of missing) o.say(`  ${m.pkg.padEnd(16)} ${m.why}`)
  const hasApt = o.hasApt ?? fs.existsSync('/usr/bin/apt-get')
  if (!o.install || !hasApt) {
    throw new TunnelError('DEMO_DEPS', `the demo needs ${pkgs.join(', ')}`, {
      hint: hasApt ? `install them: sudo ${command}` : 'install them with your package manager (no apt-get here)',
    })
  }
  o.say(`installing them: apt-get update && ${command}   (--no-install: do not)`)
  const run = o.run ?? runInherit
  const updated = await run(['apt-get', 'update'])
  if (updated !== 0) o.say(`apt-get update exited ${updated}; trying the install anyway`)
  const code = await run(['apt-get', 'install', '-y', '--no-install-recommends', ...pkgs])
  if (code !== 0) {
    throw new TunnelError('DEMO_DEPS', `apt-get install exited ${code}`, { hint: `see apt-get's message above; the command was: sudo ${command}` })
  }
}

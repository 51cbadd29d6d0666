import { TunnelError } from '../errors'
import { type FoundInstance, requestStop } from '../status/control-client'
import { instancesHere } from './status'

/** How long `stop` waits for an instance to finish its teardown (rules, SSH, helper). */
const EXIT_WAIT_MS = 30_000

/**
 * The instances `stop TARGET` means: an instance id or a unique start of one, else every
 * instance started from profile TARGET or with remote TARGET. No target: the only instance.
 */
export function selectToStop(found: readonly FoundInstance[], target: string | undefined, all: boolean): FoundInstance[] {
  const list = (fs: readonly FoundInstance[]): string =>
    fs.map((f) => `${f.status.instanceId} (pid ${f.status.pid}${f.status.profile ? `, profile ${f.status.profile}` : ''}, ${f.status.remotes.map((r) => r.name).join(', ') || 'no remote'})`).join('; ')
  if (all) return [...found]
  if (target === undefined) {
    if (found.length <= 1) return [...found]
    throw new TunnelError('USAGE', `${found.length} instances are running: ${list(found)}`, {
      hint: 'say which: subnet-tunnel stop ID (or a profile or remote name), or subnet-tunnel stop --all',
    })
  }
  const exact = found.filter((f) => f.status.instanceId === target)
  if (exact.length > 0) return exact
  const byId = found.filter((f) => f.status.instanceId.startsWith(target))
  if (byId.length > 1) {
    throw new TunnelError('USAGE', `"${target}" starts more than one instance id: ${list(byId)}`, { hint: 'give more of the id' })
  }
  if (byId.length === 1) return byId
  return found.filter((f) => f.status.profile === target || f.status.remotes.some((r) => r.name === target))
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0)
    return true
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM'
  }
}

async function waitExit(pid: number, ms: number): Promise<boolean> {
  const deadline = Date.now() + ms
  while (alive(pid)) {
    if (Date.now() > deadline) return false
    await new Promise((r) => setTimeout(r, 50))
  }
  return true
}

/** `subnet-tunnel stop [ID|NAME|--all]`: asks over the control socket, waits for the exit. */
export async function runStop(target: string | undefined, all: boolean): Promise<number> {
  const { here, elsewhere } = await instancesHere(false, true)
  const chosen = selectToStop(here, target, all)
  if (chosen.length === 0) {
    const others = elsewhere > 0 ? ` (${elsewhere} in other network namespaces are not stopped from here)` : ''
    throw new TunnelError('CONTROL', target === undefined ? `no running instance${others}` : `no running instance matches "${target}"${others}`, {
      hint: 'subnet-tunnel status lists them',
    })
  }
  let failed = 0
  await Promise.all(
    chosen.map(async (f) => {
      const s = f.status
      const name = `instance ${s.instanceId} (pid ${s.pid}${s.profile ? `, profile ${s.profile}` : ''})`
      await requestStop(f.socketPath)
      if (await waitExit(s.pid, EXIT_WAIT_MS)) process.stderr.write(`subnet-tunnel: stopped ${name}\n`)
      else {
        failed++
        process.stderr.write(`subnet-tunnel: ${name} is still stopping after ${EXIT_WAIT_MS / 1000} s\n`)
      }
    }),
  )
  return failed > 0 ? 1 : 0
}

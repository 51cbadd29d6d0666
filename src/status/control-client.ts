/**
 * The `subnet-tunnel status` side of the control socket: find every instance's socket, ask each
 * for its status, clean up sockets of instances that died without removing theirs.
 */
import { promises as fs } from 'node:fs'
import net from 'node:net'
import path from 'node:path'
import { TunnelError, errorMessage } from '../errors'
import { defaultControlDir, ensureControlDir } from './control-server'
import type { StatusSnapshot } from './status-types'

/** Largest answer we accept (a status with thousands of connections is a few MB at most). */
const MAX_RESPONSE_BYTES = 64 * 1024 * 1024

export interface ListOptions {
  /** Default defaultControlDir(). */
  readonly dir?: string
  /** Per instance; a busy or wedged instance is skipped after this. Default 2000 ms. */
  readonly timeoutMs?: number
  /** Ask for the brief status (no connections, no process lookups): enough to find instances.
   * Instances of older versions ignore it and answer in full. */
  readonly brief?: boolean
}

/** A running instance as found through its control socket. */
export interface FoundInstance {
  readonly socketPath: string
  readonly status: StatusSnapshot
}

/**
 * Status of every running instance, oldest first. Sockets that refuse connections belong to
 * dead instances and are removed; ones that time out are skipped but kept. No directory means
 * no instances. Throws CONTROL when the directory is not safely ours.
 */
export async function listInstances(opts: ListOptions = {}): Promise<StatusSnapshot[]> {
  return (await findInstances(opts)).map((f) => f.status)
}

/** listInstances, with each instance's socket (to ask it to stop). */
export async function findInstances(opts: ListOptions = {}): Promise<FoundInstance[]> {
  const dir = opts.dir ?? defaultControlDir()
  if (!(await ensureControlDir(dir, false))) return []
  const names = (await fs.readdir(dir)).filter((n) => n.endsWith('.sock'))
  const results = await Promise.all(
    names.map(async (name): Promise<FoundInstance | undefined> => {
      const file = path.join(dir, name)
      try {
        return { socketPath: file, status: await queryInstance(file, opts.timeoutMs, opts.brief) }
      } catch (e) {
        const code = ((e as TunnelError).cause as NodeJS.ErrnoException | undefined)?.code
        // ECONNREFUSED: nobody listens any more (crashed, SIGKILLed). ENOENT: gone meanwhile.
        if (code === 'ECONNREFUSED') await fs.unlink(file).catch(() => {})
        return undefined
      }
    }),
  )
  return results
    .filter((f): f is FoundInstance => f !== undefined)
    .sort((a, b) => a.status.startedAt.localeCompare(b.status.startedAt) || a.status.pid - b.status.pid)
}

/**
 * Asks one instance for its status. Rejects CONTROL (cause: the socket error, e.g. ECONNREFUSED
 * for a stale socket) on connection failure, timeout, or a bad answer.
 */
export async function queryInstance(socketPath: string, timeoutMs = 2000, brief = false): Promise<StatusSnapshot> {
  const res = await request(socketPath, brief ? { op: 'status', brief: true } : { op: 'status' }, timeoutMs)
  if (typeof res.status !== 'object' || res.status === null) throw new TunnelError('CONTROL', `${socketPath}: bad answer`)
  return res.status as StatusSnapshot
}

/** Asks one instance to stop (it answers, then stops as on SIGTERM). Rejects CONTROL. */
export async function requestStop(socketPath: string, timeoutMs = 2000): Promise<void> {
  await request(socketPath, { op: 'stop' }, timeoutMs)
}

/** One request line, one answer line with `ok: true`; anything else rejects CONTROL. */
function request(socketPath: string, req: { op: 'status' | 'stop'; brief?: true }, timeoutMs: number): Promise<Record<string, unknown>> {
  return new Promise((resolve, reject) => {
    const s = net.connect(socketPath)
    let buf = ''
    let size = 0
    let done = false
    const fail = (why: string, cause?: unknown): void => {
      if (done) return
      done = true
      s.destroy()
      reject(new TunnelError('CONTROL', `${socketPath}: ${why}`, { cause }))
    }
    const timer = setTimeout(() => fail(`no answer within ${timeoutMs} ms`), timeoutMs)
    s.setEncoding('utf8')
    s.once('connect', () => s.write(JSON.stringify(req) + '\n'))
    s.on('error', (e) => fail(errorMessage(e), e))
    s.on('data', (chunk: string) => {
      size += chunk.length
      if (size > MAX_RESPONSE_BYTES) return fail('answer too large')
      buf += chunk
    })
    s.on('close', () => {
      clearTimeout(timer)
      if (done) return
      const line = buf.split('\n')[0]
      let res: Record<string, unknown>
      try {
        res = JSON.parse(line) as Record<string, unknown>
      } catch {
        return fail('answer is not JSON')
      }
      if (typeof res !== 'object' || res === null || res.ok !== true) {
        return fail(typeof res?.error === 'string' ? res.error : 'bad answer')
      }
      done = true
      resolve(res)
    })
  })
}

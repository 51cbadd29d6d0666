/**
 * Entry point of the privileged helper (dist/platform/helper/helper-main.js), run as root directly or
 * through sudo by startHelper(). Its only argument is `--allow-tun`, the tun grant (tun-grant.ts). Speaks JSON lines (see protocol.ts) and reverts everything it
 * applied when stdin closes — which is how it learns that the main process died, even by
 * SIGKILL — on SIGTERM/SIGHUP, and on any uncaught error. Then it exits.
 *
 * SIGINT is ignored: Ctrl-C on the terminal goes to the whole process group (and sudo relays
 * it), but it is the main process's to handle — it asks for the revert itself, in teardown
 * order. A second Ctrl-C makes the main process exit, and stdin EOF still reverts here.
 * Before exiting on its own the helper says whether everything was reverted (`stopped`), so
 * the main process does not report rules as left behind when they are not.
 */
import { errorMessage } from '../../errors'
import { realExecutor } from '../firewall/executor'
import { HelperServer } from './helper-server'
import { currentNetns, Journal, stateDir } from './journal'
import { parseHelperArgv, type TunGrant } from './tun-grant'
import { type HelperEvent, type HelperResponse, type LogLevel } from './protocol'
import { LineSplitter } from './protocol-wire'

function send(obj: HelperResponse | HelperEvent): void {
  // stdout is a pipe: writes are synchronous on Linux, so nothing is lost at process.exit.
  process.stdout.write(JSON.stringify(obj) + '\n')
}

async function main(): Promise<void> {
  process.umask(0o077)
  // The reader may be gone (main process killed): a broken pipe must not crash us mid-revert.
  process.stdout.on('error', () => {})
  const log = (level: LogLevel, msg: string): void => send({ log: { level, msg } })
  // Set by sudo itself (not by the caller), so it says who asked for root (tun device owner).
  const sudoUid = /^\d{1,10}$/.test(process.env.SUDO_UID ?? '') ? Number(process.env.SUDO_UID) : undefined
  // Our own argv is fixed by the sudoers line that let us run: only it may grant tun.
  let grant: TunGrant
  try {
    grant = parseHelperArgv(process.argv.slice(2))
  } catch (e) {
    log('error', errorMessage(e))
    process.exit(2)
  }
  const server = new HelperServer({ exec: realExecutor(), journal: new Journal(stateDir()), log, callerUid: sudoUid, allowTun: grant.allowTun })

  let stopping = false
  const stop = async (why: string, code: number): Promise<void> => {
    if (stopping) return
    stopping = true
    log('verbose', `helper stopping: ${why}`)
    const clean = await server.shutdown()
    send({ stopped: { why, clean } })
    process.exit(code)
  }
  process.on('SIGINT', () => log('verbose', 'helper: SIGINT ignored (the main process stops the tunnel)'))
  for (const sig of ['SIGTERM', 'SIGHUP'] as const) process.on(sig, () => void stop(sig, 0))
  const fatal = (e: unknown): void => {
    log('error', `helper: ${errorMessage(e)}`)
    void stop('uncaught error', 1)
  }
  process.on('uncaughtException', fatal)
  process.on('unhandledRejection', fatal)

  let cleanup: unknown = null
  try {
    cleanup = await server.cleanup()
  } catch (e) {
    log('warn', `cleanup of stale state failed: ${errorMessage(e)}`)
  }
  send({ ready: { pid: process.pid, netns: currentNetns(), cleanup } })

  const splitter = new LineSplitter(
    (line) => void server.handleLine(line).then(send),
    () => send({ id: null, ok: false, error: { code: 'HELPER', message: 'bad request: line too long' } }),
  )
  process.stdin.setEncoding('utf8')
  process.stdin.on('data', (chunk: string) => splitter.push(chunk))
  process.stdin.on('end', () => void stop('stdin closed', 0))
  process.stdin.on('error', () => void stop('stdin error', 0))
}

void main()

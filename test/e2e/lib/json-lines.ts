import type { ChildProcess } from 'node:child_process'

/** One event line from a helper script (hold-client.js, load-client.js, …). */
export type Ev = { ev: string } & Record<string, unknown>

/**
 * Reads a child's stdout as JSON lines: each parsed line goes to onEvent in order; a line that
 * is not JSON, and everything on stderr, goes to onText (kept for failure messages).
 */
export function readJsonLines(child: ChildProcess, onEvent: (ev: Ev) => void, onText: (text: string) => void): void {
  let buf = ''
  child.stdout!.setEncoding('utf8')
  child.stderr!.setEncoding('utf8')
  child.stderr!.on('data', (s: string) => onText(s))
  child.stdout!.on('data', (s: string) => {
    buf += s
    let nl: number
    while ((nl = buf.indexOf('\n')) >= 0) {
      const line = buf.slice(0, nl)
      buf = buf.slice(nl + 1)
      let ev: Ev
      try {
        ev = JSON.parse(line) as Ev
      } catch {
        onText(`(not JSON) ${line}\n`)
        continue
      }
      onEvent(ev)
    }
  })
}

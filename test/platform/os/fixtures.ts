/** Reading the captured fixtures in ./fixtures (see capture-ip-monitor.sh and the darwin file's header). */
import * as fs from 'node:fs'
import * as path from 'node:path'

export function readFixture(name: string): string {
  return fs.readFileSync(path.join(__dirname, 'fixtures', name), 'utf8')
}

export interface Scenario {
  readonly name: string
  readonly lines: string[]
}

/** "# scenario: NAME" blocks; other "#" lines are comments. */
export function scenarios(text: string): Scenario[] {
  const out: Scenario[] = []
  for (const line of text.split('\n')) {
    const m = /^# scenario: (.*)$/.exec(line)
    if (m) out.push({ name: m[1], lines: [] })
    else if (!line.startsWith('#') && out.length > 0 && line !== '') out[out.length - 1].lines.push(line)
  }
  return out
}

/** The scenario whose name starts with prefix (throws when there is none: a renamed scenario). */
export function scenario(list: Scenario[], prefix: string): Scenario {
  const s = list.find((x) => x.name.startsWith(prefix))
  if (!s) throw new Error(`no scenario "${prefix}"`)
  return s
}

export interface Lookup {
  readonly command: string
  readonly output: string
  readonly exit: number
}

/** "# COMMAND" / output / "# exit N" blocks of ip-lookups-linux.txt, in order. */
export function lookups(text: string): Lookup[] {
  const out: Lookup[] = []
  let cur: { command: string; lines: string[] } | undefined
  for (const line of text.split('\n').slice(1)) {
    const exit = /^# exit (\d+)$/.exec(line)
    if (exit && cur) {
      out.push({ command: cur.command, output: cur.lines.join('\n'), exit: Number(exit[1]) })
      cur = undefined
    } else if (line.startsWith('# ')) cur = { command: line.slice(2), lines: [] }
    else cur?.lines.push(line)
  }
  return out
}

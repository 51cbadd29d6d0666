import { execFileSync } from 'node:child_process'
import * as fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { afterAll, describe, expect, it } from 'vitest'
import { programForDocs } from '../../src/cli/args'
import { completionScript } from '../../src/cli/completion'

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'st-completion-'))
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }))
// The scripts ask `subnet-tunnel completion profiles` for profile names: a stand-in on PATH.
fs.writeFileSync(path.join(dir, 'subnet-tunnel'), '#!/bin/sh\n[ "$1 $2" = "completion profiles" ] && printf "work\\nlab\\n"\n', { mode: 0o755 })
const env = { ...process.env, PATH: `${dir}:${process.env.PATH}`, HOME: dir, XDG_CONFIG_HOME: dir, XDG_DATA_HOME: dir }
const has = (shell: string): boolean => ['/usr/bin', '/bin'].some((d) => fs.existsSync(path.join(d, shell)))

/** What bash completes for the words typed so far (the last one being completed). */
function bashComplete(...words: string[]): string[] {
  const script = path.join(dir, 'c.bash')
  fs.writeFileSync(script, completionScript('bash'))
  const quoted = ['subnet-tunnel', ...words].map((w) => `'${w}'`).join(' ')
  const out = execFileSync('bash', ['-c', `source ${script}; COMP_WORDS=(${quoted}); COMP_CWORD=${words.length}; _subnet_tunnel; printf '%s\\n' "\${COMPREPLY[@]}"`], {
    env,
    encoding: 'utf8',
  })
  return out.split('\n').filter(Boolean)
}

describe('shell completion', () => {
  it('offers every long option of --help, from the same option table', () => {
    const longs = programForDocs('0').options.map((o) => o.long!).filter(Boolean)
    expect(longs).toContain('--log-file')
    for (const shell of ['bash', 'zsh', 'fish']) {
      const text = completionScript(shell)
      for (const l of longs) expect(text, `${shell}: ${l}`).toContain(shell === 'fish' ? `-l ${l.slice(2)}` : l)
    }
  })

  it('bash: subcommands, options, method names, profiles after up and -c', () => {
    expect(bashComplete('st')).toEqual(['status', 'stop'])
    expect(bashComplete('--met')).toEqual(['--method'])
    expect(bashComplete('--method', 'n')).toEqual(['nft', 'nat'])
    expect(bashComplete('up', '')).toEqual(['work', 'lab'])
    expect(bashComplete('-c', 'w')).toEqual(['work'])
    expect(bashComplete('stop', '--a')).toEqual(['--all'])
    expect(bashComplete('completion', '')).toEqual(['bash', 'zsh', 'fish'])
    // After an option that takes a value nothing is guessed.
    expect(bashComplete('-D', '')).toEqual([])
  })

  it.runIf(has('zsh'))('zsh: the script parses', () => {
    const f = path.join(dir, '_subnet-tunnel')
    fs.writeFileSync(f, completionScript('zsh'))
    execFileSync('zsh', ['-n', f])
  })

  it.runIf(has('fish'))('fish: the script parses and completes', () => {
    const f = path.join(dir, 'subnet-tunnel.fish')
    fs.writeFileSync(f, completionScript('fish'))
    execFileSync('fish', ['-n', f])
    const out = execFileSync('fish', ['-c', `source ${f}; complete -C 'subnet-tunnel --metho'; complete -C 'subnet-tunnel up '`], { env, encoding: 'utf8' })
    expect(out).toMatch(/^--method\t/m)
    expect(out).toMatch(/^work$/m)
  })

  it('refuses an unknown shell with the list', () => {
    expect(() => completionScript('tcsh')).toThrow(/unknown shell "tcsh"/)
  })
})

import { execFileSync, spawnSync } from 'node:child_process'
import * as fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { describe, expect, it } from 'vitest'
import { programForDocs } from '../../src/cli/args'
import { manPage, roff } from '../../src/cli/man-page'

const hasGroff = fs.existsSync('/usr/bin/groff')

describe('the man page', () => {
  const page = manPage('1.2.3', '2026-01-01')

  it('has every option and command of the parser, with the same words as --help', () => {
    const program = programForDocs('1.2.3')
    for (const o of program.options) {
      const flag = o.long ?? o.short!
      expect(page, flag).toContain(`\\fB${roff(flag)}\\fR`)
      expect(page).toContain(roff(o.description))
    }
    for (const c of program.commands) expect(page).toContain(`\\fB${c.name()}\\fR`)
    expect(page).toMatch(/^\.TH SUBNET\\-TUNNEL 1 "2026-01-01" "subnet-tunnel 1\.2\.3"/)
    expect(page).toContain('.SH EXAMPLES\n.TP\n\\fBsubnet\\-tunnel \\-r user@bastion 10.0.0.0/16\\fR')
    expect(page).toContain('\\fBSUBNET_TUNNEL_CONFIG\\fR')
  })

  it('escapes what roff would misread', () => {
    expect(roff('.start')).toBe('\\&.start')
    expect(roff("'quote")).toBe("\\&'quote")
    expect(roff('a\\b -x … →')).toBe('a\\eb \\-x \\[u2026] \\[u2192]')
  })

  it.runIf(hasGroff)('renders without a single groff warning', () => {
    const f = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'st-man-')), 'subnet-tunnel.1')
    fs.writeFileSync(f, page)
    const r = spawnSync('groff', ['-man', '-Tutf8', '-ww', '-z', f], { encoding: 'utf8' })
    expect(r.stderr).toBe('')
    expect(r.status).toBe(0)
    const text = execFileSync('groff', ['-man', '-Tascii', f], { encoding: 'utf8' }).replace(/.\x08/g, '')
    expect(text).toMatch(/--dns-all-families/)
    fs.rmSync(path.dirname(f), { recursive: true })
  })
})

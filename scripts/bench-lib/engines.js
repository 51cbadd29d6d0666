'use strict'
/**
 * Which SSH engines the CLI under test supports. `--ssh-engine auto|openssh|builtin` arrives
 * with issue 13; a CLI without the option runs the builtin engine only, and must not be given
 * the option (it would refuse to start). Detected from its --help, so the bench runs on either
 * side of that change without edits.
 */
const { runToEnd } = require('./proc')

/** --help text → { flag: has --ssh-engine, supported: engines it can run }. */
function enginesFromHelp(help) {
  const flag = /(^|\s)--ssh-engine\b/m.test(help || '')
  return { flag, supported: flag ? ['builtin', 'openssh'] : ['builtin'] }
}

/** Runs `node CLI --help` and reads its engines; throws when the CLI does not start. */
async function cliEngines(cliBin) {
  const r = await runToEnd([process.execPath, cliBin, '--help'], { timeoutMs: 30_000 })
  if (r.code !== 0) throw new Error(`${cliBin} --help exited ${r.code}: ${(r.stderr || '').trim().slice(-500)}`)
  return enginesFromHelp(r.stdout)
}

/** The CLI arguments that select `engine` (none when the CLI has no --ssh-engine). */
function engineArgs(engine, flag) {
  return flag ? ['--ssh-engine', engine] : []
}

module.exports = { enginesFromHelp, cliEngines, engineArgs }

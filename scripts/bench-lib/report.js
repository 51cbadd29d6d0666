'use strict'
/**
 * What a run prints and what its JSON holds (pure: no I/O).
 *
 * The text: a header (machine, tools, engines, options, what each suite does), one table per
 * suite (medians, spreads, ratios: table.js), notes, every failed run with its reason, the
 * teardown checks, and each target as met / MISSED / no value (judged on medians).
 * The JSON: the same, plus every raw run of every row.
 */
const { renderTable } = require('./table')
const { machineLines } = require('./machine')
const { judge, README_ROW, OPENSSH_ROW } = require('./targets')

/** The engines line of the header. */
function enginesLine(e) {
  if (!e.flag) {
    return 'engines: builtin only — this CLI has no --ssh-engine option (issue 13 not in this build), so no openssh rows'
  }
  return `engines: ${e.engines.join(', ')} (--engines; this CLI supports ${e.supported.join(', ')}), passed as --ssh-engine`
}

/** Lines about which rows ran, and which rows the targets are judged on. */
function oursLines(opts) {
  const per = Object.entries(opts.ours).map(([s, l]) => `${s}: ${l.join(', ')}`).join('; ')
  const tun = Object.values(opts.ours).some((l) => l.includes('tun')) ? ' tun = a TUN device and the built-in userspace TCP/IP stack.' : ''
  return [
    `our rows: METHOD/ENGINE, methods per suite (--ours) ${per}; × engines ${opts.engines.join(', ')}.${tun}`,
    `targets: issue 18's per-engine targets on ${README_ROW} and ${OPENSSH_ROW} (where those rows ran), the rest of the README's on ${README_ROW}; every other row of ours says "(not judged)".`,
  ]
}

/** Teardown notes: per-stop rule checks, leftover processes, what survived teardown. */
function teardownLines(t) {
  const out = []
  if (t.stops > 0 && t.leftovers.length === 0) {
    out.push(`teardown: the client namespace was clean after each of ${t.stops} stops (firewall rules; tun links, ip rules at 5354, routing tables)`)
  }
  for (const l of t.leftovers) out.push(`teardown: LEFTOVERS after ${l.label}: ${l.left.slice(0, 4).join(' | ')}${l.left.length > 4 ? ` (+${l.left.length - 4})` : ''}`)
  for (const u of t.uncheckable) out.push(`teardown: could not check after ${u.label}: ${u.why}`)
  if (t.processes === undefined) out.push('teardown: leftover processes not checked (the testbed did not come up, or the check failed)')
  else if (t.processes.length === 0) out.push('teardown: no process of ours was left in the namespaces after the last suite')
  else for (const p of t.processes) out.push(`teardown: LEFTOVER process in ${p.role}: pid ${p.pid} ${p.command}`)
  if (t.afterDown === undefined) out.push('teardown: not checked after removal')
  else if (t.afterDown.length === 0) out.push('teardown: namespaces, testbed state and temp dir all gone')
  else for (const l of t.afterDown) out.push(`teardown: STILL THERE after removal: ${l}`)
  return out
}

/** Every failed run, one line each (rows in table order). */
function failureLines(rows, suiteErrors) {
  const out = []
  for (const e of suiteErrors) out.push(`FAILED suite ${e.suite}: ${e.error} (rows it had measured are kept)`)
  for (const r of rows) {
    for (const run of r.runs.filter((x) => x.error)) out.push(`FAILED ${r.suite} · ${r.test} · ${r.rttMs} ms · ${r.label}, round ${run.round}: ${run.error}`)
  }
  return out
}

const STATUS = { met: 'met    ', missed: 'MISSED ', 'no value': 'no value' }

/**
 * The whole report.
 * @param run { opts, suites, machine, engines, book (runs.js RunBook), notes, suiteErrors,
 *   teardown, targets, seconds, ports }
 * @returns { text, doc }
 */
function buildReport(run) {
  const { opts, suites, machine, engines, book, notes, suiteErrors, teardown, targets, seconds } = run
  const tables = []
  const rows = []
  for (const s of suites) {
    const mine = book.rows(s.name)
    if (mine.length === 0) continue
    const t = renderTable(mine, [s], { repeat: opts.repeat })
    if (tables.length) tables.push('')
    tables.push(...t.lines)
    rows.push(...t.rows)
  }
  const checks = judge(rows, targets)
  const out = []
  out.push(`subnet-tunnel bench${opts.quick ? ' (--quick: smoke test, not for publishing)' : ''}`)
  out.push(...machineLines(machine))
  out.push(enginesLine(engines))
  out.push(`runs:    ${opts.repeat} per row${opts.repeat > 1 ? ', interleaved (round 1: every contender, round 2: every contender…); tables show the median and min–max; ratios and targets use medians' : ''}`)
  if (run.ports) out.push(`ports:   bench listeners outside each namespace's ephemeral range (${Object.entries(run.ports).map(([r, x]) => `${r} ${x[0]}-${x[1]}`).join(', ')}); our servers bind port 0`)
  for (const s of suites) out.push(s.describe(opts.quick))
  out.push('RTT > 0: a userspace delay relay in front of sshd (RTT/2 each way); ratios: > 1× = subnet-tunnel better')
  out.push('', ...(tables.length ? tables : ['(no rows)']), '')
  for (const n of [...oursLines(opts), ...notes]) out.push(`note: ${n}`)
  for (const l of teardownLines(teardown)) out.push(`note: ${l}`)
  out.push(...failureLines(rows, suiteErrors))
  for (const c of checks) out.push(`target ${STATUS[c.status]} [${c.row}] ${c.what}: ${c.value}`)
  out.push(`took ${seconds.toFixed(0)} s`)
  const doc = {
    machine,
    engines,
    options: { quick: opts.quick, only: opts.only, rtts: opts.rtts, ours: opts.ours, engines: opts.engines, repeat: opts.repeat },
    ports: run.ports,
    seconds,
    rows,
    notes,
    suiteErrors,
    teardown,
    checks,
  }
  return { text: out.join('\n') + '\n', doc }
}

module.exports = { buildReport, enginesLine, teardownLines, failureLines }

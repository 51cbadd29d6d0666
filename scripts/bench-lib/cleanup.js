'use strict'
/**
 * Everything the bench starts registers its undo here (stop a process, delete a testbed, remove
 * a temp dir). run() undoes in reverse order, once, whether the bench finished, failed, or was
 * interrupted: SIGINT/SIGTERM/SIGHUP and uncaught errors all go through it before exiting.
 */

const steps = [] // { label, fn }
let running = null
let handlersInstalled = false

/**
 * Registers an undo step. Returns a function that runs it early (and unregisters it); its
 * `drop()` unregisters it without running it (the thing it would undo is already gone).
 */
function onCleanup(label, fn) {
  const step = { label, fn, done: false }
  steps.push(step)
  const unregister = () => {
    step.done = true
    const i = steps.indexOf(step)
    if (i >= 0) steps.splice(i, 1)
  }
  const runNow = async () => {
    if (step.done) return
    unregister()
    await fn()
  }
  runNow.drop = unregister
  return runNow
}

/** Runs every registered step, newest first; a failing step is reported and the rest still run. */
function runCleanup() {
  if (running) return running
  running = (async () => {
    while (steps.length > 0) {
      const step = steps.pop()
      if (step.done) continue
      step.done = true
      try {
        await step.fn()
      } catch (e) {
        process.stderr.write(`bench: cleanup (${step.label}) failed: ${e && e.message}\n`)
      }
    }
  })()
  return running
}

/**
 * On a signal or an uncaught error: clean up, then exit (128 + signal number, like a shell).
 * A second signal while cleaning up is ignored with a message: stopping half-way would leave
 * namespaces behind.
 */
function installExitHandlers() {
  if (handlersInstalled) return
  handlersInstalled = true
  const codes = { SIGINT: 130, SIGTERM: 143, SIGHUP: 129 }
  for (const sig of Object.keys(codes)) {
    process.on(sig, () => {
      if (running) {
        process.stderr.write(`\nbench: ${sig} again: still cleaning up, please wait\n`)
        return
      }
      process.stderr.write(`\nbench: ${sig}: stopping everything and removing the testbed\n`)
      runCleanup().finally(() => process.exit(codes[sig]))
    })
  }
  const fatal = (e) => {
    process.stderr.write(`bench: ${(e && e.stack) || e}\n`)
    runCleanup().finally(() => process.exit(1))
  }
  process.on('uncaughtException', fatal)
  process.on('unhandledRejection', fatal)
}

module.exports = { onCleanup, runCleanup, installExitHandlers }

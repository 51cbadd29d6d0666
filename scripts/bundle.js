#!/usr/bin/env node
// Writes dist/cli/main.bundle.js: the CLI (dist/cli/main.js and what it loads) as one file, for
// start-up time (issue 18). Loading ~260 small modules costs ~110 ms of a ~350 ms start on a
// 2-CPU machine; one file saves ~40 ms of it (fewer lookups, stats and reads). Run after tsc by
// `npm run build`, `npm test` and `npm pack`; bin/subnet-tunnel.js takes the bundle only when it
// is at least as new as dist/cli/main.js, so a later `tsc` alone never leaves a stale bundle in use.
//
// Not bundled: ssh2 (it loads its native crypto binding by a path relative to its own files, and
// ssh2-compat.ts patches it in place) and koffi (native); and the privileged helper
// (dist/platform/helper/helper-main.js), whose path and files the sudoers rule and
// install-safety.ts check — it stays the separate file it always was.
'use strict'
const path = require('node:path')
const fs = require('node:fs')
const root = path.resolve(__dirname, '..')
const out = path.join(root, 'dist', 'cli', 'main.bundle.js')

let esbuild
try {
  esbuild = require('esbuild')
} catch {
  // An install without dev dependencies: the plain dist/ works, only a little slower to start.
  fs.rmSync(out, { force: true })
  process.stderr.write('bundle: esbuild not installed; dist/cli/main.js runs unbundled\n')
  process.exit(0)
}
esbuild.buildSync({
  entryPoints: [path.join(root, 'dist', 'cli', 'main.js')],
  outfile: out,
  bundle: true,
  platform: 'node',
  target: 'node20',
  format: 'cjs',
  external: ['ssh2', 'koffi'],
  logLevel: 'warning',
})

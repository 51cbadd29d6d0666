#!/usr/bin/env node
'use strict'
// Thin launcher for the compiled code in dist/ (built by `npm run build`, and by `npm pack`
// before it packs: an installed package ships dist/ and compiles nothing).
//
// Written for any Node version, so that an old one gets one clear line instead of a syntax
// error deep inside dist/ (Debian 12 and Ubuntu 24.04 ship Node 18).
var MIN_MAJOR = 20
var major = Number(String(process.versions.node).split('.')[0])
if (!(major >= MIN_MAJOR)) {
  process.stderr.write(
    'subnet-tunnel: error: Node.js ' + process.versions.node + ' is too old; it needs Node.js ' + MIN_MAJOR +
      ' or newer (' + process.execPath + ')\n',
  )
  process.exit(1)
}
var path = require('path')
var fs = require('fs')
var dist = path.join(__dirname, '..', 'dist', 'cli')
var main
try {
  main = require(pickEntry(dist))
} catch (e) {
  // A checkout where nobody ran the build yet: say so, rather than print a stack.
  if (e && e.code === 'MODULE_NOT_FOUND' && String(e.message).indexOf('dist/cli/main.js') >= 0) {
    var root = path.resolve(__dirname, '..')
    process.stderr.write('subnet-tunnel: error: not built: run `npm ci && npm run build` in ' + root + '\n')
    process.exit(1)
  }
  throw e
}
main.cliEntry()

// dist/cli/main.bundle.js (scripts/bundle.js: the same code in one file, quicker to load) when it
// is at least as new as dist/cli/main.js; otherwise main.js. `tsc` rewrites main.js on every
// build, so a bundle from before the last build is never run; a packed install has equal times.
function pickEntry(dir) {
  var plain = path.join(dir, 'main.js')
  var bundle = path.join(dir, 'main.bundle.js')
  try {
    if (fs.statSync(bundle).mtimeMs >= fs.statSync(plain).mtimeMs) return bundle
  } catch (e) {
    // No bundle (or no build at all: main.js's require below says so).
  }
  return plain
}

#!/usr/bin/env node
'use strict'
// Thin launcher: the TypeScript build (npm's `prepare`) writes dist/.
require('../dist/cli/main.js').cliEntry()

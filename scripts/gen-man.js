#!/usr/bin/env node
// Writes dist/man/subnet-tunnel.1 from the built parser (dist/cli/man-page.js): run after tsc
// by `npm run build` and `npm pack`. SOURCE_DATE_EPOCH, when set, fixes the date (reproducible).
'use strict'
const fs = require('node:fs')
const path = require('node:path')
const root = path.resolve(__dirname, '..')
const { manPage } = require(path.join(root, 'dist', 'cli', 'man-page.js'))
const version = JSON.parse(fs.readFileSync(path.join(root, 'package.json'), 'utf8')).version
const epoch = process.env.SOURCE_DATE_EPOCH
const date = (epoch ? new Date(Number(epoch) * 1000) : new Date()).toISOString().slice(0, 10)
fs.mkdirSync(path.join(root, 'dist', 'man'), { recursive: true })
fs.writeFileSync(path.join(root, 'dist', 'man', 'subnet-tunnel.1'), manPage(version, date))

/**
 * Real clients inside the client namespace: curl for HTTP, a node script for many concurrent
 * connections, and streaming checksums so 64 MiB never has to sit in a string.
 */
import { spawn } from 'node:child_process'
import { createHash } from 'node:crypto'
import path from 'node:path'
import type { RunResult } from './exec'
import type { Testbed } from './testbed'

const MiB = 1024 * 1024

/** curl in the client namespace: -sS, connect timeout, overall limit. */
export function curl(tb: Testbed, url: string, opts: { extra?: string[]; connectTimeoutS?: number; maxTimeS?: number } = {}): Promise<RunResult> {
  const argv = ['curl', '-sS', '--connect-timeout', String(opts.connectTimeoutS ?? 3), '--max-time', String(opts.maxTimeS ?? 10), ...(opts.extra ?? []), url]
  return tb.exec('client', argv, { timeoutMs: ((opts.maxTimeS ?? 10) + 5) * 1000 })
}

/** Retries a GET until it returns 200 and returns the epoch ms of the first success. */
export async function firstSuccess(tb: Testbed, url: string, withinMs: number): Promise<number> {
  const deadline = Date.now() + withinMs
  let last: RunResult | undefined
  while (Date.now() < deadline) {
    last = await curl(tb, url, { extra: ['--fail', '-o', '/dev/null'], connectTimeoutS: 2, maxTimeS: 3 })
    if (last.code === 0) return Date.now()
    await new Promise((r) => setTimeout(r, 50))
  }
  throw new Error(`no successful GET ${url} within ${withinMs} ms; last: ${last?.stderr.trim()}`)
}

export interface Transfer {
  bytes: number
  sha256: string
  ms: number
  /** MiB per second. */
  mibps: number
}

/** Downloads url with curl in the client namespace, hashing the stream as it arrives. */
export function download(tb: Testbed, url: string, timeoutMs = 120_000): Promise<Transfer> {
  const started = Date.now()
  return new Promise((resolve, reject) => {
    const argv = tb.nsArgv('client', ['curl', '-sS', '--fail', '--max-time', String(Math.ceil(timeoutMs / 1000)), url])
    const child = spawn(argv[0]!, argv.slice(1), { stdio: ['ignore', 'pipe', 'pipe'] })
    const hash = createHash('sha256')
    let bytes = 0
    let err = ''
    child.stdout.on('data', (b: Buffer) => {
      bytes += b.length
      hash.update(b)
    })
    child.stderr.on('data', (b: Buffer) => (err += b.toString()))
    child.on('error', reject)
    child.on('close', (code) => {
      const ms = Date.now() - started
      if (code !== 0) return reject(new Error(`curl ${url} exit ${code}: ${err.trim()}`))
      resolve({ bytes, sha256: hash.digest('hex'), ms, mibps: bytes / MiB / (ms / 1000) })
    })
  })
}

/**
 * PUTs a file with curl from the client namespace to the private host's sink, which answers
 * "<sha256> <bytes>" of what it received.
 */
export async function upload(tb: Testbed, file: string, url: string, timeoutMs = 120_000): Promise<Transfer> {
  const r = await tb.exec('client', ['curl', '-sS', '--fail', '--max-time', String(Math.ceil(timeoutMs / 1000)), '-T', file, url], { timeoutMs: timeoutMs + 5_000 })
  if (r.code !== 0) throw new Error(`upload to ${url}: curl exit ${r.code}: ${r.stderr.trim()}`)
  const [sha256, bytesText] = r.stdout.trim().split(/\s+/)
  const bytes = Number(bytesText)
  return { bytes, sha256: sha256 ?? '', ms: r.ms, mibps: bytes / MiB / (r.ms / 1000) }
}

export interface ConcurrentResult {
  ok: number
  failed: number
  errors: string[]
  ms: number
}

/** n simultaneous connections from the client namespace, each completing one HTTP GET. */
export async function concurrentGets(tb: Testbed, host: string, n: number, expect: string, port = tb.env.httpPort): Promise<ConcurrentResult> {
  const script = path.join(__dirname, 'concurrent-client.js')
  const r = await tb.exec('client', [process.execPath, script, host, String(port), String(n), '/', expect], { timeoutMs: 90_000 })
  try {
    return JSON.parse(r.stdout) as ConcurrentResult
  } catch {
    throw new Error(`concurrent client: exit ${r.code}, stdout ${r.stdout}, stderr ${r.stderr}`)
  }
}

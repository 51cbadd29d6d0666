/**
 * The one place ssh2's runtime is loaded (types may still come from 'ssh2' directly).
 *
 * ssh2 takes `randomFillSync` from node:crypto when its modules load (`const { randomFillSync }
 * = require('crypto')`) and calls it for the padding of every packet. For the length of that
 * load only, node:crypto's export is our pooled filler (padding-pool.ts), so ssh2's packet code
 * keeps it; the export is restored at once, and nothing else in the process sees the change.
 * If ssh2 was already loaded, or stops capturing the function that way, it simply keeps the
 * stock one (paddingPoolStats() then stays at zero).
 */
import crypto = require('node:crypto')
import { pooledRandomFill, type PaddingPoolStats } from './padding-pool'

const filler = pooledRandomFill()

function load(): typeof import('ssh2') {
  const original = crypto.randomFillSync
  crypto.randomFillSync = filler as typeof original
  try {
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    return require('ssh2') as typeof import('ssh2')
  } finally {
    crypto.randomFillSync = original
  }
}

const ssh2 = load()

export const Client = ssh2.Client
export type Client = import('ssh2').Client
export const utils = ssh2.utils

/** What this ssh2 build supports, from its (internal) constants module; undefined if it moved. */
export interface Ssh2Constants {
  SUPPORTED_CIPHER: string[]
  SUPPORTED_SERVER_HOST_KEY: string[]
  DEFAULT_SERVER_HOST_KEY: string[]
}

export function ssh2Constants(): Ssh2Constants | undefined {
  try {
    // Internal module, but the only place ssh2 publishes what this build supports. Loaded
    // (and cached) by ssh2 itself above, so this never loads ssh2 code outside load().
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    return require('ssh2/lib/protocol/constants.js') as Ssh2Constants
  } catch {
    return undefined
  }
}

/** How ssh2's padding was served so far (tests; `pooled` > 0 once a packet was sent). */
export function paddingPoolStats(): PaddingPoolStats {
  return filler.stats()
}

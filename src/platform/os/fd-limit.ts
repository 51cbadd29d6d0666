import * as fs from 'node:fs'

/**
 * The soft open-files limit from a /proc/PID/limits text ("Max open files  1024  20000  files"),
 * or undefined when absent or unlimited.
 */
export function parseOpenFilesLimit(limits: string): number | undefined {
  const m = /^Max open files\s+(\d+)\s/m.exec(limits)
  return m ? Number(m[1]) : undefined
}

/**
 * This process's soft open-files limit (Linux; undefined elsewhere). Node raises the soft limit
 * to the hard one at start, so this is what is really available.
 */
export function openFilesLimit(): number | undefined {
  try {
    return parseOpenFilesLimit(fs.readFileSync('/proc/self/limits', 'utf8'))
  } catch {
    return undefined
  }
}

/** Descriptors this process has open now (Linux; undefined elsewhere). */
export function openFdCount(): number | undefined {
  try {
    return fs.readdirSync('/proc/self/fd').length
  } catch {
    return undefined
  }
}

/** How many more descriptors this process may open (undefined when unknown). */
export function fdHeadroom(): number | undefined {
  const limit = openFilesLimit()
  const open = openFdCount()
  return limit === undefined || open === undefined ? undefined : Math.max(0, limit - open)
}

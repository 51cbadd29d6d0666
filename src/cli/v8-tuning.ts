/**
 * V8 settings for a process whose work is moving bytes.
 *
 * Every socket read and every SSH packet is an ArrayBuffer of 16–64 KiB, and V8 by default
 * frees the dead ones on a background thread (concurrent ArrayBuffer sweeping). At a few
 * hundred thousand buffers a second that hand-off costs more than the freeing itself: on this
 * project's 2-CPU testbed it was about a quarter of the process's CPU during bulk transfers,
 * on threads that compete with sshd and the applications for the same cores. Sweeping on the
 * main thread, right after each scavenge, measured 1.53–1.66 CPU s per GB of upload instead of
 * 2.25–2.30, and 1.70 instead of 2.18–2.25 for download (README, Performance).
 *
 * The flag is read at each collection, so setting it at start-up takes full effect. It is set
 * only on V8 versions known to have it: V8 prints "unrecognized flag" on stderr otherwise.
 */
import { setFlagsFromString } from 'node:v8'

export const V8_FLAGS: readonly string[] = ['--no-concurrent-array-buffer-sweeping']

/** V8 majors with --concurrent-array-buffer-sweeping (added in 9.x; Node 20 ships 11.3). */
const KNOWN = { min: 9, max: 13 }

/** Applies V8_FLAGS when this V8 has them; returns whether it did. */
export function tuneV8(v8Version: string = process.versions.v8, set: (flag: string) => void = setFlagsFromString): boolean {
  const major = Number(/^(\d+)\./.exec(v8Version)?.[1])
  if (!Number.isInteger(major) || major < KNOWN.min || major > KNOWN.max) return false
  for (const f of V8_FLAGS) set(f)
  return true
}

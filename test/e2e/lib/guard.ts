/**
 * The e2e project needs root (network namespaces, sshd, iptables/nft inside namespaces).
 * Not root and CI unset: the suites are skipped with the reason in their title.
 * Not root and CI set: the suites run and fail in beforeAll, so CI cannot go green by skipping.
 */
import { describe } from 'vitest'

export const isRoot = typeof process.getuid === 'function' && process.getuid() === 0
const inCi = !!process.env.CI && process.env.CI !== 'false' && process.env.CI !== '0'

export const SKIP_REASON = 'skipped: e2e tests need root (network namespaces); run them as root, e.g. sudo npm run test:e2e'

let warned = false

/** describe() for e2e suites: runs as root or in CI, otherwise skips with the reason in the title. */
export function e2eDescribe(name: string, fn: () => void): void {
  if (isRoot || inCi) describe(name, fn)
  else {
    // The default reporter does not print skipped suites' titles: say it once on stderr.
    if (!warned) console.warn(`e2e: ${SKIP_REASON}`)
    warned = true
    describe.skip(`${name} (${SKIP_REASON})`, fn)
  }
}

/** Call first in beforeAll: a clear failure instead of obscure ones when not root (CI). */
export function assertRoot(): void {
  if (!isRoot) throw new Error('e2e tests need root (network namespaces, sshd); CI is set, so this fails instead of skipping')
}

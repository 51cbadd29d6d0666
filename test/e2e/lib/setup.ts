/**
 * The set-up every e2e file shares: root and a built CLI checked, one testbed of its own; at
 * the end, every tunnel it started killed, optionally `subnet-tunnel cleanup`, the testbed
 * torn down (also after a failure half-way).
 */
import { afterAll, beforeAll } from 'vitest'
import { assertCliBuilt, killAllTunnels, runCli } from './cli'
import { assertRoot } from './guard'
import { newTestbedName, Testbed, type UpOptions } from './testbed'

export interface TestbedSetup extends UpOptions {
  /** Run `subnet-tunnel cleanup` in the client namespace before tearing down (crash tests). */
  readonly cleanup?: boolean
  /** After the testbed is up: extra namespaces, users, servers. */
  readonly setUp?: (tb: Testbed) => Promise<void> | void
  /** After the tunnels are killed, before cleanup and the teardown (tb undefined if it never came up). */
  readonly tearDown?: (tb: Testbed | undefined) => Promise<void> | void
}

/**
 * Registers the file's beforeAll/afterAll. `use` receives the testbed once it is up:
 *
 *     let tb: Testbed
 *     useTestbed('tt', (t) => (tb = t))
 */
export function useTestbed(prefix: string, use: (tb: Testbed) => void, o: TestbedSetup = {}): void {
  let tb: Testbed | undefined
  beforeAll(async () => {
    assertRoot()
    assertCliBuilt()
    tb = await Testbed.up(newTestbedName(prefix), o)
    use(tb)
    await o.setUp?.(tb)
  })
  afterAll(async () => {
    await killAllTunnels()
    await o.tearDown?.(tb)
    if (tb && o.cleanup) await runCli(tb, ['cleanup']).catch(() => undefined)
    await tb?.down()
  })
}

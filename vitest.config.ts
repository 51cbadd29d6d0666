import { defineConfig } from 'vitest/config'

/**
 * The end-to-end files whose subject is the SSH path: they run once per engine (the `e2e`
 * project with the OpenSSH engine, `e2e-builtin` with ssh2). The other e2e files test capture,
 * the helper or the testbed, where the engine does not matter: they run once.
 */
const SSH_PATH_FILES = [
  'test/e2e/tunnel-traffic.test.ts',
  'test/e2e/tunnel-dns.test.ts',
  'test/e2e/tunnel-frontends.test.ts',
  'test/e2e/tunnel-faults.test.ts',
  'test/e2e/tunnel-faults-refusals.test.ts',
  'test/e2e/tunnel-reconnect.test.ts',
  'test/e2e/tunnel-errors.test.ts',
  'test/e2e/tunnel-ssh-paths.test.ts',
  'test/e2e/tunnel-secrets.test.ts',
  'test/e2e/tunnel-exec-loop.test.ts',
  'test/e2e/tunnel-load.test.ts',
  'test/e2e/tunnel-netchange.test.ts',
  'test/e2e/tunnel-fail-closed.test.ts',
  'test/e2e/tunnel-exec-only.test.ts',
  'test/e2e/tunnel-routes.test.ts',
]

const E2E = {
  testTimeout: 180_000,
  hookTimeout: 180_000,
  // Each e2e file builds its own namespaces; running them one at a time keeps a 2-core machine
  // from timing out and keeps failures readable.
  fileParallelism: false,
}

// `unit` runs anywhere without privileges; the e2e projects need root and network namespaces
// (test/e2e) and run the real CLI from dist/, so `npm test` builds first. The CLI reads its
// default engine from SUBNET_TUNNEL_SSH_ENGINE, which each e2e project sets. The two e2e
// projects never overlap (groupOrder): one testbed at a time on a 2-core machine.
export default defineConfig({
  test: {
    projects: [
      {
        test: {
          name: 'unit',
          include: ['test/**/*.test.ts'],
          exclude: ['test/e2e/**'],
          testTimeout: 20_000,
          sequence: { groupOrder: 0 },
        },
      },
      {
        test: {
          name: 'e2e',
          include: ['test/e2e/**/*.test.ts'],
          env: { SUBNET_TUNNEL_SSH_ENGINE: 'openssh' },
          sequence: { groupOrder: 0 },
          ...E2E,
        },
      },
      {
        test: {
          name: 'e2e-builtin',
          include: SSH_PATH_FILES,
          env: { SUBNET_TUNNEL_SSH_ENGINE: 'builtin' },
          sequence: { groupOrder: 1 },
          ...E2E,
        },
      },
    ],
  },
})

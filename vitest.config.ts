import { defineConfig } from 'vitest/config'

// Two projects: `unit` runs anywhere without privileges; `e2e` needs root and network
// namespaces (test/e2e) and runs the real CLI from dist/, so `npm test` builds first.
export default defineConfig({
  test: {
    projects: [
      {
        test: {
          name: 'unit',
          include: ['test/**/*.test.ts'],
          exclude: ['test/e2e/**'],
          testTimeout: 20_000,
        },
      },
      {
        test: {
          name: 'e2e',
          include: ['test/e2e/**/*.test.ts'],
          testTimeout: 180_000,
          hookTimeout: 180_000,
          // Each e2e file builds its own namespaces; running them one at a time keeps a
          // 2-core machine from timing out and keeps failures readable.
          fileParallelism: false,
        },
      },
    ],
  },
})

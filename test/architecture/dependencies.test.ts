/**
 * Dependencies point one way (ARCHITECTURE.md): no import cycle between files, none between
 * top-level folders, and each folder imports only the folders below it in LAYERS. Type-only
 * imports count. A new cycle or an upward import fails here, in the unit suite.
 */
import * as path from 'node:path'
import { describe, expect, it } from 'vitest'
import { cycles, layerEdges, readImportGraph, readPackageImports } from './import-graph'

/** What each top-level folder of src/ may import (besides itself). */
const LAYERS: Record<string, readonly string[]> = {
  errors: [],
  observe: ['errors'],
  config: ['errors', 'observe'],
  netstack: ['errors', 'observe'],
  platform: ['config', 'errors', 'observe'],
  router: ['config', 'errors', 'observe'],
  dns: ['router', 'config', 'errors', 'observe'],
  ssh: ['router', 'config', 'errors', 'observe'],
  status: ['router', 'config', 'errors', 'observe'],
  tun: ['netstack', 'platform', 'router', 'config', 'errors', 'observe'],
  tunnel: ['tun', 'ssh', 'dns', 'status', 'router', 'platform', 'config', 'errors', 'observe'],
  cli: ['tunnel', 'status', 'platform', 'config', 'errors', 'observe'],
}

/** Inside src/platform, what each concern may import: the privileged helper uses the others. */
const PLATFORM: Record<string, readonly string[]> = {
  'platform/firewall': [],
  'platform/os': [],
  'platform/helper': ['platform/firewall', 'platform/os'],
}

const SRC = path.resolve(__dirname, '../../src')
const graph = readImportGraph(SRC)

describe('dependencies of src/', () => {
  it('reads the whole tree (sanity: the graph is not empty and knows relay.ts → pipe.ts)', () => {
    expect(graph.size).toBeGreaterThan(100)
    expect(graph.get('router/relay.ts')).toContain('router/pipe.ts')
  })

  it('has no import cycle between files', () => {
    expect(cycles(graph)).toEqual([])
  })

  it('has no import cycle between top-level folders', () => {
    const edges = layerEdges(graph)
    const folders = new Map([...edges].map(([from, to]) => [from, [...to.keys()]]))
    expect(cycles(folders)).toEqual([])
  })

  it('imports only downwards (each folder only the folders listed in LAYERS)', () => {
    const bad: string[] = []
    for (const [from, to] of layerEdges(graph)) {
      expect(Object.keys(LAYERS), `unknown top-level folder src/${from}`).toContain(from)
      for (const [layer, files] of to) {
        if (!LAYERS[from]!.includes(layer)) bad.push(`src/${from} may not import src/${layer}: ${files.join(', ')}`)
      }
    }
    expect(bad).toEqual([])
  })

  it('inside src/platform: firewall backends and OS devices never import the helper (nor each other)', () => {
    const sub = (f: string): string => f.split('/').slice(0, 2).join('/')
    const bad: string[] = []
    for (const [from, deps] of graph) {
      if (!from.startsWith('platform/')) continue
      expect(Object.keys(PLATFORM), `unknown folder src/${sub(from)}`).toContain(sub(from))
      for (const to of deps) {
        if (to.startsWith('platform/') && sub(to) !== sub(from) && !PLATFORM[sub(from)]!.includes(sub(to))) bad.push(`${from} → ${to}`)
      }
    }
    expect(bad).toEqual([])
  })

  it('only src/ssh/builtin/ imports ssh2, and only its compatibility modules reach into ssh2/lib', () => {
    const users: string[] = []
    const internals: string[] = []
    for (const [file, pkgs] of readPackageImports(SRC)) {
      if (pkgs.some((p) => p === 'ssh2' || p.startsWith('ssh2/'))) users.push(file)
      if (pkgs.some((p) => p.startsWith('ssh2/'))) internals.push(file)
    }
    expect(users.length).toBeGreaterThan(0)
    expect(users.filter((f) => !f.startsWith('ssh/builtin/'))).toEqual([])
    // ssh2-compat-auth.ts holds the authentication items (9–13) of the same audited list.
    expect(internals.sort()).toEqual(['ssh/builtin/ssh2-compat-auth.ts', 'ssh/builtin/ssh2-compat.ts'])
  })

  it('LAYERS itself has no cycle', () => {
    expect(cycles(new Map(Object.entries(LAYERS)))).toEqual([])
  })
})

/**
 * The import graph of src/, read with the TypeScript parser: every `import`, `import type`,
 * `export … from`, `import x = require()`, `require('…')`, `import('…')` and `import('…')` type
 * between our own files. Type-only edges count: a cycle of types is still a cycle a reader
 * has to hold in their head, and it becomes a runtime cycle the day a type gets a value.
 */
import * as fs from 'node:fs'
import * as path from 'node:path'
import ts from 'typescript'

/** File (relative to the root, e.g. "router/pipe.ts") → files it imports. */
export type ImportGraph = Map<string, string[]>

/** File → the packages it imports ("ssh2", "ssh2/lib/protocol/constants.js"); node: builtins left out. */
export type PackageImports = Map<string, string[]>

export function readImportGraph(root: string): ImportGraph {
  return readImports(root).files
}

export function readPackageImports(root: string): PackageImports {
  return readImports(root).packages
}

function readImports(root: string): { files: ImportGraph; packages: PackageImports } {
  const files: string[] = []
  const walk = (dir: string): void => {
    for (const e of fs.readdirSync(dir, { withFileTypes: true })) {
      const p = path.join(dir, e.name)
      if (e.isDirectory()) walk(p)
      else if (e.name.endsWith('.ts') && !e.name.endsWith('.d.ts')) files.push(p)
    }
  }
  walk(root)
  const graph: ImportGraph = new Map()
  const packages: PackageImports = new Map()
  for (const file of files) {
    const deps = new Set<string>()
    const pkgs = new Set<string>()
    const add = (spec: string): void => {
      if (!spec.startsWith('.')) {
        if (!spec.startsWith('node:')) pkgs.add(spec)
        return
      }
      const base = path.resolve(path.dirname(file), spec)
      const hit = [`${base}.ts`, path.join(base, 'index.ts')].find((c) => fs.existsSync(c))
      if (hit) deps.add(path.relative(root, hit))
    }
    const visit = (n: ts.Node): void => {
      if ((ts.isImportDeclaration(n) || ts.isExportDeclaration(n)) && n.moduleSpecifier && ts.isStringLiteral(n.moduleSpecifier)) {
        add(n.moduleSpecifier.text)
      } else if (ts.isImportEqualsDeclaration(n) && ts.isExternalModuleReference(n.moduleReference) && ts.isStringLiteral(n.moduleReference.expression)) {
        add(n.moduleReference.expression.text)
      } else if (ts.isCallExpression(n) && n.arguments.length === 1 && ts.isStringLiteral(n.arguments[0]!)) {
        const callee = n.expression
        if (callee.kind === ts.SyntaxKind.ImportKeyword || (ts.isIdentifier(callee) && callee.text === 'require')) add((n.arguments[0] as ts.StringLiteral).text)
      } else if (ts.isImportTypeNode(n) && ts.isLiteralTypeNode(n.argument) && ts.isStringLiteral(n.argument.literal)) {
        add(n.argument.literal.text)
      }
      ts.forEachChild(n, visit)
    }
    visit(ts.createSourceFile(file, fs.readFileSync(file, 'utf8'), ts.ScriptTarget.ES2022, true))
    graph.set(path.relative(root, file), [...deps].sort())
    packages.set(path.relative(root, file), [...pkgs].sort())
  }
  return { files: graph, packages }
}

/** The top-level folder of a file ("router/pipe.ts" → "router"; "errors.ts" → "errors"). */
export function layerOf(file: string): string {
  const i = file.indexOf('/')
  return i < 0 ? file.replace(/\.ts$/, '') : file.slice(0, i)
}

/** Folder → folders it imports (other than itself), each with the file edges behind it. */
export function layerEdges(g: ImportGraph): Map<string, Map<string, string[]>> {
  const out = new Map<string, Map<string, string[]>>()
  for (const [from, deps] of g) {
    for (const to of deps) {
      const a = layerOf(from)
      const b = layerOf(to)
      if (a === b) continue
      if (!out.has(a)) out.set(a, new Map())
      const m = out.get(a)!
      if (!m.has(b)) m.set(b, [])
      m.get(b)!.push(`${from} → ${to}`)
    }
  }
  return out
}

/** Strongly connected components with more than one node, or a node importing itself (Tarjan). */
export function cycles(g: ReadonlyMap<string, readonly string[]>): string[][] {
  let next = 0
  const index = new Map<string, number>()
  const low = new Map<string, number>()
  const stack: string[] = []
  const onStack = new Set<string>()
  const out: string[][] = []
  const strong = (v: string): void => {
    index.set(v, next)
    low.set(v, next)
    next++
    stack.push(v)
    onStack.add(v)
    for (const w of g.get(v) ?? []) {
      if (!index.has(w)) {
        strong(w)
        low.set(v, Math.min(low.get(v)!, low.get(w)!))
      } else if (onStack.has(w)) low.set(v, Math.min(low.get(v)!, index.get(w)!))
    }
    if (low.get(v) !== index.get(v)) return
    const scc: string[] = []
    let w: string
    do {
      w = stack.pop()!
      onStack.delete(w)
      scc.push(w)
    } while (w !== v)
    if (scc.length > 1 || (g.get(v) ?? []).includes(v)) out.push(scc.sort())
  }
  for (const v of [...g.keys()].sort()) if (!index.has(v)) strong(v)
  return out.sort((a, b) => a[0]!.localeCompare(b[0]!))
}

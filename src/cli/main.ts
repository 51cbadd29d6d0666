import { readFileSync } from 'node:fs'
import path from 'node:path'
import { TunnelError, toTunnelError } from '../errors'
import { type ParsedCommand, parseArgs } from './args'
import { runCleanup } from './cleanup'
import { runDemo } from './demo'
import { exitCodeFor, formatError } from './report-error'
import { exitWhenDone } from './exit-when-done'
import { tuneV8 } from './v8-tuning'
import { runTunnel } from './run-tunnel'
import { runRoutes, runStatus } from './status'
import { runStop } from './stop'
import { runCompletion } from './completion'
import { takeSecretEnv } from './secret-env'
import { runSudoers } from './sudoers'
import { versionText } from './version'

/** The package root (holds package.json and scripts/), from dist/cli/. */
export const PACKAGE_ROOT = path.resolve(__dirname, '..', '..')

function version(): string {
  try {
    return JSON.parse(readFileSync(path.join(PACKAGE_ROOT, 'package.json'), 'utf8')).version as string
  } catch {
    return 'unknown'
  }
}

/** Runs one command and returns the process exit code. The only caller of process.exit is below. */
export async function main(argv: readonly string[]): Promise<number> {
  // First of all: secrets leave process.env, so no child started from here on inherits them.
  const secrets = takeSecretEnv()
  let cmd: ParsedCommand | undefined
  try {
    cmd = parseArgs(argv, version(), undefined, secrets)
    switch (cmd.kind) {
      case 'exit':
        return cmd.code
      case 'version':
        process.stdout.write(await versionText(version()))
        return 0
      case 'cleanup':
        return await runCleanup(cmd.verbose)
      case 'demo':
        return await runDemo(PACKAGE_ROOT, cmd.keep, cmd.install)
      case 'sudoers':
        return runSudoers(cmd.user, version())
      case 'status':
        return await runStatus(cmd.json, cmd.all)
      case 'routes':
        return await runRoutes(cmd.json)
      case 'stop':
        return await runStop(cmd.target, cmd.all)
      case 'completion':
        return runCompletion(cmd.shell)
      case 'tunnel':
        return await runTunnel(cmd.args, version())
    }
  } catch (e) {
    const err = toTunnelError(e)
    const verbose = cmd?.kind === 'tunnel' ? cmd.args.verbose : 0
    process.stderr.write(formatError(err, verbose) + '\n')
    return exitCodeFor(err)
  }
}

/** Process entry: runs main, sets the exit code, and exits once stdio has flushed. */
export function cliEntry(argv: readonly string[] = process.argv.slice(2)): void {
  tuneV8()
  main(argv).then(
    // Always through process.exit, never by the loop running dry: see exit-when-done.ts.
    (code) => exitWhenDone(code),
    (e) => {
      process.stderr.write(formatError(e instanceof TunnelError ? e : toTunnelError(e), 1) + '\n')
      process.exit(1)
    },
  )
}

// `node dist/cli/main.js …` (the bin launcher calls cliEntry itself).
if (require.main === module) cliEntry()

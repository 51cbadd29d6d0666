import { spawn } from 'node:child_process'
import { existsSync } from 'node:fs'
import path from 'node:path'
import { TunnelError } from '../errors'
import { ensureDemoNeeds } from './demo-deps'

/**
 * `subnet-tunnel demo`: runs scripts/demo, which builds a throwaway namespace network with a
 * real sshd, starts this CLI inside it, shows clients reaching the private side, and tears it
 * all down. The script is bash because it mostly drives ip, sshd and curl.
 */
export async function runDemo(packageRoot: string, keep: boolean, install = true): Promise<number> {
  const script = path.join(packageRoot, 'scripts', 'demo')
  if (!existsSync(script)) {
    throw new TunnelError('INTERNAL', `demo script missing at ${script}`, { hint: 'reinstall subnet-tunnel' })
  }
  if (process.platform !== 'linux') {
    throw new TunnelError('FW_UNSUPPORTED', 'the demo needs Linux network namespaces', {})
  }
  if (process.getuid?.() !== 0) {
    throw new TunnelError('NEED_ROOT', 'the demo creates network namespaces and needs root', {
      hint: 'run: sudo subnet-tunnel demo',
    })
  }
  // A fresh machine: the packages the demo needs are installed first (said, with why).
  await ensureDemoNeeds({ install, say: (line) => void process.stderr.write(line + '\n') })
  const child = spawn('bash', [script, ...(keep ? ['--keep'] : [])], { stdio: 'inherit' })
  // The script traps INT/TERM itself and tears the testbed down. Ctrl-C reaches it through
  // the process group; a SIGTERM sent to us alone is forwarded.
  const ignore = (): void => {}
  const forward = (): void => void child.kill('SIGTERM')
  process.on('SIGINT', ignore)
  process.on('SIGTERM', forward)
  try {
    return await new Promise<number>((resolve) => child.on('close', (code) => resolve(code ?? 1)))
  } finally {
    process.off('SIGINT', ignore)
    process.off('SIGTERM', forward)
  }
}

/**
 * The SSH engines this install can use, for `--version`: the same detection `--ssh-engine auto`
 * runs at plan time (plan.ts planSshEngine), so the version text and the choice agree.
 */
import { detectOpenssh, type OpensshDetection } from '../ssh/openssh/detect'

export interface EngineAvailability {
  readonly name: 'builtin' | 'openssh'
  /** What it runs on: "ssh2 1.17.0", "OpenSSH_9.2p1"; or why it is not usable here. */
  readonly detail?: string
  readonly usable: boolean
}

/** Every engine, in the order auto prefers them: openssh when its client is usable, then builtin. */
export async function availableEngines(detect: () => Promise<OpensshDetection> = () => detectOpenssh()): Promise<EngineAvailability[]> {
  const d = await detect()
  const openssh: EngineAvailability = d.ok ? { name: 'openssh', detail: d.versionText, usable: true } : { name: 'openssh', detail: d.why, usable: false }
  // Imported here, not at the top: ssh2 loads with it, and a tunnel on the openssh engine starts
  // quicker without it (issue 18); `--version` is the only caller.
  const { builtinEngineInfo } = await import('../ssh/builtin/engine')
  return [openssh, { ...builtinEngineInfo(), usable: true }]
}

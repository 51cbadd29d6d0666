/**
 * The SSH engines this install can use, for `--version` (and, as engines are added, for
 * `--ssh-engine auto`). One function, so the version text and the choice agree.
 */
import { builtinEngineInfo } from '../ssh/builtin/engine'

export interface EngineAvailability {
  readonly name: 'builtin' | 'openssh'
  /** What it runs on: "ssh2 1.17.0", "OpenSSH_9.2p1". */
  readonly detail?: string
}

/**
 * Every engine usable here, preferred first. The built-in engine is always there (it is part of
 * this package); the OpenSSH engine adds itself here when its client is detected.
 */
export async function availableEngines(): Promise<EngineAvailability[]> {
  return [builtinEngineInfo()]
}

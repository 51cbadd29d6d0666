import { installedMethods } from '../platform/firewall/installed'
import { availableEngines } from '../tunnel/engines'

/**
 * `--version` / `-V`: what a bug report needs in four lines — this version, the node running it,
 * the SSH engines usable here and the redirection methods whose tools are installed.
 *
 *     subnet-tunnel 0.1.0
 *     node v20.20.2 (linux x64)
 *     engines: openssh (OpenSSH_9.2p1) / builtin (ssh2 1.17.0)
 *     (or:  engines: builtin (ssh2 1.17.0) / openssh unavailable: no ssh client on PATH)
 *     methods: nft, nat, tun
 */
export async function versionText(version: string): Promise<string> {
  // Usable ones first (auto takes the first), then the others with why not.
  const all = await availableEngines()
  const engines = [...all.filter((e) => e.usable), ...all.filter((e) => !e.usable)].map((e) =>
    e.usable ? (e.detail ? `${e.name} (${e.detail})` : e.name) : `${e.name} unavailable: ${e.detail}`,
  )
  const methods = installedMethods()
  return [
    `subnet-tunnel ${version}`,
    `node ${process.version} (${process.platform} ${process.arch})`,
    `engines: ${engines.join(' / ')}`,
    `methods: ${methods.length > 0 ? methods.join(', ') : 'none installed (nft, iptables or a TUN device; -D, --http-proxy, -L and -R need none)'}`,
  ].join('\n') + '\n'
}

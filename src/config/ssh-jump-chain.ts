/**
 * ProxyJump chains as OpenSSH builds them. For `ProxyJump a,b` ssh runs `ssh -J a -W %h:%p b`
 * (ssh.c): the LAST hop is connected to with the others as its own -J, and that ssh reads b's
 * configuration — so a hop's own ProxyJump (or ProxyCommand) applies too, recursively, unless a
 * -J given to it wins. `target → ProxyJump hop2`, `hop2 → ProxyJump hop1` is therefore the
 * chain hop1 → hop2 → target. Only -F is passed down (OpenSSH passes neither -i nor -o).
 */
import { TunnelError } from '../errors'
import type { SshHostConfig, SshRequest } from './ssh-config-types'

/** Hops in one chain at most. OpenSSH has no limit (a loop forks ssh forever); we refuse. */
export const MAX_JUMP_HOPS = 10

/**
 * The hops in front of `target`, outermost first. `resolve` is `ssh -G` (or the parser) for one
 * request. Throws SSH_CONFIG on a loop or a chain longer than MAX_JUMP_HOPS.
 */
export async function resolveJumpChain(
  target: SshHostConfig,
  resolve: (req: SshRequest) => Promise<SshHostConfig>,
  configFile?: string,
): Promise<SshHostConfig[]> {
  const chain: SshHostConfig[] = []
  // Each hop is a request (destination + -J); the same request again can only repeat forever.
  const seen: string[] = []
  let cur = target
  while (cur.proxyJump.length > 0) {
    const list = cur.proxyJump
    const last = list[list.length - 1]!
    const rest = list.slice(0, -1)
    const name = rest.length > 0 ? `${last} (-J ${rest.join(',')})` : last
    if (seen.includes(name)) {
      throw new TunnelError('SSH_CONFIG', `ProxyJump loop: ${[target.alias, ...seen, name].join(' → ')}`, {
        hint: 'a jump host must not lead back to itself through its own ProxyJump: give the first hop `ProxyJump none` in ~/.ssh/config',
      })
    }
    seen.push(name)
    const hop = await resolve({
      destination: last,
      ...(configFile !== undefined && { configFile }),
      identities: [],
      ...(rest.length > 0 && { jump: rest.join(',') }),
      options: [],
    })
    chain.unshift(hop)
    if (chain.length > MAX_JUMP_HOPS) {
      throw new TunnelError('SSH_CONFIG', `ProxyJump chain to ${target.alias} is longer than ${MAX_JUMP_HOPS} hops`, {
        hint: 'check the ProxyJump lines of the hops in ~/.ssh/config (`ssh -G HOST | grep proxyjump`)',
      })
    }
    cur = hop
  }
  return chain
}

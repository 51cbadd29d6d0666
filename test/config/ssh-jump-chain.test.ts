import { describe, expect, it } from 'vitest'
import type { SshHostConfig, SshRequest } from '../../src/config/ssh-config-types'
import { MAX_JUMP_HOPS, resolveJumpChain } from '../../src/config/ssh-jump-chain'
import { hostCfg } from '../ssh/helpers'

/** A fake `ssh -G`: each alias's ProxyJump from the table; a -J given with the request wins. */
function resolver(table: Record<string, string[]>, seen: SshRequest[] = []) {
  return async (req: SshRequest): Promise<SshHostConfig> => {
    seen.push(req)
    const own = table[req.destination] ?? []
    return hostCfg({ port: 22, alias: req.destination, proxyJump: req.jump ? req.jump.split(',') : own })
  }
}

describe('ProxyJump chains (each hop with its own ProxyJump, like ssh -J)', () => {
  it('target → hop2 → hop1 resolves to hop1, hop2 (outermost first)', async () => {
    const target = hostCfg({ port: 22, alias: 'target', proxyJump: ['hop2'] })
    const chain = await resolveJumpChain(target, resolver({ hop2: ['hop1'] }))
    expect(chain.map((h) => h.alias)).toEqual(['hop1', 'hop2'])
  })

  it('ProxyJump a,b: b is reached with -J a, so b own ProxyJump does not apply; -F is passed on', async () => {
    const seen: SshRequest[] = []
    const target = hostCfg({ port: 22, alias: 'target', proxyJump: ['a', 'b'] })
    const chain = await resolveJumpChain(target, resolver({ b: ['elsewhere'] }, seen), '/cfg')
    expect(chain.map((h) => h.alias)).toEqual(['a', 'b'])
    expect(seen[0]).toMatchObject({ destination: 'b', jump: 'a', configFile: '/cfg' })
  })

  it('a loop and an endless chain are SSH_CONFIG errors', async () => {
    const loop = resolveJumpChain(hostCfg({ port: 22, alias: 'x', proxyJump: ['y'] }), resolver({ y: ['z'], z: ['y'] }))
    await expect(loop).rejects.toMatchObject({ code: 'SSH_CONFIG', message: expect.stringMatching(/ProxyJump loop: x → y → z → y/) })
    const table: Record<string, string[]> = {}
    for (let i = 0; i < MAX_JUMP_HOPS + 2; i++) table[`h${i}`] = [`h${i + 1}`]
    const long = resolveJumpChain(hostCfg({ port: 22, alias: 't', proxyJump: ['h0'] }), resolver(table))
    await expect(long).rejects.toMatchObject({ code: 'SSH_CONFIG', message: expect.stringMatching(/longer than/) })
  })
})

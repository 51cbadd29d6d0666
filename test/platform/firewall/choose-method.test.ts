import { describe, expect, it } from 'vitest'
import { isTunnelError } from '../../../src/errors'
import { chooseMethod, selectMethod } from '../../../src/platform/firewall/choose-method'
import type { MethodName, ProbeResult } from '../../../src/platform/firewall/types'

const OK: ProbeResult = { ok: true }
const nftMissing: ProbeResult = { ok: false, why: 'nft not found', hint: 'install nftables' }
const natMissing: ProbeResult = { ok: false, why: 'iptables not found', hint: 'apt-get install iptables' }

function thrown(fn: () => unknown): unknown {
  try {
    fn()
  } catch (e) {
    return e
  }
  throw new Error('did not throw')
}

describe('chooseMethod', () => {
  it('auto prefers nft, falls back to nat and says why', () => {
    expect(chooseMethod('auto', { nft: OK, nat: OK })).toEqual({ method: 'nft', why: 'nft: nftables usable' })
    expect(chooseMethod('auto', { nft: nftMissing, nat: OK })).toEqual({ method: 'nat', why: 'nat: nft not found' })
  })

  it('nothing usable → FW_UNSUPPORTED naming both reasons, with an install hint', () => {
    const e = thrown(() => chooseMethod('auto', { nft: nftMissing, nat: natMissing }))
    expect(isTunnelError(e, 'FW_UNSUPPORTED')).toBe(true)
    expect((e as Error).message).toContain('nft: nft not found; nat: iptables not found')
    expect((e as { hint: string }).hint).toMatch(/nftables or iptables/)
  })

  it('an explicit method must be usable, and keeps the probe hint', () => {
    expect(chooseMethod('nat', { nat: OK, nft: OK }).method).toBe('nat')
    const e = thrown(() => chooseMethod('nft', { nft: nftMissing, nat: OK }))
    expect(isTunnelError(e, 'FW_UNSUPPORTED')).toBe(true)
    expect((e as { hint: string }).hint).toBe('install nftables')
  })
})

describe('selectMethod', () => {
  it('auto probes nat only when nft is unusable', async () => {
    const asked: MethodName[] = []
    const probe = (r: Partial<Record<MethodName, ProbeResult>>) => async (m: MethodName): Promise<ProbeResult> =>
      (asked.push(m), r[m] ?? { ok: false, why: `${m} not scripted` })
    expect((await selectMethod('auto', probe({ nft: OK, nat: OK }))).method).toBe('nft')
    expect(asked).toEqual(['nft'])
    expect((await selectMethod('auto', probe({ nft: nftMissing, nat: OK }))).method).toBe('nat')
    expect(asked).toEqual(['nft', 'nft', 'nat'])
    await expect(selectMethod('nat', probe({ nft: OK, nat: natMissing }))).rejects.toMatchObject({ code: 'FW_UNSUPPORTED' })
  })
})

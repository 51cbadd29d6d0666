/**
 * ssh2-compat.ts items 9–13 (authentication and negotiation internals) against the installed
 * ssh2: a key offered under a signature algorithm of our choice, our one-key agent, the
 * EXT_INFO / USERAUTH_FAILURE hooks, and the server's KEXINIT offer.
 */
import * as net from 'node:net'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { Server, utils, type Connection, type ParsedKey } from 'ssh2'
import { Client } from '../../../src/ssh/builtin/ssh2-compat'
import { captureServerOffer, keyAsAlgorithm, singleKeyAgent, watchAuthMessages } from '../../../src/ssh/builtin/ssh2-compat-auth'
import { genKey } from '../helpers'

const rsa = utils.parseKey(utils.generateKeyPairSync('rsa', { bits: 2048 }).private) as ParsedKey

/** Accepts the RSA key only when signed as rsa-sha2-512 (like PubkeyAcceptedAlgorithms rsa-sha2-512). */
let server: Server
let port = 0
const seen: string[] = []
beforeAll(async () => {
  server = new Server({ hostKeys: [genKey().private], algorithms: { kex: ['diffie-hellman-group14-sha256', 'curve25519-sha256'] } }, (c: Connection) => {
    c.on('error', () => {})
    c.on('authentication', (ctx) => {
      if (ctx.method !== 'publickey') return ctx.reject(['publickey'])
      // ssh2's server reports the key type as algo and the signature algorithm as hashAlgo.
      seen.push(`${ctx.hashAlgo}${ctx.signature ? '+sig' : ''}`)
      if (ctx.hashAlgo !== 'sha512' || !ctx.key.data.equals(rsa.getPublicSSH())) return ctx.reject(['publickey'])
      if (!ctx.signature) return ctx.accept()
      return rsa.verify(ctx.blob!, ctx.signature, ctx.hashAlgo) === true ? ctx.accept() : ctx.reject(['publickey'])
    })
  })
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()))
  port = (server.address() as net.AddressInfo).port
})
afterAll(() => new Promise<void>((r) => server.close(() => r())))

function connect(cfg: Record<string, unknown>, before?: (c: Client) => void): Promise<Client> {
  return new Promise((resolve, reject) => {
    const client = new Client()
    client.once('ready', () => resolve(client))
    client.once('error', reject)
    client.connect({ host: '127.0.0.1', port, username: 'u', hostVerifier: () => true, ...cfg })
    before?.(client)
  })
}

describe('ssh2 internals for authentication (ssh2-compat.ts 9–13)', () => {
  it('9. a key object with type rsa-sha2-512 is sent as that algorithm, with the key blob, signed by our sign()', async () => {
    seen.length = 0
    const key = keyAsAlgorithm(rsa, 'rsa-sha2-512', (d) => rsa.sign(d, 'sha512'))
    const c = await connect({ privateKey: undefined, authHandler: [{ type: 'publickey', username: 'u', key }] })
    expect(seen).toEqual(['sha512', 'sha512+sig'])
    c.end()
    // ssh2 on its own offers the same key as rsa-sha2-256 only, and is refused.
    seen.length = 0
    await expect(connect({ authHandler: [{ type: 'publickey', username: 'u', key: rsa }] })).rejects.toThrow(/authentication methods failed/)
    expect(seen).toEqual(['sha256'])
  })

  it('10. a one-key agent: ssh2 offers its key and takes the signature from our sign()', async () => {
    seen.length = 0
    let signed = 0
    const key = keyAsAlgorithm(rsa, 'rsa-sha2-512', () => new Error('not used'))
    const agent = singleKeyAgent(key, async (d) => {
      signed++
      return rsa.sign(d, 'sha512') as Buffer
    })
    const c = await connect({ authHandler: [{ type: 'agent', username: 'u', agent }] })
    expect(signed).toBe(1)
    expect(seen).toEqual(['sha512', 'sha512+sig'])
    c.end()
  })

  it('11. EXT_INFO (server-sig-algs) and every USERAUTH_FAILURE are seen through the hooks', async () => {
    const sig: (string[] | null)[] = []
    const failures: string[][] = []
    const hooks = { serverSigAlgs: (a: string[] | null) => sig.push(a), failure: (m: string[]) => failures.push(m) }
    let watched = false
    const err = await connect({ authHandler: [{ type: 'none', username: 'u' }] }, (c) => (watched = watchAuthMessages(c, hooks))).catch((e: Error) => e)
    expect(watched).toBe(true)
    expect(err).toBeInstanceOf(Error)
    expect(failures).toEqual([['publickey']])
    expect(sig.length).toBeLessThanOrEqual(1) // ssh2's server sends EXT_INFO only to clients that ask; either way no crash
  })

  it("13. the server's KEXINIT lists are captured, also with ssh2's debug off", async () => {
    let cap: ReturnType<typeof captureServerOffer> | undefined
    const err = await connect({ algorithms: { kex: ['ecdh-sha2-nistp256'] } }, (c) => (cap = captureServerOffer(c))).catch((e: Error) => e)
    expect(String(err)).toMatch(/no matching key exchange/)
    expect(cap!.offer['KEX method']).toEqual(expect.arrayContaining(['diffie-hellman-group14-sha256', 'curve25519-sha256']))
  })
})

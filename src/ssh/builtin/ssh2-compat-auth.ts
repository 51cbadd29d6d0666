/**
 * ssh2 internals for authentication and negotiation: items 9–13 of ssh2-compat.ts (which loads
 * ssh2), pinned by test/ssh/builtin/ssh2-compat-auth.test.ts.
 *
 *  9. Offering a key under a signature algorithm of our choice (rsa-sha2-512, then -256): ssh2
 *     picks the algorithm itself only for a key whose `type` is 'ssh-rsa' (client.js
 *     getKeyAlgos: one algorithm, rsa-sha2-256 whenever server-sig-algs lists it). A key object
 *     inheriting from the parsed key (parseKey() recognises it by a symbol on its prototype
 *     chain) whose `type` is the algorithm name is sent as that algorithm (Protocol.authPK:
 *     keyAlgo defaults to key.type) with the key's blob, and signed by our sign().
 * 10. An agent of our own: a BaseAgent subclass that holds one identity (AgentContext parses
 *     each identity with parseKey(), which returns a parsed key unchanged).
 * 11. The server's EXT_INFO (server-sig-algs) and every USERAUTH_FAILURE (methods, partial
 *     success), through the Protocol's message handlers (Client._protocol._handlers, looked up
 *     per message): ssh2 keeps the first in a closure and, while trying agent keys, does not
 *     pass the second on to the authHandler.
 * 12. User certificates. A key object as in 9 whose type is the certificate algorithm and whose
 *     getPublicSSH() is the certificate is sent as such — but Protocol.authPK writes that same
 *     name as the signature's algorithm, where sshd wants the plain one (ssh-ed25519,
 *     rsa-sha2-512). Protocol.prototype.authPK is wrapped: for our certificate keys only, the
 *     signed request is rewritten just before ssh2 finalises it (PacketWriter.finalize, called
 *     synchronously after the signature callback; alloc()/allocStart lay out the packet), with
 *     the plain name in the signature. convertSignature (protocol/utils.js) turns an ECDSA
 *     signature into SSH's form, as authPK would for a plain ECDSA key. Tested against a real
 *     sshd by test/ssh/builtin/user-certificates.test.ts.
 * 13. The server's KEXINIT lists (captureServerOffer, below).
 */
import type { ParsedKey } from 'ssh2'
import { BaseAgent, type Client } from './ssh2-compat'

/**
 * 9. `key` offered as `algorithm` (e.g. 'rsa-sha2-512' for an ssh-rsa key), signed by `sign`
 * (the raw signature, without the algorithm name). ssh2 sends the key's own blob.
 */
export function keyAsAlgorithm(key: ParsedKey, algorithm: string, sign: (data: Buffer) => Buffer | Error): ParsedKey {
  const k = Object.create(key) as ParsedKey
  Object.defineProperty(k, 'type', { value: algorithm, enumerable: true })
  Object.defineProperty(k, 'sign', { value: (data: Buffer) => sign(data) })
  return k
}

/** 10. An agent that offers exactly one key and signs through `sign` (raw signature out). */
export function singleKeyAgent(key: ParsedKey, sign: (data: Buffer) => Promise<Buffer>): import('ssh2').BaseAgent {
  class OneKey extends BaseAgent<ParsedKey> {
    override getIdentities(cb: (err: Error | undefined, keys?: ParsedKey[]) => void): void {
      cb(undefined, [key])
    }
    override sign(_pub: ParsedKey, data: Buffer, options: unknown, cb?: (err: Error | undefined, sig?: Buffer) => void): void {
      const done = (typeof options === 'function' ? options : cb) as (err: Error | undefined, sig?: Buffer) => void
      sign(data).then(
        (sig) => done(undefined, sig),
        (e: unknown) => done(e instanceof Error ? e : new Error(String(e))),
      )
    }
  }
  return new OneKey()
}

export interface AuthMessageHooks {
  /** EXT_INFO's server-sig-algs (null: the server sent EXT_INFO without it). */
  serverSigAlgs(algs: string[] | null): void
  /** Every USERAUTH_FAILURE: the methods that can continue, and whether the last one partly succeeded. */
  failure(methods: string[], partial: boolean): void
}

/** 11. Watches EXT_INFO and USERAUTH_FAILURE; call right after client.connect(). False if the internals moved. */
export function watchAuthMessages(client: Client, hooks: AuthMessageHooks): boolean {
  const handlers = (client as unknown as { _protocol?: { _handlers?: Record<string, unknown> } })._protocol?._handlers
  if (!handlers || typeof handlers.EXT_INFO !== 'function' || typeof handlers.USERAUTH_FAILURE !== 'function') return false
  const ext = handlers.EXT_INFO as (p: unknown, exts: { name: string; algs?: string[] }[]) => unknown
  const fail = handlers.USERAUTH_FAILURE as (p: unknown, methods: string[], partial: boolean) => unknown
  handlers.EXT_INFO = (p: unknown, exts: { name: string; algs?: string[] }[]) => {
    const sig = Array.isArray(exts) ? exts.find((e) => e.name === 'server-sig-algs') : undefined
    hooks.serverSigAlgs(Array.isArray(sig?.algs) ? sig.algs : null)
    return ext(p, exts)
  }
  handlers.USERAUTH_FAILURE = (p: unknown, methods: string[], partial: boolean) => {
    hooks.failure(Array.isArray(methods) ? methods : [], partial === true)
    return fail(p, methods, partial)
  }
  return true
}

/** 12. Marks a certificate key object: the signature algorithm to write in its place. */
const CERT_SIG_ALGO = Symbol('subnet-tunnel certificate signature algorithm')

interface PacketWriterLike {
  allocStart: number
  alloc(size: number, force?: boolean): Buffer
  finalize(packet: Buffer, force?: boolean): Buffer
}
type AuthPK = (this: { _packetRW?: { write?: PacketWriterLike } }, user: string, key: unknown, keyAlgo?: unknown, cbSign?: unknown) => unknown
type ConvertSignature = (sig: Buffer, keyType: string) => Buffer | false

let certificatesInstalled: boolean | undefined
let convertSignature: ConvertSignature | undefined

/** 12. Installs the authPK wrapper once; false when ssh2's internals moved (then certificates are not offered). */
function installCertificateSigning(): boolean {
  if (certificatesInstalled !== undefined) return certificatesInstalled
  certificatesInstalled = false
  try {
    // Loaded (and cached) by ssh2 itself above.
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    const proto = (require('ssh2/lib/protocol/Protocol.js') as { prototype: { authPK?: AuthPK } }).prototype
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    const convert = (require('ssh2/lib/protocol/utils.js') as { convertSignature?: ConvertSignature }).convertSignature
    const original = proto.authPK
    if (typeof original !== 'function' || typeof convert !== 'function') return false
    convertSignature = convert
    proto.authPK = function (user, key, keyAlgo, cbSign) {
      const sigAlgo = (key as { [CERT_SIG_ALGO]?: string } | undefined)?.[CERT_SIG_ALGO]
      if (sigAlgo === undefined || typeof cbSign !== 'function') return original.call(this, user, key, keyAlgo, cbSign)
      const certAlgo = (key as ParsedKey).type
      const sign = cbSign as (data: Buffer, cb: (sig: Buffer) => void) => void
      return original.call(this, user, key, keyAlgo, (data: Buffer, cb: (sig: Buffer) => void) =>
        sign(data, (sig) => {
          const w = this._packetRW?.write
          if (!w) return cb(sig)
          const own = Object.prototype.hasOwnProperty.call(w, 'finalize')
          const finalize = w.finalize
          w.finalize = (packet: Buffer, force?: boolean): Buffer => {
            if (own) w.finalize = finalize
            else delete (w as Partial<PacketWriterLike>).finalize
            return finalize.call(w, withSignatureAlgorithm(w, packet, certAlgo, sigAlgo), force)
          }
          cb(sig)
        }),
      )
    }
    certificatesInstalled = true
  } catch {
    certificatesInstalled = false
  }
  return certificatesInstalled
}

/**
 * The signed publickey request in `packet` (at w.allocStart: byte 50, string user, string
 * service, string "publickey", TRUE, string algorithm, string key, string signature) with the
 * signature blob's algorithm name replaced by `sigAlgo`. Anything unexpected: unchanged.
 */
function withSignatureAlgorithm(w: PacketWriterLike, packet: Buffer, certAlgo: string, sigAlgo: string): Buffer {
  try {
    let p = w.allocStart
    const str = (from: Buffer = packet): Buffer => {
      const len = from.readUInt32BE(p)
      if (p + 4 + len > from.length) throw new Error('truncated')
      const v = from.subarray(p + 4, p + 4 + len)
      p += 4 + len
      return v
    }
    if (packet[p++] !== 50) return packet
    const head = [str(), str(), str()]
    if (packet[p++] !== 1) return packet
    const algo = str()
    const blob = str()
    const sigBlob = str()
    if (algo.toString('latin1') !== certAlgo) return packet
    p = 0
    if (str(sigBlob).toString('latin1') !== certAlgo) return packet
    const sig = str(sigBlob)
    const payload = Buffer.concat([
      Buffer.from([50]), ...head.map(sshStr), Buffer.from([1]), sshStr(algo), sshStr(blob),
      sshStr(Buffer.concat([sshStr(Buffer.from(sigAlgo, 'latin1')), sshStr(sig)])),
    ])
    const out = w.alloc(payload.length)
    payload.copy(out, w.allocStart)
    return out
  } catch {
    return packet
  }
}

function sshStr(b: Buffer): Buffer {
  const len = Buffer.alloc(4)
  len.writeUInt32BE(b.length)
  return Buffer.concat([len, b])
}

/** Whether OpenSSH user certificates can be offered (12). */
export function certificateSupport(): boolean {
  return installCertificateSigning()
}

/**
 * 12. `key` (the private key, or for the agent its plain public key) offered as the certificate
 * `cert` under `certAlgo` (e.g. rsa-sha2-512-cert-v01@openssh.com), its signature written as
 * `sigAlgo` (rsa-sha2-512). `sign` makes the raw signature (for a file key; the agent path
 * signs through singleKeyAgent); an ECDSA one is converted to SSH's form here.
 */
export function certificateKey(key: ParsedKey, cert: Buffer, certAlgo: string, sigAlgo: string, sign: (data: Buffer) => Buffer | Error): ParsedKey {
  installCertificateSigning()
  const k = Object.create(key) as ParsedKey
  Object.defineProperty(k, 'type', { value: certAlgo, enumerable: true })
  Object.defineProperty(k, 'getPublicSSH', { value: () => cert })
  Object.defineProperty(k, CERT_SIG_ALGO, { value: sigAlgo })
  Object.defineProperty(k, 'sign', {
    value: (data: Buffer) => {
      const sig = sign(data)
      if (sig instanceof Error || !sigAlgo.startsWith('ecdsa-')) return sig
      return convertSignature?.(sig, sigAlgo) || new Error('cannot convert the ECDSA signature')
    },
  })
  return k
}

/** The server's KEXINIT lists, as far as negotiation got (keys: 'KEX method', 'Host key format', 'C->S cipher', …). */
export type ServerOffer = Record<string, string[]>

/**
 * 13. The server's algorithm offer, for "no matching …" errors (OpenSSH prints "Their offer:").
 * ssh2 reads Protocol._debug at every use (kex.js handleKexInit logs each remote list as
 * "Handshake: (remote) NAME: a,b,c" before it checks that list), so a capturing function there
 * sees the offer even when ssh2's debug is off; `stop()` puts the original back once the
 * handshake is over, so the data path pays nothing.
 */
export function captureServerOffer(client: Client): { offer: ServerOffer; stop(): void } {
  const offer: ServerOffer = {}
  const proto = (client as unknown as { _protocol?: { _debug?: ((m: string) => void) | undefined } })._protocol
  if (!proto || !('_debug' in proto)) return { offer, stop: () => {} }
  const original = proto._debug
  proto._debug = (m: string) => {
    const r = /^Handshake: \(remote\) (.+?): (.*)$/.exec(m)
    if (r) offer[r[1]!] = r[2]!.split(',').filter(Boolean)
    original?.(m)
  }
  return {
    offer,
    stop: () => {
      proto._debug = original
    },
  }
}

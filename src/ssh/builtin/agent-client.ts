/**
 * A minimal ssh-agent client (draft-miller-ssh-agent: REQUEST_IDENTITIES, SIGN_REQUEST). ssh2's
 * own agent client drops every identity it cannot parse, so certificates and security keys in
 * the agent would be invisible: we list the raw blobs ourselves, to order them like OpenSSH
 * (identities.ts) and to say exactly which identity the built-in engine cannot use.
 */
import * as net from 'node:net'

const SSH_AGENT_FAILURE = 5
const SSH_AGENTC_REQUEST_IDENTITIES = 11
const SSH_AGENT_IDENTITIES_ANSWER = 12
const SSH_AGENTC_SIGN_REQUEST = 13
const SSH_AGENT_SIGN_RESPONSE = 14

/** SIGN_REQUEST flags for RSA keys: which hash the signature uses. */
export const SSH_AGENT_RSA_SHA2_256 = 2
export const SSH_AGENT_RSA_SHA2_512 = 4

/** One identity as the agent lists it. */
export interface AgentIdentity {
  /** The public key (or certificate) blob. */
  readonly blob: Buffer
  readonly comment: string
}

/** Largest answer we accept (an agent with hundreds of RSA keys stays far below). */
const MAX_MESSAGE = 1 << 20

export interface AgentOptions {
  /** Listing is quick; signing may wait for a confirmation or a touch (ssh-add -c, FIDO). */
  readonly timeoutMs?: number
}

/** Lists the agent's identities. Rejects if the socket cannot be reached or answers nonsense. */
export async function agentIdentities(socketPath: string, opts: AgentOptions = {}): Promise<AgentIdentity[]> {
  const reply = await request(socketPath, Buffer.from([SSH_AGENTC_REQUEST_IDENTITIES]), opts.timeoutMs ?? 10_000)
  if (reply[0] !== SSH_AGENT_IDENTITIES_ANSWER) throw new Error(`agent answered ${reply[0]} to REQUEST_IDENTITIES`)
  const r = new Reader(reply, 1)
  const n = r.u32()
  if (n > 10_000) throw new Error('agent lists too many identities')
  const out: AgentIdentity[] = []
  for (let i = 0; i < n; i++) out.push({ blob: r.string(), comment: r.string().toString('utf8') })
  return out
}

/**
 * Asks the agent to sign `data` with the identity `blob`; resolves the signature blob as the
 * agent sends it (string algorithm, string signature).
 */
export async function agentSign(socketPath: string, blob: Buffer, data: Buffer, flags: number, opts: AgentOptions = {}): Promise<Buffer> {
  const msg = Buffer.concat([Buffer.from([SSH_AGENTC_SIGN_REQUEST]), sshString(blob), sshString(data), u32(flags)])
  const reply = await request(socketPath, msg, opts.timeoutMs ?? 120_000)
  if (reply[0] === SSH_AGENT_FAILURE) throw new Error('the agent refused to sign (a confirmation declined, or a key it no longer holds)')
  if (reply[0] !== SSH_AGENT_SIGN_RESPONSE) throw new Error(`agent answered ${reply[0]} to SIGN_REQUEST`)
  return new Reader(reply, 1).string()
}

/** The signature inside a signature blob (string algorithm, string signature). */
export function signatureOf(sigBlob: Buffer): { algorithm: string; signature: Buffer } {
  const r = new Reader(sigBlob, 0)
  const algorithm = r.string().toString('latin1')
  return { algorithm, signature: r.string() }
}

/** One request, one answer, on a fresh connection (what ssh2's agent client does too). */
function request(socketPath: string, body: Buffer, timeoutMs: number): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const sock = net.connect(socketPath)
    let buf = Buffer.alloc(0)
    let done = false
    const finish = (err: Error | undefined, msg?: Buffer): void => {
      if (done) return
      done = true
      clearTimeout(timer)
      sock.destroy()
      if (err) reject(err)
      else resolve(msg!)
    }
    const timer = setTimeout(() => finish(new Error(`ssh-agent did not answer within ${timeoutMs / 1000} s`)), timeoutMs)
    sock.on('error', (e) => finish(e))
    sock.on('close', () => finish(new Error('ssh-agent closed the connection')))
    sock.on('connect', () => sock.write(Buffer.concat([u32(body.length), body])))
    sock.on('data', (d: Buffer) => {
      buf = Buffer.concat([buf, d])
      if (buf.length < 4) return
      const len = buf.readUInt32BE(0)
      if (len === 0 || len > MAX_MESSAGE) return finish(new Error(`ssh-agent sent a message of ${len} bytes`))
      if (buf.length >= 4 + len) finish(undefined, buf.subarray(4, 4 + len))
    })
  })
}

function u32(n: number): Buffer {
  const b = Buffer.alloc(4)
  b.writeUInt32BE(n >>> 0)
  return b
}

export function sshString(b: Buffer | string): Buffer {
  const data = typeof b === 'string' ? Buffer.from(b, 'utf8') : b
  return Buffer.concat([u32(data.length), data])
}

/** Reads SSH wire types; throws on a truncated buffer. */
export class Reader {
  constructor(
    private readonly buf: Buffer,
    private pos: number,
  ) {}

  get offset(): number {
    return this.pos
  }

  get left(): number {
    return this.buf.length - this.pos
  }

  u32(): number {
    if (this.pos + 4 > this.buf.length) throw new Error('truncated SSH data')
    const v = this.buf.readUInt32BE(this.pos)
    this.pos += 4
    return v
  }

  u64(): bigint {
    if (this.pos + 8 > this.buf.length) throw new Error('truncated SSH data')
    const v = this.buf.readBigUInt64BE(this.pos)
    this.pos += 8
    return v
  }

  string(): Buffer {
    const len = this.u32()
    if (this.pos + len > this.buf.length) throw new Error('truncated SSH data')
    const v = this.buf.subarray(this.pos, this.pos + len)
    this.pos += len
    return v
  }
}

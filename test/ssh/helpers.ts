import * as fs from 'node:fs'
import * as net from 'node:net'
import * as os from 'node:os'
import * as path from 'node:path'
import { Server, utils, type Connection, type ServerChannel } from 'ssh2'
import type { SshHostConfig } from '../../src/config/ssh-config-types'
import { TunnelError } from '../../src/errors'
import type { HostKeyVerifier, Prompter } from '../../src/ssh/builtin/types'

export interface KeyPair {
  readonly private: string
  readonly public: string
  /** The public key blob as sent on the wire (what a HostKeyVerifier receives). */
  readonly blob: Buffer
}

export function genKey(passphrase?: string): KeyPair {
  // ssh2 1.17's generateKeyPairSync('ed25519') emits a public key its own parseKey rejects
  // ("Malformed OpenSSH public key") about once in 270 keys (measured: 11 of 3,000); it made CI
  // fail at random. Only tests generate keys, so draw again.
  for (let attempt = 0; ; attempt++) {
    const kp = passphrase
      ? utils.generateKeyPairSync('ed25519', { passphrase, cipher: 'aes256-ctr', rounds: 2 })
      : utils.generateKeyPairSync('ed25519')
    const pub = utils.parseKey(kp.public)
    if (pub instanceof Error) {
      if (attempt < 10) continue
      throw pub
    }
    return { private: kp.private, public: kp.public, blob: (Array.isArray(pub) ? pub[0] : pub).getPublicSSH() }
  }
}

export function tmpDir(): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), 'st-ssh-'))
}

export function writeKey(dir: string, name: string, k: KeyPair): string {
  const p = path.join(dir, name)
  fs.writeFileSync(p, k.private, { mode: 0o600 })
  return p
}

export type TcpipMode = 'pipe' | 'none' | 'silent'

export interface TestServerOptions {
  hostKey: KeyPair
  userKey?: KeyPair
  password?: string
  /** Accept keyboard-interactive when the single answer equals this. */
  kbdAnswer?: string
  /** pipe: connect to the requested address and pipe; none: no direct-tcpip handler (→ prohibited); silent: never answer. */
  tcpip?: TcpipMode
  port?: number
}

/** An in-process ssh2 server playing the bastion. */
export class TestServer {
  readonly server: Server
  readonly conns = new Set<Connection>()
  readonly sockets = new Set<net.Socket>()
  readonly authMethods: string[] = []
  port = 0

  constructor(private readonly opts: TestServerOptions) {
    this.server = new Server({ hostKeys: [opts.hostKey.private] }, (client) => this.onClient(client))
    this.server.on('connection', () => {})
    // Track raw sockets so stop() can cut every client like a network outage would.
    ;(this.server as unknown as { _srv: net.Server })._srv.on('connection', (s: net.Socket) => {
      this.sockets.add(s)
      s.on('close', () => this.sockets.delete(s))
    })
  }

  async start(port = this.opts.port ?? 0): Promise<number> {
    await new Promise<void>((resolve, reject) => {
      this.server.once('error', reject)
      this.server.listen(port, '127.0.0.1', () => {
        this.server.off('error', reject)
        resolve()
      })
    })
    this.port = (this.server.address() as net.AddressInfo).port
    return this.port
  }

  /** Stops listening and destroys every client connection. */
  async stop(): Promise<void> {
    for (const s of this.sockets) s.destroy()
    await new Promise<void>((resolve) => this.server.close(() => resolve()))
  }

  private onClient(client: Connection): void {
    this.conns.add(client)
    client.on('close', () => this.conns.delete(client))
    client.on('error', () => {})
    client.on('authentication', (ctx) => {
      this.authMethods.push(ctx.method)
      const uk = this.opts.userKey
      if (ctx.method === 'publickey' && uk) {
        const pub = utils.parseKey(uk.public)
        if (pub instanceof Error || Array.isArray(pub)) return ctx.reject()
        if (ctx.key.algo !== pub.type || !ctx.key.data.equals(pub.getPublicSSH())) return ctx.reject()
        if (!ctx.signature) return ctx.accept() // "would this key do?" probe
        return pub.verify(ctx.blob!, ctx.signature, ctx.hashAlgo) === true ? ctx.accept() : ctx.reject()
      }
      if (ctx.method === 'password' && this.opts.password !== undefined) {
        return ctx.password === this.opts.password ? ctx.accept() : ctx.reject()
      }
      if (ctx.method === 'keyboard-interactive' && this.opts.kbdAnswer !== undefined) {
        return ctx.prompt([{ prompt: 'Verification code: ', echo: true }], 'Two-step', 'Enter the code', (answers) =>
          answers[0] === this.opts.kbdAnswer ? ctx.accept() : ctx.reject(),
        )
      }
      const methods: ('publickey' | 'password' | 'keyboard-interactive')[] = []
      if (uk) methods.push('publickey')
      if (this.opts.kbdAnswer !== undefined) methods.push('keyboard-interactive')
      if (this.opts.password !== undefined) methods.push('password')
      ctx.reject(methods)
    })
    const mode = this.opts.tcpip ?? 'pipe'
    if (mode === 'none') return
    client.on('tcpip', (accept, reject, info) => {
      if (mode === 'silent') return
      const sock = net.connect(info.destPort, info.destIP)
      sock.once('error', () => reject())
      sock.once('connect', () => {
        const ch: ServerChannel = accept()
        sock.removeAllListeners('error')
        sock.on('error', () => ch.destroy())
        ch.on('error', () => sock.destroy())
        sock.pipe(ch).pipe(sock)
      })
    })
  }
}

/** A loopback TCP echo server that honours half-close: it ends its side after the peer's FIN. */
export async function echoServer(): Promise<{ port: number; server: net.Server; close(): Promise<void> }> {
  const socks = new Set<net.Socket>()
  const server = net.createServer({ allowHalfOpen: true }, (s) => {
    socks.add(s)
    s.on('close', () => socks.delete(s))
    s.on('error', () => {})
    s.pipe(s)
  })
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()))
  return {
    port: (server.address() as net.AddressInfo).port,
    server,
    close: () =>
      new Promise<void>((r) => {
        for (const s of socks) s.destroy()
        server.close(() => r())
      }),
  }
}

/** A port nothing listens on (bound then released). */
export async function freePort(): Promise<number> {
  const s = net.createServer()
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', () => r()))
  const port = (s.address() as net.AddressInfo).port
  await new Promise<void>((r) => s.close(() => r()))
  return port
}

export function hostCfg(over: Partial<SshHostConfig> & { port: number }): SshHostConfig {
  return {
    alias: '127.0.0.1',
    hostName: '127.0.0.1',
    user: 'tester',
    identityFiles: [],
    identitiesOnly: false,
    userKnownHostsFiles: [],
    globalKnownHostsFiles: [],
    strictHostKeyChecking: 'yes',
    hashKnownHosts: false,
    proxyJump: [],
    serverAliveInterval: 0,
    serverAliveCountMax: 3,
    connectTimeout: 5,
    batchMode: false,
    pubkeyAuthentication: true,
    passwordAuthentication: true,
    kbdInteractiveAuthentication: true,
    ...over,
  }
}

/** Accepts exactly one host key blob; anything else is a mismatch. */
export function fakeVerifier(blob: Buffer, calls?: Buffer[]): HostKeyVerifier {
  return {
    preferredAlgorithms: () => ['ssh-ed25519', 'ecdsa-sha2-nistp256', 'rsa-sha2-512', 'rsa-sha2-256'],
    verify: async (key) => {
      calls?.push(key)
      if (!key.equals(blob)) throw new TunnelError('HOSTKEY_MISMATCH', 'test: host key changed', { hint: 'fake' })
    },
  }
}

/** A prompter that answers from a script and records the questions. */
export function scriptedPrompter(answers: string[] | null): Prompter & { asked: { q: string; echo: boolean }[] } {
  const asked: { q: string; echo: boolean }[] = []
  const queue = [...(answers ?? [])]
  return {
    asked,
    isInteractive: () => answers !== null,
    ask: async (q, opts) => {
      asked.push({ q, echo: opts.echo })
      if (answers === null) throw new Error('not interactive')
      const a = queue.shift()
      if (a === undefined) throw new Error(`unexpected question: ${q}`)
      return a
    },
    notice: () => {},
  }
}

/** Collects a stream's data until it ends. */
export function readAll(s: NodeJS.ReadableStream): Promise<string> {
  return new Promise((resolve, reject) => {
    let out = ''
    s.on('data', (d: Buffer) => (out += d.toString()))
    s.on('end', () => resolve(out))
    s.on('error', reject)
  })
}

export function once<T = unknown>(em: NodeJS.EventEmitter, ev: string, ms = 10_000): Promise<T> {
  return new Promise((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`timeout waiting for ${ev}`)), ms)
    em.once(ev, (v: T) => {
      clearTimeout(t)
      resolve(v)
    })
  })
}

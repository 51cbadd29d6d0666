/**
 * Measurement, not a test: a 64 MiB download through a delay relay (RTT 40 ms by default), with
 * ssh2's fixed window and with the adaptive one. The bastion is the in-process ssh2 server, so
 * both SSH ends share one CPU: absolute figures are lower than against sshd.
 *
 *   npx vite-node test/ssh/builtin/window-bench.ts [MiB] [rttMs]
 */
import * as crypto from 'node:crypto'
import * as fs from 'node:fs'
import { silentLogger } from '../../../src/observe/logger'
import { SshSession } from '../../../src/ssh/builtin/session'
import { SshDialer } from '../../../src/ssh/builtin/dialer'
import { fakeVerifier, genKey, hostCfg, scriptedPrompter, tmpDir, TestServer, writeKey } from '../helpers'
import { delayRelay, payload, sourceServer } from './window-fixtures'

async function main(): Promise<void> {
  const mib = Number(process.argv[2] ?? 64)
  const rtt = Number(process.argv[3] ?? 40)
  const data = payload(mib * 1024 * 1024)
  const digest = crypto.createHash('sha256').update(data).digest('hex')
  const hostKey = genKey()
  const userKey = genKey()
  const dir = tmpDir()
  const srv = new TestServer({ hostKey, userKey })
  await srv.start()
  const relay = await delayRelay(srv.port, rtt / 2)
  const source = await sourceServer(data)
  try {
    for (const adaptive of [false, true, false, true]) {
      const session = new SshSession({
        target: hostCfg({ port: relay.port, identityFiles: [writeKey(dir, 'id', userKey)] }),
        makeVerifier: () => fakeVerifier(hostKey.blob),
        prompter: scriptedPrompter(null),
        log: silentLogger,
      })
      await session.start()
      const dialer = new SshDialer(session, { windows: adaptive ? {} : false })
      const t0 = performance.now()
      const ch = await dialer.dial({ host: '127.0.0.1', port: source.port }, { id: 1, frontEnd: 'transparent', srcAddress: '127.0.0.1', srcPort: 1 })
      const h = crypto.createHash('sha256')
      await new Promise<void>((resolve, reject) => {
        ch.on('data', (d: Buffer) => h.update(d))
        ch.on('end', resolve)
        ch.on('error', reject)
      })
      const s = (performance.now() - t0) / 1000
      const ok = h.digest('hex') === digest
      const w = dialer.windows?.windowOf(ch)
      console.log(`${adaptive ? 'adaptive' : 'ssh2 fixed'}: ${mib} MiB in ${s.toFixed(2)} s = ${(data.length / s / 1e6).toFixed(1)} MB/s (${((data.length * 8) / s / 1e6).toFixed(0)} Mbit/s)` +
        `${w ? `, final target ${w.target / 1048576} MiB, rtt est ${dialer.windows!.stats.rttMs!.toFixed(1)} ms` : ''}, sha256 ${ok ? 'ok' : 'MISMATCH'}`)
      ch.destroy()
      await session.close()
    }
  } finally {
    await relay.close()
    await srv.stop()
    await source.close()
    fs.rmSync(dir, { recursive: true, force: true })
  }
}

void main()

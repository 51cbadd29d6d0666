/**
 * Shared by the root-only TUN tests: a child script that opens a TUN device (run it as an
 * unprivileged user) and hand-made packets to write into it.
 */

/**
 * Node program: argv[2] the compiled tun-device.js, argv[3] the device, argv[4] the clone device
 * node. Prints every packet read (hex) as a JSON line, writes every hex line it gets, answers
 * "stats"; its first line is {ready: name} or {error, hint}.
 */
export const TUN_CHILD = `
const { openTunDevice } = require(process.argv[2])
openTunDevice(process.argv[3], { clonePath: process.argv[4] }).then((dev) => {
  dev.onPacket((p) => process.stdout.write(JSON.stringify({ packet: p.toString('hex') }) + '\\n'))
  require('readline').createInterface({ input: process.stdin }).on('line', (l) => {
    if (l === 'stats') return process.stdout.write(JSON.stringify({ stats: dev.stats(), mtu: dev.mtu }) + '\\n')
    dev.write(Buffer.from(l, 'hex'))
  })
  process.stdin.on('end', () => dev.close().then(() => process.exit(0)))
  process.stdout.write(JSON.stringify({ ready: dev.name }) + '\\n')
}, (e) => { process.stdout.write(JSON.stringify({ error: e.message, hint: e.hint }) + '\\n'); process.exit(3) })
`

/** The Internet checksum of b. */
export function checksum(b: Buffer): number {
  let s = 0
  for (let i = 0; i + 1 < b.length; i += 2) s += b.readUInt16BE(i)
  if (b.length % 2) s += b[b.length - 1] << 8
  while (s > 0xffff) s = (s & 0xffff) + (s >>> 16)
  return ~s & 0xffff
}

/** IPv4 UDP packet with valid IP and UDP checksums. */
export function udp4(src: number[], dst: number[], sport: number, dport: number, payload: Buffer): Buffer {
  const p = Buffer.alloc(28 + payload.length)
  p[0] = 0x45
  p.writeUInt16BE(p.length, 2)
  p[8] = 64
  p[9] = 17
  Buffer.from(src).copy(p, 12)
  Buffer.from(dst).copy(p, 16)
  p.writeUInt16BE(checksum(p.subarray(0, 20)), 10)
  p.writeUInt16BE(sport, 20)
  p.writeUInt16BE(dport, 22)
  p.writeUInt16BE(8 + payload.length, 24)
  payload.copy(p, 28)
  const pseudo = Buffer.concat([p.subarray(12, 20), Buffer.from([0, 17]), p.subarray(24, 26), p.subarray(20)])
  p.writeUInt16BE(checksum(pseudo) || 0xffff, 26)
  return p
}

/**
 * An ICMPv6 Router Advertisement from fe80::1 to all nodes (hop limit 255, as RFC 4861 demands):
 * router lifetime 1800 s (a default route) and a /64 prefix for autoconfiguration.
 */
export function routerAdvertisement(prefix64: Buffer): Buffer {
  const src = Buffer.from('fe800000000000000000000000000001', 'hex')
  const dst = Buffer.from('ff020000000000000000000000000001', 'hex')
  const ra = Buffer.alloc(16 + 32)
  ra[0] = 134 // type: router advertisement
  ra[4] = 64 // cur hop limit
  ra.writeUInt16BE(1800, 6) // router lifetime
  ra[16] = 3 // option: prefix information
  ra[17] = 4 // length in units of 8 bytes
  ra[18] = 64 // prefix length
  ra[19] = 0xc0 // on-link, autonomous
  ra.writeUInt32BE(86400, 20) // valid lifetime
  ra.writeUInt32BE(14400, 24) // preferred lifetime
  prefix64.copy(ra, 32, 0, 8)
  const pseudo = Buffer.alloc(40)
  src.copy(pseudo, 0)
  dst.copy(pseudo, 16)
  pseudo.writeUInt32BE(ra.length, 32)
  pseudo[39] = 58
  ra.writeUInt16BE(checksum(Buffer.concat([pseudo, ra])), 2)
  const ip = Buffer.alloc(40)
  ip.writeUInt32BE(0x60000000, 0)
  ip.writeUInt16BE(ra.length, 4)
  ip[6] = 58 // next header: ICMPv6
  ip[7] = 255 // hop limit
  src.copy(ip, 8)
  dst.copy(ip, 24)
  return Buffer.concat([ip, ra])
}

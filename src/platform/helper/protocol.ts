/**
 * The helper's wire protocol: one JSON object per line on stdin (requests) and stdout
 * (responses, log lines, one ready line).
 *
 *   → {"id":1,"op":"probe","method":"nft","ipv6":true}
 *   → {"id":2,"op":"apply","method":"nft","spec":{"instanceId":"ab12","listenPort":4000,
 *                                               "include":["10.0.0.0/16"],"exclude":[],
 *                                               "dns":{"servers":["127.0.0.53"],"port":4053,
 *                                                      "gatewayPort":4054,"exemptSourcePorts":[40053]},
 *                                               "gateway":true,"gatewayInterfaces":["br0"],
 *                                               "gatewaySources":["172.17.0.0/16"],"ownerUid":1000}}
 *   → {"id":3,"op":"revert"}            → {"id":4,"op":"cleanup"}
 *   → {"id":6,"op":"guard","spec":{"instanceId":"ab12","include":["10.0.0.0/16"],"exclude":["10.0.0.5/32"]}}
 *   → {"id":7,"op":"guard-state","closed":true}                       (--fail-closed)
 *   → {"id":8,"op":"learn","entries":[{"address":"10.0.7.5","ttl":330}]}   (--route-by-name)
 *   → {"id":5,"op":"natlook","src":{"host":"192.168.1.10","port":51000},
 *                            "dst":{"host":"127.0.0.1","port":4000},"proto":"tcp"}   (pf only)
 *   ← {"id":1,"ok":true,"result":{…}}   ← {"id":2,"ok":false,"error":{"code":"FW_APPLY","message":"…","hint":"…"}}
 *   ← {"log":{"level":"info","msg":"…"}} ← {"ready":{"pid":123,"netns":4026531840,"cleanup":{…}}}
 *
 * The helper runs as root and trusts nothing in a request: every field is checked here, CIDRs
 * are re-parsed, unknown fields are rejected, and it only ever runs argv it planned itself.
 */
import { hostCidr, tryParseCidr, uniqueCidrs, type Cidr } from '../../config/cidr'
import { TunnelError, type ErrorCode } from '../../errors'
import { isInterfaceName, isUid, MAX_GATEWAY_INTERFACES, MAX_GATEWAY_SOURCES } from '../firewall/capture-scope'
import { firewallFor } from '../firewall/choose-method'
import { isPort, MAX_DNS_SERVERS, MAX_EXEMPT_PORTS, parseServerAddress } from '../firewall/dns-capture'
import type { GuardSpec } from '../firewall/fail-closed'
import { learnRefusal, MAX_LEARN_ENTRIES, MAX_LEARN_TTL_S } from '../../config/learn-limits'
import { INSTANCE_ID_RE } from '../firewall/naming'
import { isMethodName, type CaptureSpec, type CgroupMatch, type DnsCapture, type MethodName } from '../firewall/types'

/** Longest request line accepted (4096 CIDRs of the longest IPv6 form fit comfortably). */
export const MAX_LINE = 512 * 1024
/** Most CIDRs (include + exclude) one apply may carry. */
export const MAX_CIDRS = 4096

/** A capture spec as it travels: CIDRs as text. */
export interface WireSpec {
  instanceId: string
  listenPort: number
  include: string[]
  exclude: string[]
  dns?: WireDns
  /** Gateway mode; sent only when true. */
  gateway?: boolean
  /** gateway only: the served interfaces (absent: every one). */
  gatewayInterfaces?: string[]
  /** gateway only: the served source networks (absent: every source). */
  gatewaySources?: string[]
  /** --owner-only: the uid whose local connections alone are captured. */
  ownerUid?: number
  /** tun only: the device owner's uid. */
  tunOwner?: number
  /** exec --only (nat, nft, tun): `subnet-tunnel-<id>`, the cgroup whose sockets alone are captured. */
  cgroup?: string
  /** exec --only on tun (required there): the firewall that marks the cgroup's packets. */
  cgroupMatch?: CgroupMatch
  /** --route-by-name: the families learnt addresses may be added in. */
  learn?: { families: Array<4 | 6> }
}

/** DnsCapture as it travels (the same shape: addresses are already text). */
export interface WireDns {
  servers: string[]
  port: number
  /** gateway only (and required there). */
  gatewayPort?: number
  exemptSourcePorts: number[]
}

export type HelperRequest =
  | { id: number; op: 'probe'; method: MethodName; ipv6?: boolean }
  | { id: number; op: 'apply'; method: MethodName; spec: CaptureSpec }
  | { id: number; op: 'revert' }
  | { id: number; op: 'cleanup' }
  | { id: number; op: 'natlook'; src: WireEndpoint; dst: WireEndpoint; proto: 'tcp' | 'udp' }
  | { id: number; op: 'guard'; spec: GuardSpec }
  | { id: number; op: 'guard-state'; closed: boolean }
  | { id: number; op: 'cgroup-add'; pid: number }
  | { id: number; op: 'learn'; entries: LearnEntry[] }

/** One address to capture for `ttl` seconds (added, or its time extended). */
export interface LearnEntry {
  address: Cidr
  ttl: number
}

/** An IP literal and a port (natlook). */
export interface WireEndpoint {
  host: string
  port: number
}

export interface WireError {
  code: ErrorCode
  message: string
  hint?: string
}

export type HelperResponse =
  | { id: number; ok: true; result: unknown }
  | { id: number | null; ok: false; error: WireError }

export type LogLevel = 'error' | 'warn' | 'info' | 'verbose' | 'debug'

/** Unsolicited helper output. */
export type HelperEvent =
  | { log: { level: LogLevel; msg: string } }
  | { ready: { pid: number; netns: number; cleanup: unknown } }
  /** Last line before a helper exits on its own (signal, stdin EOF): was everything reverted? */
  | { stopped: { why: string; clean: boolean } }

/** A request that failed validation; `id` is echoed when it could be read. */
export class BadRequest extends TunnelError {
  constructor(readonly id: number | null, message: string) {
    super('HELPER', `bad request: ${message}`)
  }
}

const FIELDS: Record<HelperRequest['op'], string[]> = {
  probe: ['id', 'op', 'method', 'ipv6'],
  apply: ['id', 'op', 'method', 'spec'],
  revert: ['id', 'op'],
  cleanup: ['id', 'op'],
  natlook: ['id', 'op', 'src', 'dst', 'proto'],
  guard: ['id', 'op', 'spec'],
  'guard-state': ['id', 'op', 'closed'],
  'cgroup-add': ['id', 'op', 'pid'],
  learn: ['id', 'op', 'entries'],
}
const GUARD_FIELDS = ['instanceId', 'include', 'exclude', 'ownerUid']
const SPEC_FIELDS = ['instanceId', 'listenPort', 'include', 'exclude', 'dns', 'gateway', 'gatewayInterfaces', 'gatewaySources',
  'ownerUid', 'tunOwner', 'cgroup', 'cgroupMatch', 'learn']
const DNS_FIELDS = ['servers', 'port', 'gatewayPort', 'exemptSourcePorts']

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v)
}

function onlyFields(o: Record<string, unknown>, allowed: string[], id: number | null, what: string): void {
  for (const k of Object.keys(o)) {
    if (!allowed.includes(k)) throw new BadRequest(id, `unknown field "${k}" in ${what}`)
  }
}

function parseMethod(v: unknown, id: number): MethodName {
  if (isMethodName(v)) return v
  throw new BadRequest(id, 'method must be "nat", "nft", "pf" or "tun"')
}

function parseCidrList(v: unknown, id: number, field: string): Cidr[] {
  if (!Array.isArray(v)) throw new BadRequest(id, `spec.${field} must be an array`)
  return v.map((s, i) => {
    const c = typeof s === 'string' && s.length <= 64 ? tryParseCidr(s) : undefined
    if (!c) throw new BadRequest(id, `spec.${field}[${i}] is not a CIDR`)
    return c
  })
}

/**
 * Validates spec.dns: every field required (gatewayPort exactly with gateway), servers re-parsed
 * into canonical IP literals.
 */
function parseDns(v: unknown, id: number, gateway: boolean): DnsCapture {
  if (!isObject(v)) throw new BadRequest(id, 'spec.dns must be an object')
  onlyFields(v, DNS_FIELDS, id, 'spec.dns')
  if (!Array.isArray(v.servers) || v.servers.length === 0 || v.servers.length > MAX_DNS_SERVERS) {
    throw new BadRequest(id, `spec.dns.servers must be an array of 1..${MAX_DNS_SERVERS} IP addresses`)
  }
  const servers = v.servers.map((s: unknown, i) => {
    const a = parseServerAddress(s)
    if (!a) throw new BadRequest(id, `spec.dns.servers[${i}] is not an IP address`)
    return a.address
  })
  if (!isPort(v.port)) throw new BadRequest(id, 'spec.dns.port must be an integer 1..65535')
  if (!gateway && v.gatewayPort !== undefined) throw new BadRequest(id, 'spec.dns.gatewayPort needs spec.gateway true')
  if (gateway && (!isPort(v.gatewayPort) || v.gatewayPort === v.port)) {
    throw new BadRequest(id, 'spec.dns.gatewayPort must be an integer 1..65535 other than spec.dns.port')
  }
  const exempt = v.exemptSourcePorts
  if (!Array.isArray(exempt) || exempt.length > MAX_EXEMPT_PORTS) {
    throw new BadRequest(id, `spec.dns.exemptSourcePorts must be an array of at most ${MAX_EXEMPT_PORTS} ports`)
  }
  exempt.forEach((p: unknown, i) => {
    if (!isPort(p)) throw new BadRequest(id, `spec.dns.exemptSourcePorts[${i}] must be an integer 1..65535`)
  })
  return { servers, port: v.port, ...(gateway && { gatewayPort: v.gatewayPort as number }), exemptSourcePorts: exempt as number[] }
}

/** A natlook endpoint: exactly {host, port}, host a plain IP literal (re-formatted), port 1..65535. */
function parseEndpoint(v: unknown, id: number, what: string): WireEndpoint {
  if (!isObject(v)) throw new BadRequest(id, `${what} must be an object`)
  onlyFields(v, ['host', 'port'], id, what)
  const a = parseServerAddress(v.host)
  if (!a) throw new BadRequest(id, `${what}.host is not an IP address`)
  if (!isPort(v.port)) throw new BadRequest(id, `${what}.port must be an integer 1..65535`)
  return { host: a.address, port: v.port }
}

/**
 * Validates a wire spec into a CaptureSpec (CIDRs re-parsed and normalised). The method matters
 * for a device backend (tun): no listener (listenPort 0), an id that fits the backend's names
 * (an interface name), and the device owner's uid, which no other method accepts.
 */
export function parseSpec(v: unknown, id: number, method?: MethodName): CaptureSpec {
  if (!isObject(v)) throw new BadRequest(id, 'spec must be an object')
  onlyFields(v, SPEC_FIELDS, id, 'spec')
  if (typeof v.instanceId !== 'string' || !INSTANCE_ID_RE.test(v.instanceId)) {
    throw new BadRequest(id, 'spec.instanceId must match [a-z0-9]{1,16}')
  }
  const fw = method === undefined ? undefined : firewallFor(method)
  const tun = fw?.capture === 'device'
  if (fw?.maxIdLength !== undefined && v.instanceId.length > fw.maxIdLength) {
    throw new BadRequest(id, `spec.instanceId must have at most ${fw.maxIdLength} characters with method ${fw.name}`)
  }
  if (tun ? !isUid(v.tunOwner) : v.tunOwner !== undefined) {
    throw new BadRequest(id, tun ? 'spec.tunOwner must be an integer 0..4294967294' : 'spec.tunOwner is for method tun only')
  }
  const port = v.listenPort
  const minPort = tun ? 0 : 1
  if (typeof port !== 'number' || !Number.isInteger(port) || port < minPort || port > 65535) {
    throw new BadRequest(id, `spec.listenPort must be an integer ${minPort}..65535`)
  }
  const include = parseCidrList(v.include, id, 'include')
  const exclude = parseCidrList(v.exclude, id, 'exclude')
  const learn = parseLearnSpec(v.learn, id)
  if (include.length === 0 && !learn) throw new BadRequest(id, 'spec.include is empty')
  if (include.length + exclude.length > MAX_CIDRS) {
    throw new BadRequest(id, `more than ${MAX_CIDRS} CIDRs`)
  }
  if (v.gateway !== undefined && typeof v.gateway !== 'boolean') {
    throw new BadRequest(id, 'spec.gateway must be a boolean')
  }
  if (v.ownerUid !== undefined && !isUid(v.ownerUid)) throw new BadRequest(id, 'spec.ownerUid must be an integer 0..4294967294')
  if (v.cgroup !== undefined) {
    if (typeof v.cgroup !== 'string' || v.cgroup !== `subnet-tunnel-${v.instanceId}`) throw new BadRequest(id, 'spec.cgroup must be subnet-tunnel-<instanceId>')
    if (method !== 'nat' && method !== 'nft' && method !== 'tun') throw new BadRequest(id, 'spec.cgroup is for methods nat, nft and tun only')
    if (v.gateway === true) throw new BadRequest(id, 'spec.cgroup and spec.gateway exclude each other')
  }
  // exec --only on tun: which firewall marks the cgroup's packets; nothing else takes one.
  if (tun && v.cgroup !== undefined ? v.cgroupMatch !== 'nft' && v.cgroupMatch !== 'iptables' : v.cgroupMatch !== undefined) {
    throw new BadRequest(id, tun && v.cgroup !== undefined ? 'spec.cgroupMatch must be nft or iptables' : 'spec.cgroupMatch is for method tun with spec.cgroup only')
  }
  const spec: CaptureSpec = {
    instanceId: v.instanceId,
    listenPort: port,
    include,
    exclude,
    ...(v.dns !== undefined && { dns: parseDns(v.dns, id, v.gateway === true) }),
    ...(v.gateway === true && { gateway: true }),
    ...parseGatewayScope(v, id),
    ...(v.ownerUid !== undefined && { ownerUid: v.ownerUid as number }),
    ...(tun && { tunOwner: v.tunOwner as number }),
    ...(v.cgroup !== undefined && { cgroup: v.cgroup as string }),
    ...(v.cgroupMatch !== undefined && { cgroupMatch: v.cgroupMatch as CgroupMatch }),
    ...(learn && { learn }),
  }
  return spec
}

/** spec.learn: exactly {families}, 1..2 distinct families. */
function parseLearnSpec(v: unknown, id: number): CaptureSpec['learn'] {
  if (v === undefined) return undefined
  if (!isObject(v)) throw new BadRequest(id, 'spec.learn must be an object')
  onlyFields(v, ['families'], id, 'spec.learn')
  const f = v.families
  if (!Array.isArray(f) || f.length === 0 || f.length > 2 || f.some((x) => x !== 4 && x !== 6) || new Set(f).size !== f.length) {
    throw new BadRequest(id, 'spec.learn.families must be [4], [6] or [4, 6]')
  }
  return { families: f as Array<4 | 6> }
}

/**
 * A learn request's entries: 1..MAX_LEARN_ENTRIES of exactly {address, ttl}, the address a plain
 * IP literal (re-parsed to canonical form) outside the special ranges, ttl whole seconds.
 */
function parseLearnEntries(v: unknown, id: number): LearnEntry[] {
  if (!Array.isArray(v) || v.length === 0 || v.length > MAX_LEARN_ENTRIES) {
    throw new BadRequest(id, `entries must be an array of 1..${MAX_LEARN_ENTRIES} entries`)
  }
  return v.map((e: unknown, i) => {
    if (!isObject(e)) throw new BadRequest(id, `entries[${i}] must be an object`)
    onlyFields(e, ['address', 'ttl'], id, `entries[${i}]`)
    const a = parseServerAddress(e.address)
    if (!a) throw new BadRequest(id, `entries[${i}].address is not an IP address`)
    const address = hostCidr(a.address)
    const refused = learnRefusal(address)
    if (refused) throw new BadRequest(id, `entries[${i}].address is ${refused}`)
    const ttl = e.ttl
    if (typeof ttl !== 'number' || !Number.isInteger(ttl) || ttl < 1 || ttl > MAX_LEARN_TTL_S) {
      throw new BadRequest(id, `entries[${i}].ttl must be an integer 1..${MAX_LEARN_TTL_S}`)
    }
    return { address, ttl }
  })
}

/**
 * spec.gatewayInterfaces / gatewaySources: only with gateway true; when present, non-empty
 * (absent means "every", so an empty list would be ambiguous), bounded, each item checked:
 * interface names become argv tokens and nft command text.
 */
function parseGatewayScope(v: Record<string, unknown>, id: number): Pick<CaptureSpec, 'gatewayInterfaces' | 'gatewaySources'> {
  const ifaces = v.gatewayInterfaces
  const sources = v.gatewaySources
  if (ifaces === undefined && sources === undefined) return {}
  if (v.gateway !== true) throw new BadRequest(id, 'spec.gatewayInterfaces and spec.gatewaySources need spec.gateway true')
  const out: { gatewayInterfaces?: string[]; gatewaySources?: Cidr[] } = {}
  if (ifaces !== undefined) {
    if (!Array.isArray(ifaces) || ifaces.length === 0 || ifaces.length > MAX_GATEWAY_INTERFACES) {
      throw new BadRequest(id, `spec.gatewayInterfaces must be an array of 1..${MAX_GATEWAY_INTERFACES} interface names`)
    }
    ifaces.forEach((n: unknown, i) => {
      if (!isInterfaceName(n)) throw new BadRequest(id, `spec.gatewayInterfaces[${i}] is not an interface name`)
    })
    out.gatewayInterfaces = [...new Set(ifaces as string[])]
  }
  if (sources !== undefined) {
    if (!Array.isArray(sources) || sources.length === 0 || sources.length > MAX_GATEWAY_SOURCES) {
      throw new BadRequest(id, `spec.gatewaySources must be an array of 1..${MAX_GATEWAY_SOURCES} CIDRs`)
    }
    out.gatewaySources = uniqueCidrs(parseCidrList(sources, id, 'gatewaySources'))
  }
  return out
}

/** Parses and validates one request line. Throws BadRequest. */
export function parseRequest(line: string): HelperRequest {
  if (line.length > MAX_LINE) throw new BadRequest(null, `line longer than ${MAX_LINE} bytes`)
  let v: unknown
  try {
    v = JSON.parse(line)
  } catch {
    throw new BadRequest(null, 'not JSON')
  }
  if (!isObject(v)) throw new BadRequest(null, 'not a JSON object')
  const id = v.id
  if (typeof id !== 'number' || !Number.isSafeInteger(id) || id < 0) {
    throw new BadRequest(null, 'id must be a non-negative integer')
  }
  const op = v.op
  if (typeof op !== 'string' || !Object.hasOwn(FIELDS, op)) {
    throw new BadRequest(id, 'op must be probe, apply, revert, cleanup, natlook, learn, guard, guard-state or cgroup-add')
  }
  onlyFields(v, FIELDS[op as HelperRequest['op']], id, 'request')
  switch (op) {
    case 'probe': {
      if (v.ipv6 !== undefined && typeof v.ipv6 !== 'boolean') throw new BadRequest(id, 'ipv6 must be a boolean')
      const req: HelperRequest = { id, op, method: parseMethod(v.method, id) }
      return v.ipv6 === undefined ? req : { ...req, ipv6: v.ipv6 as boolean }
    }
    case 'apply': {
      const method = parseMethod(v.method, id)
      return { id, op, method, spec: parseSpec(v.spec, id, method) }
    }
    case 'learn':
      return { id, op, entries: parseLearnEntries(v.entries, id) }
    case 'natlook':
      if (v.proto !== 'tcp' && v.proto !== 'udp') throw new BadRequest(id, 'proto must be "tcp" or "udp"')
      return { id, op, src: parseEndpoint(v.src, id, 'src'), dst: parseEndpoint(v.dst, id, 'dst'), proto: v.proto }
    case 'guard':
      return { id, op, spec: parseGuardSpec(v.spec, id) }
    case 'guard-state':
      if (typeof v.closed !== 'boolean') throw new BadRequest(id, 'closed must be a boolean')
      return { id, op, closed: v.closed }
    case 'cgroup-add':
      if (typeof v.pid !== 'number' || !Number.isInteger(v.pid) || v.pid < 2 || v.pid > 2 ** 22) throw new BadRequest(id, 'pid must be a process id')
      return { id, op, pid: v.pid }
    default:
      return { id, op: op as 'revert' | 'cleanup' }
  }
}

/** A --fail-closed guard's spec: the instance id, its networks and excludes, the owner. */
function parseGuardSpec(v: unknown, id: number): GuardSpec {
  if (!isObject(v)) throw new BadRequest(id, 'spec must be an object')
  onlyFields(v, GUARD_FIELDS, id, 'spec')
  if (typeof v.instanceId !== 'string' || !INSTANCE_ID_RE.test(v.instanceId)) {
    throw new BadRequest(id, 'spec.instanceId must match [a-z0-9]{1,16}')
  }
  const include = parseCidrList(v.include, id, 'include')
  const exclude = parseCidrList(v.exclude, id, 'exclude')
  if (include.length === 0) throw new BadRequest(id, 'spec.include is empty')
  if (include.length + exclude.length > MAX_CIDRS) throw new BadRequest(id, `more than ${MAX_CIDRS} CIDRs`)
  if (v.ownerUid !== undefined && !isUid(v.ownerUid)) throw new BadRequest(id, 'spec.ownerUid must be an integer 0..4294967294')
  return { instanceId: v.instanceId, include, exclude, ...(v.ownerUid !== undefined && { ownerUid: v.ownerUid as number }) }
}

/**
 * OpenSSH known_hosts files: parsing, host matching and appending. Pure except for the two
 * file helpers at the end. Semantics follow OpenSSH's hostfile.c / match.c (portable 9.x):
 *
 * - `[@marker] hostpatterns keytype base64 [comment]`; markers `@cert-authority`, `@revoked`;
 *   an unknown marker invalidates the line (check_markers()).
 * - host patterns are comma separated with `*` / `?` globs and `!` negation, compared case-
 *   insensitively; a matching negated pattern makes the whole line not match
 *   (match_pattern_list() returns -1, match_maybe_hashed() only accepts 1).
 * - a hashed field `|1|salt|hmac` is a single name: HMAC-SHA1(key = salt, data = name).
 * - the name looked up is `host`, or `[host]:port` when port != 22 (put_host_port()).
 */
import { createHash, createHmac, randomBytes, timingSafeEqual } from 'node:crypto'
import { promises as fsp, readFileSync } from 'node:fs'
import * as path from 'node:path'

export type KnownHostMarker = 'revoked' | 'cert-authority'

/** One valid key line of a known_hosts file. */
export interface KnownHostEntry {
  readonly file: string
  /** 1-based line number, as OpenSSH reports it ("Offending key in file:line"). */
  readonly line: number
  readonly marker?: KnownHostMarker
  /** The host field exactly as written (patterns or a `|1|…` hash). */
  readonly hosts: string
  /** Key type from the blob (ssh-ed25519, ecdsa-sha2-nistp256, ssh-rsa, …). */
  readonly keyType: string
  readonly key: Buffer
  readonly comment?: string
}

/** A line that was skipped, with why (OpenSSH logs these at debug level and goes on). */
export interface KnownHostsProblem {
  readonly file: string
  readonly line: number
  readonly reason: string
}

/** Result of comparing a presented key with what known_hosts says about a host. */
export type HostKeyStatus = 'match' | 'mismatch' | 'revoked' | 'unknown'

export interface HostKeyCheck {
  readonly status: HostKeyStatus
  /** The matching entry (match), the offending one (mismatch: same key type preferred), or the @revoked line. */
  readonly entry?: KnownHostEntry
  /** Key types known (non-marker entries) for this host, in file order without duplicates. */
  readonly knownTypes: readonly string[]
}

const HASH_MAGIC = '|1|'
const SHA1_LEN = 20

/** Host key *algorithms* that are signatures over a key of another *type* (RFC 8332). */
const ALGORITHM_KEY_TYPE: Record<string, string> = {
  'rsa-sha2-256': 'ssh-rsa',
  'rsa-sha2-512': 'ssh-rsa',
  'rsa-sha2-256-cert-v01@openssh.com': 'ssh-rsa-cert-v01@openssh.com',
  'rsa-sha2-512-cert-v01@openssh.com': 'ssh-rsa-cert-v01@openssh.com',
}

/** Maps a host key algorithm name to the key type stored in known_hosts (rsa-sha2-512 → ssh-rsa). */
export function keyTypeForAlgorithm(alg: string): string {
  return ALGORITHM_KEY_TYPE[alg] ?? alg
}

/** Reads the type string every SSH public key blob starts with (RFC 4253 §6.6). */
export function keyTypeOfBlob(blob: Buffer): string {
  const s = readSshString(blob, 0)
  if (!s) throw new Error('key blob too short')
  return s.value.toString('latin1')
}

function readSshString(buf: Buffer, off: number): { value: Buffer; next: number } | undefined {
  if (off + 4 > buf.length) return undefined
  const len = buf.readUInt32BE(off)
  if (off + 4 + len > buf.length) return undefined
  return { value: buf.subarray(off + 4, off + 4 + len), next: off + 4 + len }
}

/** `SHA256:<base64 without padding>`, exactly as `ssh-keygen -lf` prints it. */
export function fingerprintSha256(blob: Buffer): string {
  return 'SHA256:' + createHash('sha256').update(blob).digest('base64').replace(/=+$/, '')
}

/** OpenSSH's short type label used in messages (sshkey_type()): ED25519, ECDSA, RSA, … */
export function keyTypeLabel(keyType: string): string {
  const t = keyType.replace(/-cert-v01@openssh\.com$/, '')
  if (t === 'ssh-ed25519') return 'ED25519'
  if (t.startsWith('ecdsa-sha2-')) return 'ECDSA'
  if (t === 'ssh-rsa') return 'RSA'
  if (t === 'ssh-dss') return 'DSA'
  if (t.startsWith('sk-ecdsa-')) return 'ECDSA-SK'
  if (t.startsWith('sk-ssh-ed25519')) return 'ED25519-SK'
  return t
}

/** The name OpenSSH looks up for host:port: plain for 22, else `[host]:port`; lowercased. */
export function knownHostsName(host: string, port: number): string {
  const h = host.toLowerCase()
  return port === 22 || port === 0 ? h : `[${h}]:${port}`
}

/**
 * Parses known_hosts text. Invalid lines are reported in `problems` and skipped, never fatal,
 * because OpenSSH does the same (a broken line must not lock the user out of every host).
 */
export function parseKnownHosts(
  text: string,
  file = '<memory>',
): { entries: KnownHostEntry[]; problems: KnownHostsProblem[] } {
  const entries: KnownHostEntry[] = []
  const problems: KnownHostsProblem[] = []
  const lines = text.split('\n')
  for (let i = 0; i < lines.length; i++) {
    const raw = lines[i]!.replace(/\r$/, '').trim()
    if (raw === '' || raw.startsWith('#')) continue
    const r = parseLine(raw)
    if (typeof r === 'string') problems.push({ file, line: i + 1, reason: r })
    else entries.push({ ...r, file, line: i + 1 })
  }
  return { entries, problems }
}

function parseLine(line: string): Omit<KnownHostEntry, 'file' | 'line'> | string {
  const fields = line.split(/[ \t]+/)
  let marker: KnownHostMarker | undefined
  if (fields[0]!.startsWith('@')) {
    const m = fields.shift()!
    if (m === '@revoked') marker = 'revoked'
    else if (m === '@cert-authority') marker = 'cert-authority'
    else return `unknown marker ${m}`
  }
  const [hosts, type, b64, ...rest] = fields
  if (!hosts || !type || !b64) return 'truncated line'
  if (/^\d+$/.test(type)) return 'SSH-1 RSA key (unsupported)'
  if (hosts.startsWith('|') && !parseHashed(hosts)) return 'bad host hash'
  if (!/^[A-Za-z0-9+/]+={0,2}$/.test(b64)) return 'key is not base64'
  const key = Buffer.from(b64, 'base64')
  // sshkey_read() refuses a line whose type field names another type than the blob
  // (SSH_ERR_KEY_TYPE_MISMATCH); for ECDSA it also checks the curve inside the blob.
  let blobType: string
  try {
    blobType = keyTypeOfBlob(key)
  } catch {
    return 'key blob too short'
  }
  if (keyTypeForAlgorithm(type) !== blobType) return `key type ${type} does not match the key (${blobType})`
  if (blobType.startsWith('ecdsa-sha2-')) {
    const curve = readSshString(key, 4 + Buffer.byteLength(blobType, 'latin1'))
    if (!curve || `ecdsa-sha2-${curve.value.toString('latin1')}` !== blobType) return 'ECDSA curve does not match key type'
  }
  const comment = rest.length > 0 ? rest.join(' ') : undefined
  return { marker, hosts, keyType: blobType, key, comment }
}

function parseHashed(field: string): { salt: Buffer; hash: Buffer } | undefined {
  if (!field.startsWith(HASH_MAGIC)) return undefined
  const [salt64, hash64, extra] = field.slice(HASH_MAGIC.length).split('|')
  if (!salt64 || !hash64 || extra !== undefined) return undefined
  const salt = Buffer.from(salt64, 'base64')
  const hash = Buffer.from(hash64, 'base64')
  // extract_salt() insists on a salt as long as the SHA-1 output.
  if (salt.length !== SHA1_LEN || hash.length !== SHA1_LEN) return undefined
  return { salt, hash }
}

/** `|1|salt|hmac` for name; a fresh random salt unless one is given (tests). */
export function hashHostName(name: string, salt: Buffer = randomBytes(SHA1_LEN)): string {
  const mac = createHmac('sha1', salt).update(name).digest()
  return `${HASH_MAGIC}${salt.toString('base64')}|${mac.toString('base64')}`
}

/** OpenSSH match_pattern(): `*` any run, `?` any one character, everything else literal. */
export function globMatch(s: string, pattern: string): boolean {
  let si = 0
  let pi = 0
  let starP = -1
  let starS = 0
  while (si < s.length) {
    if (pi < pattern.length && (pattern[pi] === '?' || pattern[pi] === s[si])) {
      si++
      pi++
    } else if (pi < pattern.length && pattern[pi] === '*') {
      starP = pi++
      starS = si
    } else if (starP >= 0) {
      pi = starP + 1
      si = ++starS
    } else {
      return false
    }
  }
  while (pi < pattern.length && pattern[pi] === '*') pi++
  return pi === pattern.length
}

/**
 * match_pattern_list(): 1 if some positive pattern matches, -1 if a negated one matches
 * (which wins over any positive match), 0 otherwise. Case-insensitive like match_hostname().
 */
export function matchPatternList(name: string, list: string): 1 | 0 | -1 {
  const s = name.toLowerCase()
  let positive = false
  for (const raw of list.toLowerCase().split(',')) {
    const negated = raw.startsWith('!')
    const p = negated ? raw.slice(1) : raw
    if (!globMatch(s, p)) continue
    if (negated) return -1
    positive = true
  }
  return positive ? 1 : 0
}

/** Whether an entry's host field names `name` (already in known_hosts form, see knownHostsName). */
export function entryMatchesName(entry: Pick<KnownHostEntry, 'hosts'>, name: string): boolean {
  const lname = name.toLowerCase()
  if (entry.hosts.startsWith('|')) {
    const h = parseHashed(entry.hosts)
    if (!h) return false
    const mac = createHmac('sha1', h.salt).update(lname).digest()
    return timingSafeEqual(mac, h.hash)
  }
  return matchPatternList(lname, entry.hosts) === 1
}

/** Entries (any marker) whose host field matches host:port. */
export function lookupHost(entries: readonly KnownHostEntry[], host: string, port: number): KnownHostEntry[] {
  return lookupName(entries, knownHostsName(host, port))
}

/** Entries matching a name already in known_hosts form (used for HostKeyAlias, which has no port). */
export function lookupName(entries: readonly KnownHostEntry[], name: string): KnownHostEntry[] {
  return entries.filter((e) => entryMatchesName(e, name))
}

/**
 * Compares a presented (plain, non-certificate) key with the entries for a name, like
 * check_hostkeys_by_key_or_type() in hostfile.c:
 * - an equal plain entry → match; otherwise any plain entry for the host → mismatch
 *   (OpenSSH returns HOST_CHANGED even when only keys of *other* types are known — which is why
 *   it orders host key algorithms so known types come first; see preferredAlgorithms());
 * - no plain entry → unknown;
 * - and in every case, a key equal to a matching @revoked entry → revoked.
 * @cert-authority lines only vouch for certificates and are ignored here.
 */
export function checkHostKeyByName(entries: readonly KnownHostEntry[], name: string, keyBlob: Buffer): HostKeyCheck {
  const matching = lookupName(entries, name)
  const plain = matching.filter((e) => e.marker === undefined)
  const knownTypes = [...new Set(plain.map((e) => e.keyType))]
  const revoked = matching.find((e) => e.marker === 'revoked' && e.key.equals(keyBlob))
  if (revoked) return { status: 'revoked', entry: revoked, knownTypes }
  const equal = plain.find((e) => e.key.equals(keyBlob))
  if (equal) return { status: 'match', entry: equal, knownTypes }
  if (plain.length === 0) return { status: 'unknown', knownTypes }
  let presentedType = ''
  try {
    presentedType = keyTypeOfBlob(keyBlob)
  } catch {
    // not a parsable blob: still a mismatch, just without a same-type offender
  }
  const offender = plain.find((e) => e.keyType === presentedType) ?? plain[0]
  return { status: 'mismatch', entry: offender, knownTypes }
}

/** checkHostKeyByName() for host:port. */
export function checkHostKey(entries: readonly KnownHostEntry[], host: string, port: number, keyBlob: Buffer): HostKeyCheck {
  return checkHostKeyByName(entries, knownHostsName(host, port), keyBlob)
}

/** One known_hosts line (with trailing newline) for name, hashed or plain. */
export function formatKnownHostLine(name: string, keyBlob: Buffer, hash: boolean): string {
  const lname = name.toLowerCase()
  const field = hash ? hashHostName(lname) : lname
  return `${field} ${keyTypeOfBlob(keyBlob)} ${keyBlob.toString('base64')}\n`
}

/**
 * Appends host:port's key to file like add_host_to_hostfile(): creates the directory (0700)
 * and the file (0600) when missing, and adds a newline first if the file does not end in one.
 */
export async function appendKnownHost(
  file: string,
  host: string,
  port: number,
  keyBlob: Buffer,
  hash: boolean,
): Promise<void> {
  await appendKnownHostName(file, knownHostsName(host, port), keyBlob, hash)
}

/** appendKnownHost() for a name already in known_hosts form (HostKeyAlias). */
export async function appendKnownHostName(file: string, name: string, keyBlob: Buffer, hash: boolean): Promise<void> {
  await fsp.mkdir(path.dirname(file), { recursive: true, mode: 0o700 })
  const fh = await fsp.open(file, 'a+', 0o600)
  try {
    const { size } = await fh.stat()
    let prefix = ''
    if (size > 0) {
      const last = Buffer.alloc(1)
      await fh.read(last, 0, 1, size - 1)
      if (last[0] !== 0x0a) prefix = '\n'
    }
    await fh.appendFile(prefix + formatKnownHostLine(name, keyBlob, hash))
  } finally {
    await fh.close()
  }
}

/**
 * Reads and parses several files; a missing file counts as empty (OpenSSH does the same).
 * Synchronous on purpose: the files are small and preferredAlgorithms() must answer before
 * the handshake starts, without an async step in ssh2's config.
 */
export function loadKnownHostsFiles(files: readonly string[]): {
  entries: KnownHostEntry[]
  problems: KnownHostsProblem[]
} {
  const entries: KnownHostEntry[] = []
  const problems: KnownHostsProblem[] = []
  for (const f of files) {
    let text: string
    try {
      text = readFileSync(f, 'utf8')
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code
      if (code !== 'ENOENT' && code !== 'ENOTDIR') problems.push({ file: f, line: 0, reason: `cannot read: ${code ?? e}` })
      continue
    }
    const r = parseKnownHosts(text, f)
    entries.push(...r.entries)
    problems.push(...r.problems)
  }
  return { entries, problems }
}

/**
 * Parser fallback for machines without an ssh binary: the ssh-config package evaluates Host and
 * Match blocks of -F FILE, or ~/.ssh/config then /etc/ssh/ssh_config (OpenSSH reads both
 * unless -F is given). Limits, compared with `ssh -G`: Include is NOT followed and tokens
 * in HostName are expanded only for %h/%%; values are not validated beyond option names.
 *
 * OpenSSH's rule is "first obtained value wins", with command-line options first; we compute each
 * layer separately (cmdline, user file, system file) and merge with that rule, because
 * concatenating the texts would put the system file's top-level lines inside the user's last
 * Host block.
 */
import { readFileSync } from 'node:fs'
import SSHConfig from 'ssh-config'
import { TunnelError, errorMessage } from '../errors'
import type { SshRequest } from './ssh-config-types'
import type { SshDestination } from './ssh-destination'

/** Lowercase option name → its values (several for identityfile, each list element for lists). */
export type RawSshOptions = Map<string, string[]>

/** Splits `-o` text at the first `=` or whitespace, like OpenSSH's process_config_line(). */
export function splitOption(o: string): [string, string] {
  const m = /^\s*([^\s=]+)\s*(?:=\s*|\s+)?(.*)$/.exec(o)
  return m ? [m[1]!, m[2]!.trim()] : [o, '']
}

/** ssh_config(5) keywords of OpenSSH 9.x (readconf.c), lowercase; gssapi* are accepted as a group. */
const KEYWORDS = new Set(
  (
    'addkeystoagent addressfamily batchmode bindaddress bindinterface canonicaldomains canonicalizefallbacklocal ' +
    'canonicalizehostname canonicalizemaxdots canonicalizepermittedcnames casignaturealgorithms certificatefile ' +
    'challengeresponseauthentication channeltimeout checkhostip ciphers clearallforwardings compression ' +
    'connectionattempts connecttimeout controlmaster controlpath controlpersist dynamicforward ' +
    'enableescapecommandline enablesshkeysign escapechar exitonforwardfailure fingerprinthash ' +
    'forkafterauthentication forwardagent forwardx11 forwardx11timeout forwardx11trusted gatewayports ' +
    'globalknownhostsfile hashknownhosts hostbasedacceptedalgorithms hostbasedauthentication hostbasedkeytypes ' +
    'hostkeyalgorithms hostkeyalias hostname identitiesonly identityagent identityfile ignoreunknown ipqos ' +
    'kbdinteractiveauthentication kbdinteractivedevices kexalgorithms knownhostscommand localcommand localforward ' +
    'loglevel logverbose macs nohostauthenticationforlocalhost numberofpasswordprompts obscurekeystroketiming ' +
    'passwordauthentication permitlocalcommand permitremoteopen pkcs11provider port preferredauthentications ' +
    'proxycommand proxyjump proxyusefdpass pubkeyacceptedalgorithms pubkeyacceptedkeytypes pubkeyauthentication ' +
    'refuseconnection rekeylimit remotecommand remoteforward requesttty requiredrsasize revokedhostkeys ' +
    'securitykeyprovider sendenv serveralivecountmax serveraliveinterval sessiontype setenv stdinnull ' +
    'streamlocalbindmask streamlocalbindunlink stricthostkeychecking syslogfacility tag tcpkeepalive tunnel ' +
    'tunneldevice updatehostkeys user userknownhostsfile verifyhostkeydns visualhostkey warnweakcrypto xauthlocation'
  ).split(' '),
)

/** Options that accumulate over all files instead of "first wins". */
const ACCUMULATE = new Set(['identityfile', 'certificatefile', 'localforward', 'remoteforward', 'dynamicforward', 'sendenv', 'setenv'])

/** Throws SSH_CONFIG for an -o whose name ssh would reject. */
export function checkOptionName(option: string): void {
  const [name] = splitOption(option)
  const k = name.toLowerCase()
  if (!KEYWORDS.has(k) && !k.startsWith('gssapi')) {
    throw new TunnelError('SSH_CONFIG', `-o ${option}: Bad configuration option: ${k}`, { hint: 'see man ssh_config' })
  }
}

/** Computes raw options with the ssh-config package, then fills in OpenSSH's defaults. */
export function computeWithParser(req: SshRequest, dest: SshDestination, port: number | undefined, home: string): RawSshOptions {
  req.options.forEach(checkOptionName)
  // Command-line layer, in ssh's precedence: -p/-l/-i/-J are applied before the config files.
  const cmdline: string[] = []
  if (port !== undefined) cmdline.push(`Port ${port}`)
  if (dest.user !== undefined) cmdline.push(`User ${dest.user}`)
  for (const i of req.identities) cmdline.push(`IdentityFile "${i}"`)
  if (req.jump !== undefined) cmdline.push(`ProxyJump ${req.jump}`)
  for (const o of req.options) {
    const [k, v] = splitOption(o)
    cmdline.push(`${k} ${v}`)
  }
  const files = req.configFile !== undefined ? [req.configFile] : [`${home}/.ssh/config`, '/etc/ssh/ssh_config']
  const layers = [{ name: 'command line', text: cmdline.join('\n') }, ...files.map((f) => ({ name: f, text: readConfig(f, f === req.configFile) }))]

  const raw: RawSshOptions = new Map()
  for (const { name, text } of layers) {
    const computed = computeLayer(name, text, dest)
    for (const [key, value] of Object.entries(computed)) {
      if (key === 'host') continue
      const values = Array.isArray(value) ? value : [value]
      if (ACCUMULATE.has(key)) raw.set(key, [...(raw.get(key) ?? []), ...values])
      else if (!raw.has(key)) raw.set(key, values)
    }
  }
  const hostName = raw.get('hostname')?.[0]
  if (hostName) raw.set('hostname', [hostName.replace(/%(.)/g, (m, c: string) => (c === 'h' ? dest.host : c === '%' ? '%' : m))])
  // OpenSSH's fill_default_options(): default keys only when no IdentityFile was given at all.
  if (!raw.has('identityfile')) {
    raw.set(
      'identityfile',
      ['id_rsa', 'id_ecdsa', 'id_ecdsa_sk', 'id_ed25519', 'id_ed25519_sk', 'id_dsa'].map((n) => `~/.ssh/${n}`),
    )
  }
  return raw
}

/**
 * One layer through the ssh-config package, which throws plain Errors on malformed input
 * (e.g. "Match 22": "Missing value for match criteria 22"); those become SSH_CONFIG so the user
 * is told which file is broken instead of seeing an internal error.
 */
function computeLayer(name: string, text: string, dest: SshDestination): Record<string, string | string[]> {
  try {
    return SSHConfig.parse(text).compute({ Host: dest.host, User: dest.user }, { ignoreCase: true })
  } catch (e) {
    throw new TunnelError('SSH_CONFIG', `${name}: ${errorMessage(e)}`, { hint: 'see man ssh_config', cause: e })
  }
}

function readConfig(file: string, mustExist: boolean): string {
  try {
    return readFileSync(file, 'utf8')
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code
    if (!mustExist && code === 'ENOENT') return ''
    // ssh: "Can't open user config file X: No such file or directory"
    throw new TunnelError('SSH_CONFIG', `can't open config file ${file}: ${code ?? (e as Error).message}`, {
      hint: 'check the -F path',
      cause: e,
    })
  }
}

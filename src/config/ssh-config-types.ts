/** How the user asked to reach the bastion, before any ssh config is applied. */
export interface SshRequest {
  /** The -r destination as typed: [user@]host[:port], or a Host alias. */
  readonly destination: string
  /** -F FILE */
  readonly configFile?: string
  /** -p N (wins over a :port in destination? no: an explicit :port wins, like ssh://) */
  readonly port?: number
  /** -i FILE (repeatable), in order */
  readonly identities: readonly string[]
  /** -J hops, comma separated as typed */
  readonly jump?: string
  /** -o K=V (repeatable), as typed */
  readonly options: readonly string[]
}

export type StrictHostKeyChecking = 'yes' | 'no' | 'accept-new' | 'ask'

/** The effective configuration for one host, as OpenSSH would use it (`ssh -G`). */
export interface SshHostConfig {
  /** The host part as typed (alias), used for known_hosts only when no HostName differs. */
  readonly alias: string
  /** Where to connect (HostName after expansion). */
  readonly hostName: string
  readonly port: number
  readonly user: string
  /** Expanded paths (~ and %d/%u/%h tokens resolved), in OpenSSH's order. */
  readonly identityFiles: readonly string[]
  readonly identitiesOnly: boolean
  /** Path of the agent socket, or undefined for none (IdentityAgent none / no SSH_AUTH_SOCK). */
  readonly identityAgent?: string
  readonly userKnownHostsFiles: readonly string[]
  readonly globalKnownHostsFiles: readonly string[]
  readonly strictHostKeyChecking: StrictHostKeyChecking
  readonly hashKnownHosts: boolean
  /** Name to look up in known_hosts instead of hostName (HostKeyAlias). */
  readonly hostKeyAlias?: string
  /** Shell command whose stdio is the transport; tokens %h %p %r %n %% already expanded. */
  readonly proxyCommand?: string
  /** Jump hops, outermost first, each "[user@]host[:port]" or an alias; resolve each again. */
  readonly proxyJump: readonly string[]
  /** Seconds; 0 disables. */
  readonly serverAliveInterval: number
  readonly serverAliveCountMax: number
  /** Seconds, undefined for the system default. */
  readonly connectTimeout?: number
  readonly batchMode: boolean
  readonly pubkeyAuthentication: boolean
  readonly passwordAuthentication: boolean
  readonly kbdInteractiveAuthentication: boolean
  /**
   * Ciphers the user chose (ssh_config or `-o Ciphers=`), in their order, `+`/`-`/`^` already
   * applied; undefined while OpenSSH's default list is in effect (then we pick our own order).
   */
  readonly ciphers?: readonly string[]
  /** KexAlgorithms, HostKeyAlgorithms, MACs, PubkeyAcceptedAlgorithms: like `ciphers`. */
  readonly kexAlgorithms?: readonly string[]
  readonly hostKeyAlgorithms?: readonly string[]
  readonly macs?: readonly string[]
  readonly pubkeyAcceptedAlgorithms?: readonly string[]
  /** CertificateFile paths, expanded like identityFiles (default: none). */
  readonly certificateFiles?: readonly string[]
  /** NumberOfPasswordPrompts (default 3): tries per passphrase, password and keyboard-interactive. */
  readonly numberOfPasswordPrompts?: number
  /** The user's ControlPath as `ssh -G` expanded it (absolute), when multiplexing is configured. */
  readonly controlPath?: string
}

/** One bastion: the name as the user wrote it, its resolved configuration, and its jump hops. */
export interface RemotePlan {
  readonly name: string
  /** The request as the user gave it (the OpenSSH engine passes the same arguments to its master). */
  readonly request: SshRequest
  readonly target: SshHostConfig
  /** Resolved ProxyJump hops, outermost first (empty for a direct connection). */
  readonly hops: SshHostConfig[]
}

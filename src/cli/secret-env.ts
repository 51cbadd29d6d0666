/**
 * Environment variables that carry secrets. Each is read once, at start-up, and removed from
 * process.env at once, so that no child inherits it: not the `exec --` command, a ProxyCommand,
 * `ssh -G` (and its Match exec), an external TUN engine, nor the root helper and the iptables/nft
 * it runs. (The kernel keeps the start-up environment in /proc/PID/environ, readable by the same
 * user and root only; what we delete is what children would get.)
 */
export const SECRET_ENV = ['SUBNET_TUNNEL_PROXY_AUTH'] as const
export type SecretEnvName = (typeof SECRET_ENV)[number]
export type SecretEnv = Partial<Record<SecretEnvName, string>>

/** Returns the secret variables that are set, and deletes them from env. */
export function takeSecretEnv(env: NodeJS.ProcessEnv = process.env): SecretEnv {
  const out: SecretEnv = {}
  for (const name of SECRET_ENV) {
    const v = env[name]
    if (v !== undefined) out[name] = v
    delete env[name]
  }
  return out
}

/**
 * The sudoers lines that let a user start the helper without a password, and the commented
 * drop-in `subnet-tunnel sudoers` prints. Pure.
 *
 * sudo matches a rule's command path and then its arguments exactly (no wildcards here): the
 * ordinary rule `<node> <helper-main.js>` allows that argv and nothing else — in particular not
 * `<node> <helper-main.js> --allow-tun`, which needs the second, tun rule. Words that sudoers
 * would read specially (spaces, `,` `:` `=` `\`, wildcards, quotes) are refused rather than
 * escaped: such a path is unusual, and a mis-escaped rule could grant more than meant.
 */
import { TunnelError } from '../../errors'
import { TUN_GRANT_FLAG, TUN_MAX_ADDRESSES, TUN_MIN_PREFIX } from './tun-grant'

/** The paths a rule names. */
export interface RulePaths {
  readonly execPath: string
  readonly helperPath: string
}

const SAFE_PATH_RE = /^\/[A-Za-z0-9._+@/-]+$/
const SAFE_USER_RE = /^[A-Za-z_][A-Za-z0-9_.-]{0,31}$/

/** Throws USAGE when a user name or path cannot go into a sudoers rule verbatim. */
export function assertSudoersWords(user: string, l: RulePaths): void {
  if (!SAFE_USER_RE.test(user)) {
    throw new TunnelError('USAGE', `user name ${JSON.stringify(user)} cannot be written into a sudoers rule as it is`, {
      hint: 'give --user with a plain user name',
    })
  }
  for (const p of [l.execPath, l.helperPath]) {
    if (!SAFE_PATH_RE.test(p)) {
      throw new TunnelError('USAGE', `path ${JSON.stringify(p)} has characters sudoers reads specially`, {
        hint: 'install node and subnet-tunnel under paths made of letters, digits and ._+@/-',
      })
    }
  }
}

/** One rule: the ordinary grant, or (tun) the grant of method tun. */
export function sudoersRule(user: string, l: RulePaths, tun = false): string {
  return `${user} ALL=(root) NOPASSWD: ${l.execPath} ${l.helperPath}${tun ? ` ${TUN_GRANT_FLAG}` : ''}`
}

const v4Max = Number(TUN_MAX_ADDRESSES[4] >> BigInt(32 - TUN_MIN_PREFIX[4]))

/** The commented drop-in for /etc/sudoers.d (the caller has checked the install: install-safety.ts). */
export function sudoersDropIn(user: string, l: RulePaths, version: string): string {
  assertSudoersWords(user, l)
  return [
    `# /etc/sudoers.d/subnet-tunnel — printed by \`subnet-tunnel sudoers\` (${version}) for user ${user}.`,
    '# Install it with:',
    '#   subnet-tunnel sudoers > subnet-tunnel.sudoers',
    '#   sudo visudo -cf subnet-tunnel.sudoers',
    '#   sudo install -m 0440 -o root -g root subnet-tunnel.sudoers /etc/sudoers.d/subnet-tunnel',
    '#',
    '# sudo compares the arguments exactly: the rule allows this one command, nothing else.',
    '# When printed, node, helper-main.js, package.json, dist/, node_modules/ and every directory',
    `# above them were owned by root and not writable by ${user}. Keep it so: whoever can change`,
    '# any of them runs code as root through this rule. A new node or package path needs a new rule.',
    '#',
    `# What it grants (methods nat and nft; pf on macOS): ${user} can redirect every local user's`,
    '# TCP connections (and DNS queries to chosen servers) to the networks of their choice — 0/0',
    '# included — to a local port they listen on, and so read and alter that traffic. It cannot run',
    '# other commands or write files of its choice. README: "Threat model of the privileged helper".',
    sudoersRule(user, l),
    '#',
    '# Method tun is NOT granted by the rule above; it needs the rule below. With it, the helper',
    `# creates a TUN device owned by ${user} and routes networks into it (each at least`,
    `# /${TUN_MIN_PREFIX[4]} or /${TUN_MIN_PREFIX[6]}, at most ${v4Max} /${TUN_MIN_PREFIX[4]}s or /${TUN_MIN_PREFIX[6]}s in all; no default route):`,
    `# ${user} then reads every local user's traffic to them, in any protocol, and can send packets`,
    '# that the kernel takes as coming from those networks (IPv6: from any address — the kernel has',
    '# no IPv6 source check without a firewall). Uncomment it only if you trust the user with that:',
    `# ${sudoersRule(user, l, true)}`,
    '',
  ].join('\n')
}

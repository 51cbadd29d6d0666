/**
 * subnet-tunnel(1), generated from the parser itself (args.ts): the same option table, the same
 * words and the same examples as --help, so the two cannot drift apart. Written into
 * dist/man/ by `npm run build` and `npm pack` (scripts/gen-man.js); `npm install -g` links it
 * where man finds it (package.json "man").
 */
import type { Command, Option } from 'commander'
import { EPILOG, programForDocs } from './args'

/** Text safe in roff: backslashes escaped, hyphens made minus signs (so options copy right), no leading dot or quote, Unicode escaped. */
export function roff(text: string): string {
  return text
    .replace(/\\/g, '\\e')
    .replace(/-/g, '\\-')
    .replace(/^([.'])/gm, '\\&$1')
    // Any other character outside ASCII ("…", "→") as groff's Unicode escape.
    .replace(/[^\x00-\x7f]/gu, (c) => `\\[u${c.codePointAt(0)!.toString(16).toUpperCase().padStart(4, '0')}]`)
}

function optionItem(o: Option): string {
  const flags = o.flags.split(/,\s*/).map((f) => {
    const [name, ...arg] = f.split(' ')
    return `\\fB${roff(name!)}\\fR${arg.length ? ' \\fI' + roff(arg.join(' ')) + '\\fR' : ''}`
  })
  return `.TP\n${flags.join(', ')}\n${roff(o.description)}`
}

function section(title: string, lines: string[]): string {
  return [`.SH ${title}`, ...lines].join('\n')
}

/** EPILOG's "Examples:" and "Environment:" blocks, as pairs of (command, comment). */
function epilogBlock(name: string): Array<[string, string]> {
  const block = EPILOG.split(/\n\n/).find((b) => b.trimStart().startsWith(`${name}:`)) ?? ''
  return block
    .trim()
    .split('\n')
    .slice(1)
    .filter((l) => l.trim())
    .map((l) => {
      const m = l.trim().match(/^(.*?\S)(?: {2,}(.*))?$/)!
      return [m[1]!, m[2] ?? '']
    })
}

/** The whole page. `date`: for the footer (reproducible builds pass a fixed one). */
export function manPage(version: string, date = new Date().toISOString().slice(0, 10), program: Command = programForDocs(version)): string {
  const cmds = program.commands.map((c) => `.TP\n\\fB${roff(c.name())}\\fR ${roff(c.usage().replace(/^\[options\] ?/, ''))}\n${roff(c.description())}${c.options.length ? '\n.RS\n' + c.options.map(optionItem).join('\n') + '\n.RE' : ''}`)
  return [
    `.TH SUBNET\\-TUNNEL 1 "${date}" "subnet-tunnel ${roff(version)}" "User Commands"`,
    section('NAME', ['subnet\\-tunnel \\- ' + roff(program.description())]),
    section('SYNOPSIS', [
      `\\fBsubnet\\-tunnel\\fR ${roff(program.usage())}`,
      '.br',
      '\\fBsubnet\\-tunnel up\\fR \\fIPROFILE\\fR [\\fIoptions\\fR]',
      '.br',
      '\\fBsubnet\\-tunnel\\fR \\fBstatus\\fR | \\fBstop\\fR [\\fIID\\fR|\\fINAME\\fR|\\fB\\-\\-all\\fR] | \\fBcleanup\\fR | \\fBsudoers\\fR | \\fBdemo\\fR | \\fBcompletion\\fR \\fISHELL\\fR',
    ]),
    section('DESCRIPTION', [
      'Matching traffic is redirected by the local kernel (nftables, iptables, pf or a TUN device) into a local listener;',
      'each TCP connection becomes one SSH channel to the bastion, which connects to the destination.',
      'Nothing is installed on the server. SOCKS5 and HTTP proxies and \\fB\\-L\\fR/\\fB\\-R\\fR forwards need no root.',
    ]),
    section('OPTIONS', program.options.filter((o) => !o.hidden).map(optionItem)),
    section('COMMANDS', cmds),
    section('FILES', [
      '.TP\n\\fI~/.config/subnet\\-tunnel/config.toml\\fR',
      'Profiles: one table per profile, keys are the long options without \\-\\- (and \\fBsubnets\\fR); used with \\fBup\\fR \\fINAME\\fR or \\fB\\-c\\fR \\fINAME\\fR.',
      '.TP\n\\fI~/.local/state/subnet\\-tunnel/NAME.log\\fR',
      'The log of a tunnel started with \\fB\\-f\\fR (\\fB\\-\\-log\\-file\\fR to choose another).',
    ]),
    section('ENVIRONMENT', epilogBlock('Environment').map(([k, v]) => `.TP\n\\fB${roff(k)}\\fR\n${roff(v)}`)),
    section('EXAMPLES', epilogBlock('Examples').map(([cmd, note]) => `.TP\n\\fB${roff(cmd)}\\fR${note ? '\n' + roff(note) : ''}`)),
    section('EXIT STATUS', ['0 on a requested stop; 2 for a usage error; 1 for other errors; with \\fBexec\\fR, the exit status of the command.']),
    section('SEE ALSO', ['\\fBssh\\fR(1), \\fBssh_config\\fR(5), \\fBsshuttle\\fR(8); README.md for limits and troubleshooting.']),
    '',
  ].join('\n')
}

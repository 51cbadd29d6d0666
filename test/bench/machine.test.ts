import { describe, it, expect } from 'vitest'
// The bench is plain CommonJS (scripts/ has no build step): load it with require.
const { parseProcStat, cpuShares, machineLines } = require('../../scripts/bench-lib/machine.js')
const { enginesFromHelp, engineArgs } = require('../../scripts/bench-lib/engines.js')

// /proc/stat of this 2-CPU VM (Linux 6.18), two samples 2 s apart, the second one made up so
// the shares are round: 400 ticks in all, 100 idle + 20 iowait, 40 steal.
const STAT_A = 'cpu  841374 1 138676 315934 725 0 19118 322 0 0\ncpu0 410502 1 69410 168493 125 0 9330 149 0 0\nintr 1\n'
const STAT_B = 'cpu  841574 1 138716 316034 745 0 19118 362 7 0\ncpu0 410502 1 69410 168493 125 0 9330 149 0 0\n'

describe('machine: CPU idle and steal from /proc/stat', () => {
  it('parses the aggregate cpu line, not a per-CPU one', () => {
    expect(parseProcStat(STAT_A)).toEqual({
      user: 841374, nice: 1, system: 138676, idle: 315934, iowait: 725, irq: 0, softirq: 19118, steal: 322, guest: 0, guestNice: 0,
    })
    expect(() => parseProcStat('cpu0 1 2 3\n')).toThrow(/aggregate/)
  })

  it('shares between two samples: idle counts iowait, steal apart, guest not double-counted', () => {
    const s = cpuShares(parseProcStat(STAT_A), parseProcStat(STAT_B))
    expect(s.idlePct).toBeCloseTo(30, 6)
    expect(s.stealPct).toBeCloseTo(10, 6)
    expect(s.busyPct).toBeCloseTo(60, 6)
  })

  it('no time passed → no shares (not NaN)', () => {
    const a = parseProcStat(STAT_A)
    expect(cpuShares(a, a)).toEqual({ idlePct: undefined, stealPct: undefined, busyPct: undefined })
  })

  it('the header names CPU, cores, idle and steal before, load, kernel and tool versions', () => {
    const text = machineLines({
      cpu: 'AMD EPYC 7B13', nproc: 2, memGiB: 24, kernel: 'Linux 6.18', os: 'Debian GNU/Linux 12 (bookworm)', load: [1.5, 1.25, 1],
      before: { idlePct: 87.46, stealPct: 0.4, seconds: 2 }, stealDuringPct: 1.25,
      versions: { node: 'v20.20.2', openssh: 'OpenSSH_9.2p1', sshuttle: '1.1.1', dnsperf: '2.10.0' },
    }).join('\n')
    for (const s of ['AMD EPYC 7B13', '2 CPUs', 'Linux 6.18', 'CPU idle 87.5 %', 'steal 0.4 %', 'load average 1.50 1.25 1.00', 'node v20.20.2', 'OpenSSH_9.2p1', 'sshuttle 1.1.1', 'steal 1.3 % of CPU time over the whole run']) {
      expect(text).toContain(s)
    }
  })
})

describe('engines: what the CLI supports', () => {
  it('a CLI without --ssh-engine runs builtin only and is not given the option', () => {
    const help = '  --method <name>              redirection backend: nft, nat (iptables), pf\n  --tun-engine <name>          with --method tun: builtin (default)\n'
    expect(enginesFromHelp(help)).toEqual({ flag: false, supported: ['builtin'] })
    expect(engineArgs('builtin', false)).toEqual([])
  })

  it('a CLI with --ssh-engine runs both, and each row passes its engine', () => {
    const help = '  --ssh-engine <name>          auto (default), openssh or builtin\n  --tun-engine <name>          …\n'
    expect(enginesFromHelp(help)).toEqual({ flag: true, supported: ['builtin', 'openssh'] })
    expect(engineArgs('openssh', true)).toEqual(['--ssh-engine', 'openssh'])
  })
})

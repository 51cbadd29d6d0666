import { describe, expect, it } from 'vitest'
import { DEMO_NEEDS, ensureDemoNeeds, missingDemoNeeds } from '../../src/cli/demo-deps'

const everything = (p: string) => p !== '/nowhere'

describe("the demo's packages", () => {
  it('finds what is missing (tools in sbin off PATH count; nft or iptables will do)', () => {
    expect(missingDemoNeeds('/usr/bin', everything)).toEqual([])
    const have = new Set(['/usr/sbin/sshd', '/usr/bin/ssh-keygen', '/usr/sbin/ip', '/usr/bin/curl', '/usr/bin/python3', '/usr/sbin/sysctl', '/usr/sbin/iptables'])
    expect(missingDemoNeeds('/usr/bin', (p) => have.has(p)).map((n) => n.pkg)).toEqual(['iperf3'])
    expect(missingDemoNeeds('', () => false).map((n) => n.pkg)).toEqual([...DEMO_NEEDS.map((n) => n.pkg), 'nftables'])
  })

  it('says what and why, then installs with apt-get (update first), as argv lists', async () => {
    const said: string[] = []
    const ran: string[][] = []
    const missing = DEMO_NEEDS.filter((n) => n.pkg === 'openssh-server' || n.pkg === 'iperf3')
    await ensureDemoNeeds({ install: true, say: (l) => said.push(l), missing, hasApt: true, run: async (argv) => (ran.push([...argv]), 0) })
    expect(said).toEqual([
      'subnet-tunnel demo: packages are missing here:',
      "  openssh-server   the demo's bastion runs a real sshd",
      '  iperf3           the throughput check',
      'installing them: apt-get update && apt-get install -y --no-install-recommends openssh-server iperf3   (--no-install: do not)',
    ])
    expect(ran).toEqual([
      ['apt-get', 'update'],
      ['apt-get', 'install', '-y', '--no-install-recommends', 'openssh-server', 'iperf3'],
    ])
  })

  it('--no-install, no apt-get, or a failed install: DEMO_DEPS with the command; nothing missing: nothing run', async () => {
    const missing = DEMO_NEEDS.filter((n) => n.pkg === 'iperf3')
    const ran: string[][] = []
    const run = async (argv: readonly string[]) => (ran.push([...argv]), argv[1] === 'install' ? 100 : 0)
    await expect(ensureDemoNeeds({ install: false, say: () => {}, missing, hasApt: true, run })).rejects.toMatchObject({
      code: 'DEMO_DEPS',
      hint: 'install them: sudo apt-get install -y --no-install-recommends iperf3',
    })
    expect(ran).toEqual([])
    await expect(ensureDemoNeeds({ install: true, say: () => {}, missing, hasApt: false, run })).rejects.toMatchObject({ hint: expect.stringMatching(/no apt-get here/) })
    await expect(ensureDemoNeeds({ install: true, say: () => {}, missing, hasApt: true, run })).rejects.toMatchObject({ message: 'apt-get install exited 100' })
    ran.length = 0
    await ensureDemoNeeds({ install: true, say: () => {}, missing: [], hasApt: true, run })
    expect(ran).toEqual([])
  })
})

/**
 * How the stack answers a flow its handler refused: openTcp or udp rejects with a FlowRefused
 * that names the answer. Anything else thrown is a reset (TCP) or a silent drop (UDP).
 */
export type RefusalAnswer = 'reset' | 'host-unreachable' | 'port-unreachable'

export class FlowRefused extends Error {
  constructor(
    readonly answer: RefusalAnswer,
    message = `refused (${answer})`,
  ) {
    super(message)
    this.name = 'FlowRefused'
  }
}

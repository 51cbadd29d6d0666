/**
 * Timing and congestion state of one flow's send side: the retransmission timeout estimator of
 * RFC 6298 and NewReno congestion control (RFC 5681 / RFC 6582) without SACK.
 *
 * The "network" between us and the application is the local kernel, so loss is rare — but it
 * does happen: the TUN device drops packets when its queue is full, and blasting a whole 4 MiB
 * peer window at it would make that the normal case. Slow start and halving on loss keep us
 * from overrunning it, for a few lines of code.
 */

/** RFC 6298 smoothed RTT and retransmission timeout, with Karn's algorithm left to the caller. */
export class RtoEstimator {
  private srtt = 0
  private rttvar = 0
  rto: number

  constructor(
    private readonly minRto: number,
    private readonly maxRto: number,
    initialRto: number,
  ) {
    this.rto = initialRto
  }

  /** One RTT measurement (ms) of a segment that was never retransmitted. */
  sample(r: number): void {
    if (this.srtt === 0) {
      this.srtt = r
      this.rttvar = r / 2
    } else {
      this.rttvar = 0.75 * this.rttvar + 0.25 * Math.abs(this.srtt - r)
      this.srtt = 0.875 * this.srtt + 0.125 * r
    }
    this.rto = Math.min(this.maxRto, Math.max(this.minRto, this.srtt + Math.max(1, 4 * this.rttvar)))
  }

  /** Exponential backoff after a timeout (RFC 6298 §5.5). */
  backoff(): void {
    this.rto = Math.min(this.maxRto, this.rto * 2)
  }
}

/** NewReno congestion window (bytes). */
export class NewReno {
  cwnd: number
  ssthresh = Number.MAX_SAFE_INTEGER
  inRecovery = false
  dupAcks = 0
  private recover = 0

  constructor(private readonly mss: number) {
    this.cwnd = 10 * mss // RFC 6928 initial window
  }

  /**
   * New data acknowledged (ack = the new SND.UNA). Returns true for a partial ACK during
   * recovery: the next hole should be retransmitted at once (RFC 6582 §3.2 step 3).
   */
  acked(bytes: number, ack: number): boolean {
    this.dupAcks = 0
    if (this.inRecovery) {
      if (((ack - this.recover) | 0) >= 0) {
        this.inRecovery = false
        this.cwnd = this.ssthresh
        return false
      }
      this.cwnd = Math.max(this.mss, this.cwnd - bytes + this.mss)
      return true
    }
    // Byte counting; stretch ACKs (one per burst) are normal for a receiver that batches.
    if (this.cwnd < this.ssthresh) this.cwnd += bytes
    else this.cwnd += Math.max(1, Math.floor((this.mss * bytes) / this.cwnd))
    return false
  }

  /** A duplicate ACK with data outstanding; true when it triggers a fast retransmit. */
  duplicate(flight: number, sndMax: number): boolean {
    this.dupAcks++
    if (this.inRecovery) {
      this.cwnd += this.mss // inflate: one segment left the network
      return false
    }
    if (this.dupAcks !== 3) return false
    this.ssthresh = Math.max(flight / 2, 2 * this.mss)
    this.cwnd = this.ssthresh + 3 * this.mss
    this.recover = sndMax
    this.inRecovery = true
    return true
  }

  /** Retransmission timeout: back to one segment (RFC 5681 §3.1). */
  timeout(flight: number): void {
    this.ssthresh = Math.max(flight / 2, 2 * this.mss)
    this.cwnd = this.mss
    this.inRecovery = false
    this.dupAcks = 0
  }
}

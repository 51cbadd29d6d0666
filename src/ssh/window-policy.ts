/**
 * The receive-window policy both engines use for the channels they own (pure). Like TCP's
 * dynamic right-sizing: the peer's outstanding credit plus the data buffered but not yet taken
 * by the consumer is kept at a per-channel target, and once per round trip the target is set
 * from what the consumer actually took: GAIN × bytes per round trip + HEADROOM, never more
 * than double the previous target, never below the base window. Why not "double while the
 * window fills": surplus credit becomes data queued in sshd's channel buffer, which OpenSSH grows
 * 32 KiB at a time, copying and zeroing it each step (measured: whole seconds of sshd at 100 %
 * CPU in memmove with a doubling rule at 40 ms). See builtin/channel-window.ts for the history.
 */

/** The window a channel starts with and never drops below: ssh2's and `ssh -L`'s 2 MiB. */
export const BASE_WINDOW = 2 * 1024 * 1024

/** Below this round trip (ms) windows stay at BASE_WINDOW: the LAN needs no more. */
export const MIN_RTT_MS = 5

/** Credit kept per byte moved in one round trip. */
export const WINDOW_GAIN = 1.25

/** Added to GAIN × bytes per round trip, so a window grows from a low rate too: at most this
 * much surplus credit sits in sshd (ssh -L lets it queue up to 2 MiB too). */
export const WINDOW_HEADROOM = 2 * 1024 * 1024

/**
 * The next target window from the bytes consumed over `elapsedMs` and the round trip `rttMs`.
 * Rises at most to twice `target`; falls at most by an eighth per call, so one slow round trip
 * does not collapse a window that was right a moment ago. `base` and `headroom`: the engine's
 * (the OpenSSH engine keeps less surplus, see openssh/receive-window.ts).
 */
export function nextTarget(
  target: number,
  moved: number,
  elapsedMs: number,
  rttMs: number,
  maxWindow: number,
  base = BASE_WINDOW,
  headroom = WINDOW_HEADROOM,
): number {
  const perRtt = elapsedMs > 0 ? (moved * rttMs) / elapsedMs : 0
  const want = Math.ceil(WINDOW_GAIN * perRtt) + headroom
  const next = Math.min(Math.max(want, target - target / 8), 2 * target, maxWindow)
  return Math.max(base, Math.floor(next))
}

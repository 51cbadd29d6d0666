/**
 * The one path every connection takes between its front-end's handshake and its end:
 * route decision → meta → track → dial → client still there? → pipe → close → log.
 * Front-ends (transparent, SOCKS5, HTTP proxy, -L, -R, the TUN engine) keep only their
 * handshake and their way of reporting a failure (RST, SOCKS reply, 502/504, ICMP): they get
 * the DialError back and answer it.
 */
import type net from 'node:net'
import type { Duplex } from 'node:stream'
import { formatHostPort } from '../config/host-port'
import { errorMessage } from '../errors'
import type { Logger } from '../observe/logger'
import type { ConnTracker, TrackedConn } from './conn-tracker'
import { DialError } from './dial-error'
import { type PipeResult, pipeBoth } from './pipe'
import type { RouteTable } from './route-table'
import type { ConnMeta, Destination, Dialer, FrontEnd } from './types'

/** What a front-end relays with. */
export interface RelayContext {
  readonly dialer: Dialer
  readonly tracker: ConnTracker
  readonly log: Logger
  /**
   * The route table, for front-ends that serve only tunnelled destinations (routedOnly). It is
   * asked once per connection, and its answer travels with the dial (ConnMeta.route).
   */
  readonly routes?: RouteTable
}

/** One connection a front-end accepted. */
export interface RelayRequest {
  readonly frontEnd: FrontEnd
  /** What log lines call the front-end ("socks5", "forward", "tun"); nothing for the listener. */
  readonly label?: string
  readonly src: { readonly address: string; readonly port: number }
  readonly dst: Destination
  /** Refuse a destination outside the tunnelled subnets: DialError 'not-routed', before any tracking. */
  readonly routedOnly?: boolean
}

/** A dialled, tracked connection. */
export interface Opened {
  readonly meta: ConnMeta
  readonly conn: TrackedConn
  readonly remote: Duplex
  readonly req: RelayRequest
}

/** How a relay attempt ended before piping: the error to report, and whether the client is already gone. */
export interface RelayFailure {
  readonly ok: false
  readonly error: unknown
  readonly clientGone: boolean
}

export type RelayOutcome = { readonly ok: true; readonly opened: Opened; readonly done: Promise<PipeResult> } | RelayFailure

/** "#12 socks5 127.0.0.1:50000 → db:5432": the prefix of a connection's log lines. */
export function lineOf(o: { meta: ConnMeta; req: RelayRequest }): string {
  const { req, meta } = o
  return `#${meta.id}${req.label ? ` ${req.label}` : ''} ${formatHostPort(req.src.address, req.src.port)} → ${formatHostPort(req.dst.host, req.dst.port)}`
}

/**
 * Route decision, meta, tracking and the dial. A failed dial is counted, logged (warning) and
 * rethrown for the front-end to report; 'not-routed' is thrown before anything is tracked or
 * logged (the front-end knows whether that is news).
 */
export async function openConnection(req: RelayRequest, ctx: RelayContext): Promise<Opened> {
  let route: ConnMeta['route']
  if (req.routedOnly && ctx.routes) {
    route = ctx.routes.lookup(req.dst.host) ?? null
    if (route?.action !== 'tunnel') {
      throw new DialError('not-routed', `${formatHostPort(req.dst.host, req.dst.port)}: not in the tunnelled subnets`)
    }
  }
  const meta: ConnMeta = {
    id: ctx.tracker.nextId(),
    frontEnd: req.frontEnd,
    srcAddress: req.src.address,
    srcPort: req.src.port,
    ...(route !== undefined && { route }),
  }
  const conn = ctx.tracker.open(meta, req.dst)
  try {
    return { meta, conn, req, remote: await ctx.dialer.dial(req.dst, meta) }
  } catch (e) {
    const msg = errorMessage(e)
    ctx.tracker.close(conn, msg)
    ctx.log.warn('route', `${lineOf({ meta, req })}: ${msg}`)
    throw e
  }
}

/**
 * openConnection for a client socket that waited (paused) during the dial: a client that went
 * away meanwhile releases the stream at once. Logs "open" (-v) on success.
 */
export async function openFor(client: net.Socket, req: RelayRequest, ctx: RelayContext): Promise<{ readonly ok: true; readonly opened: Opened } | RelayFailure> {
  let opened: Opened
  try {
    opened = await openConnection(req, ctx)
  } catch (error) {
    return { ok: false, error, clientGone: client.destroyed }
  }
  if (client.destroyed) {
    opened.remote.destroy()
    ctx.tracker.close(opened.conn, 'client went away while connecting')
    return { ok: false, error: new Error('client went away while connecting'), clientGone: true }
  }
  // Lines are built only when written: at thousands of connections per second the strings
  // alone show up in profiles.
  if (ctx.log.enabled('verbose')) ctx.log.verbose('route', `${lineOf(opened)} open`)
  return { ok: true, opened }
}

/** Ends a connection's record: the tracker's totals and the "closed" line (-v). */
export function finishConnection(o: Opened, ctx: RelayContext, error?: string): void {
  ctx.tracker.close(o.conn, error)
  if (ctx.log.enabled('verbose')) {
    ctx.log.verbose('route', `${lineOf(o)} closed (${o.conn.bytesUp} B up, ${o.conn.bytesDown} B down)${error ? `: ${error}` : ''}`)
  }
}

/** Pipes an opened connection to its client socket, then finishes it. */
export function pipeOpened(client: net.Socket, o: Opened, ctx: RelayContext): Promise<PipeResult> {
  return pipeBoth(client, o.remote, o.conn).then((r) => {
    finishConnection(o, ctx, r.error?.message)
    return r
  })
}

/**
 * The whole path for a front-end whose client is a socket: open, call `onOpen` (a success reply),
 * pipe. On failure the front-end reports `error` to the client (unless it is gone).
 */
export async function relay(client: net.Socket, req: RelayRequest, ctx: RelayContext, onOpen?: (o: Opened) => void): Promise<RelayOutcome> {
  const got = await openFor(client, req, ctx)
  if (!got.ok) return got
  onOpen?.(got.opened)
  return { ok: true, opened: got.opened, done: pipeOpened(client, got.opened, ctx) }
}

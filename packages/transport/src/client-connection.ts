import { EventEmitter } from 'node:events'
import { connect as netConnect, isIP, type Socket } from 'node:net'
import { connect as tlsConnect, type TLSSocket } from 'node:tls'
import {
  DEFAULT_DECODE_LIMITS, EvalMeshError, MAX_HANDSHAKE_FRAME_BYTES, RemoteEvalError, formatHost, socketErrorText,
  parseServerMessage, parseWireError, type NodeLimits, type ReplyOf, type RequestBody, type RequestKind, type StreamEvent
} from '@evalmesh/protocol'
import { certificateEd25519Key, type Identity, type TrustStore } from '@evalmesh/trust'
import { FramedSocket } from './framed-socket.js'
import { clientHandshake, type PeerInfo } from './handshake.js'
import { integrityWanted, type IntegrityMode } from './frame-integrity.js'

export type { RequestBody }

/** Liveness defaults (PROTOCOL.md §8 "Liveness"): ping after 1 s of silence, LOST after 5 s. */
export const HEARTBEAT_INTERVAL_MS = 1000
export const HEARTBEAT_TIMEOUT_MS = 5000

export interface ConnectOptions {
  host: string
  port: number
  identity: Identity
  trust: TrustStore
  /** Connect plus handshake must finish within this. Default 5000 ms. */
  connectTimeoutMs?: number
  /** The node id the server must prove, when known (from the peer table). */
  expectId?: string
  /**
   * While requests wait, send a `ping` after this long without a byte from the node
   * (default 1000 ms; 0 turns the heartbeat off).
   */
  heartbeatIntervalMs?: number
  /**
   * Declare the connection LOST when nothing at all has arrived for this long while
   * requests wait, despite the pings (default 5000 ms). A node answers ping from its
   * event loop while evaluations run in its sandbox process, so a long evaluation on a
   * live node never trips it.
   */
  heartbeatTimeoutMs?: number
  /** Frame integrity (PROTOCOL.md §2.4): `auto` (default) everywhere but loopback, `always` on loopback too. */
  integrity?: IntegrityMode
  /**
   * Connect with TLS 1.3 (PROTOCOL.md §2.5). The node's certificate is good when its key is
   * the Ed25519 key the node proves in the handshake (`serve --tls`: the trusted key pins
   * it), or when it verifies against `ca` (PEM; default Node's CA store) for `host`.
   */
  tls?: { ca?: string | Buffer }
  /**
   * Carry the connection over this stream instead of a TCP socket (a NATS stream,
   * @evalmesh/nats): it is opened within the connect timeout, and the handshake runs over
   * it as over TCP. `host` and `port` then only name it in messages (`where`).
   */
  carrier?: { open: (timeoutMs: number) => Promise<Socket>, where: string }
}

type CertificateCheck = NonNullable<Parameters<typeof clientHandshake>[1]['tlsCertificate']>

/** What the node's TLS certificate is: its Ed25519 key if it has one, and whether it verified for `host`. */
function certificateCheck (socket: TLSSocket, host: string): CertificateCheck {
  const cert = socket.getPeerX509Certificate()
  if (cert === undefined) return { key: undefined, verified: false, why: 'no certificate' }
  const key = certificateEd25519Key(cert)
  if (!socket.authorized) return { key, verified: false, why: String(socket.authorizationError) }
  const matches = isIP(host) !== 0 ? cert.checkIP(host) !== undefined : cert.checkHost(host) !== undefined
  return matches ? { key, verified: true, why: 'verified' } : { key, verified: false, why: `the certificate is not for ${host}` }
}

/** A TCP (or TLS) socket to the node, connected within `timeoutMs`. */
async function connectSocket (opts: ConnectOptions, tls: ConnectOptions['tls'], timeoutMs: number): Promise<Socket> {
  // The certificate is checked once the node has proven its key (clientHandshake), so
  // the TLS layer itself accepts any certificate and only reports what it found.
  const socket: Socket = tls === undefined
    ? netConnect({ host: opts.host, port: opts.port })
    : tlsConnect({
      host: opts.host, port: opts.port, minVersion: 'TLSv1.3', rejectUnauthorized: false, ...(tls.ca === undefined ? {} : { ca: tls.ca }),
      ...(isIP(opts.host) === 0 ? { servername: opts.host } : {})
    })
  const where = formatHost(opts.host, opts.port)
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => { socket.destroy(); reject(new EvalMeshError('CONNECT_FAILED', `connecting to ${where} timed out after ${timeoutMs} ms`)) }, timeoutMs)
    socket.once(tls === undefined ? 'connect' : 'secureConnect', () => { clearTimeout(timer); resolve() })
    socket.once('error', (err) => {
      clearTimeout(timer)
      reject(new EvalMeshError('CONNECT_FAILED', `cannot connect to ${where}${tls === undefined ? '' : ' with TLS'}: ${socketErrorText(err)}`))
    })
  })
  return socket
}

export interface RequestOptions {
  /** Reject with CLIENT_TIMEOUT if no reply arrives in time (the request is not aborted remotely). */
  timeoutMs?: number
  /** Event frames the node sends on this request's id before its reply (an eval's streamed output, PROTOCOL.md §3.2). */
  onEvents?: (events: StreamEvent[]) => void
}

interface Pending {
  resolve: (value: never) => void
  reject: (err: Error) => void
  timer: NodeJS.Timeout | undefined
  /** What the caller waits for, for its own error: "txn T" or "the status reply". */
  what: string
  txn: string | undefined
  onEvents?: (events: StreamEvent[]) => void
}

/**
 * One authenticated connection to a node. Requests are multiplexed by id; replies
 * are matched in one map. When the connection closes, every pending request is
 * rejected at once, each with its own LOST error naming what it waited for, so a
 * waiting caller never hangs; a heartbeat notices a node that went silent without
 * closing (stopped, hung, a dead link without a reset).
 *
 * Events: 'close' (error | undefined).
 */
export class ClientConnection extends EventEmitter {
  readonly peer: PeerInfo
  readonly limits: NodeLimits
  readonly version: number
  readonly #framed: FramedSocket
  readonly #where: string
  readonly #heartbeat: { intervalMs: number, timeoutMs: number }
  #nextId = 1
  #pending = new Map<number, Pending>()
  /** Open streams (subscribe), by the id of the request that opened them. */
  readonly #streams = new Map<number, (events: StreamEvent[]) => void>()
  /** Why the connection closed: a fatal error frame, a local decision, or the socket's error. */
  #closeCause: Error | undefined
  #closed = false
  // Heartbeat state, live only while requests wait: a byte arrived since the last tick;
  // when the unanswered ping went out; when the last tick ran (to notice our own stalls).
  #timer: NodeJS.Timeout | undefined
  #heard = false
  #pingSentAt: number | undefined
  #lastTick = 0

  private constructor (framed: FramedSocket, peer: PeerInfo, limits: NodeLimits, version: number, opts: ConnectOptions) {
    super()
    this.#framed = framed
    this.peer = peer
    this.limits = limits
    this.version = version
    this.#where = `${peer.name} at ${opts.carrier?.where ?? formatHost(opts.host, opts.port)}`
    const intervalMs = opts.heartbeatIntervalMs ?? HEARTBEAT_INTERVAL_MS
    this.#heartbeat = { intervalMs, timeoutMs: Math.max(opts.heartbeatTimeoutMs ?? HEARTBEAT_TIMEOUT_MS, 2 * intervalMs) }
    // Any byte counts as a sign of life, not only whole frames: a large reply can take
    // longer than the timeout to arrive on a slow link.
    framed.socket.on('data', () => { this.#heard = true })
    framed.on('message', (value) => this.#onMessage(value))
    framed.on('close', (err?: EvalMeshError) => this.#onClose(err))
  }

  static async open (opts: ConnectOptions): Promise<ClientConnection> {
    const timeoutMs = opts.connectTimeoutMs ?? 5000
    // A carrier's stream is plain: TLS is a TCP matter, frame integrity protects it instead.
    const tls = opts.carrier === undefined ? opts.tls : undefined
    const socket = opts.carrier !== undefined ? await opts.carrier.open(timeoutMs) : await connectSocket(opts, tls, timeoutMs)
    const framed = new FramedSocket(socket, { ...DEFAULT_DECODE_LIMITS, maxFrameBytes: MAX_HANDSHAKE_FRAME_BYTES })
    const handshake: Parameters<typeof clientHandshake>[1] = {
      identity: opts.identity, trust: opts.trust, timeoutMs, integrity: tls === undefined && integrityWanted(opts.integrity, socket.remoteAddress)
    }
    if (tls !== undefined) handshake.tlsCertificate = certificateCheck(socket as TLSSocket, opts.host)
    if (opts.expectId !== undefined) handshake.expectId = opts.expectId
    const result = await clientHandshake(framed, handshake)
    framed.setLimits({ ...DEFAULT_DECODE_LIMITS, maxFrameBytes: Math.max(result.limits.maxFrameBytes ?? 0, DEFAULT_DECODE_LIMITS.maxFrameBytes) })
    return new ClientConnection(framed, result.peer, result.limits, result.version, opts)
  }

  get closed (): boolean { return this.#closed || this.#framed.closed }
  get pendingCount (): number { return this.#pending.size }

  /**
   * Send one request; resolves with the reply value of its kind (ReplyOf<K>), or rejects
   * with a RemoteEvalError (the node's error), LOST or CLIENT_TIMEOUT.
   */
  request<K extends RequestKind> (body: RequestBody & { kind: K }, options: RequestOptions = {}): Promise<ReplyOf<K>> {
    const txn = 'txn' in body && typeof body.txn === 'string' ? body.txn : undefined
    const what = txn !== undefined ? `txn ${txn}` : `the ${body.kind} reply`
    if (this.closed) return Promise.reject(this.#lost(what, txn))
    const id = this.#nextId++
    return new Promise<ReplyOf<K>>((resolve, reject) => {
      const pending: Pending = { resolve: resolve as (value: never) => void, reject, timer: undefined, what, txn }
      if (options.timeoutMs !== undefined) {
        pending.timer = setTimeout(() => {
          this.#settled(id)
          const data: Record<string, unknown> = { node: this.peer.name }
          if (txn !== undefined) data.txn = txn
          reject(new EvalMeshError('CLIENT_TIMEOUT', `no reply from ${this.#where} within ${options.timeoutMs} ms for ${what}` +
            (txn !== undefined ? ' (it may still run there: fetchResult re-fetches it by txn)' : ''), data))
        }, options.timeoutMs)
      }
      if (options.onEvents !== undefined) pending.onEvents = options.onEvents
      this.#pending.set(id, pending)
      if (this.#pending.size === 1) this.#startHeartbeat()
      try {
        this.#framed.send({ ...body, id })
      } catch (err) {
        this.#settled(id)
        if (pending.timer !== undefined) clearTimeout(pending.timer)
        reject(err)
      }
    })
  }

  close (): void { this.#framed.close() }
  destroy (): void { this.#framed.destroy() }

  /**
   * Open the node's event stream (PROTOCOL.md §3.11): `onEvents` gets each batch (txn
   * records as they change, trace events, policy changes) until the connection closes
   * or `close()` is called. With `since`, trace events after that seq come first.
   */
  async subscribe (onEvents: (events: StreamEvent[]) => void, options: { since?: number } = {}): Promise<{ lastSeq: number, close: () => void }> {
    // request() takes the next id synchronously: register the stream under it first, so
    // that no frame can arrive before its listener.
    const id = this.#nextId
    this.#streams.set(id, onEvents)
    try {
      const body: RequestBody<'subscribe'> = { kind: 'subscribe' }
      if (options.since !== undefined) body.since = options.since
      const reply = await this.request(body)
      return { lastSeq: reply.lastSeq, close: () => { this.#streams.delete(id) } }
    } catch (err) {
      this.#streams.delete(id)
      throw err
    }
  }

  #onMessage (value: unknown): void {
    let msg
    try {
      msg = parseServerMessage(value)
    } catch (err) {
      this.#closeCause ??= err as Error
      this.#framed.destroy(new EvalMeshError('LOST', `node ${this.peer.name} sent a bad message: ${(err as Error).message}`))
      return
    }
    if (msg.kind === 'error') {
      this.#closeCause ??= new RemoteEvalError(parseWireError(msg.error), { node: this.peer.name })
      this.#framed.destroy()
      return
    }
    if (msg.kind === 'event') {
      // A subscribe stream outlives its reply; a request's own events end with it.
      const onEvents = this.#streams.get(msg.id) ?? this.#pending.get(msg.id)?.onEvents
      onEvents?.(msg.events as StreamEvent[])
      return
    }
    const pending = this.#pending.get(msg.id)
    if (pending === undefined) return // a heartbeat's pong, or a reply after our own timeout
    this.#settled(msg.id)
    if (pending.timer !== undefined) clearTimeout(pending.timer)
    if (msg.ok) pending.resolve(msg.value as never)
    else pending.reject(new RemoteEvalError(parseWireError(msg.error), { node: this.peer.name }))
  }

  #settled (id: number): void {
    this.#pending.delete(id)
    if (this.#pending.size === 0) this.#stopHeartbeat()
  }

  /**
   * A fresh LOST error for one caller: its own message naming what it waited for, its own
   * data, and the reason the connection closed as `cause` (never one shared, edited object).
   */
  #lost (what: string, txn: string | undefined): EvalMeshError {
    const cause = this.#closeCause
    const data: Record<string, unknown> = { node: this.peer.name }
    if (txn !== undefined) data.txn = txn
    const why = cause === undefined ? '' : `: ${cause instanceof EvalMeshError ? `${cause.code} ` : ''}${cause.message}`
    const hint = txn !== undefined ? '; the node keeps its outcome, fetch its result later with fetchResult (a "result" request)' : ''
    return new EvalMeshError('LOST', `lost the connection to ${this.#where} while waiting for ${what}${why}${hint}`, data, cause === undefined ? undefined : { cause })
  }

  #onClose (err?: EvalMeshError): void {
    this.#closed = true
    this.#stopHeartbeat()
    this.#closeCause ??= err
    const pending = [...this.#pending.values()]
    this.#pending.clear()
    for (const p of pending) {
      if (p.timer !== undefined) clearTimeout(p.timer)
      p.reject(this.#lost(p.what, p.txn))
    }
    this.emit('close', this.#lost('replies', undefined))
  }

  // ---- heartbeat -------------------------------------------------------------------

  #startHeartbeat (): void {
    const { intervalMs } = this.#heartbeat
    if (intervalMs <= 0 || this.#timer !== undefined) return
    // The silence is counted from the moment something waits, not from the last reply
    // of an idle connection.
    this.#heard = false
    this.#pingSentAt = undefined
    this.#lastTick = Date.now()
    this.#timer = setInterval(() => this.#tick(), intervalMs)
    // A waiting request's socket keeps the process alive; the heartbeat alone must not.
    this.#timer.unref()
  }

  #stopHeartbeat (): void {
    if (this.#timer !== undefined) clearInterval(this.#timer)
    this.#timer = undefined
  }

  #tick (): void {
    const { intervalMs, timeoutMs } = this.#heartbeat
    const now = Date.now()
    const late = now - this.#lastTick > 2 * intervalMs
    this.#lastTick = now
    if (this.#heard || late) {
      // Heard from the node, or this process itself was stalled (a long synchronous task,
      // a debugger) and could neither send pings nor read replies: start counting afresh.
      this.#heard = false
      this.#pingSentAt = undefined
      return
    }
    if (this.#pingSentAt === undefined) {
      this.#pingSentAt = now
      try { this.#framed.send({ kind: 'ping', id: this.#nextId++ }) } catch { /* closing: #onClose reports it */ }
      return
    }
    // The ping went out after one silent interval; the rest of the timeout is its grace.
    if (now - this.#pingSentAt >= timeoutMs - intervalMs) {
      const silent = now - this.#pingSentAt + intervalMs
      this.#closeCause ??= new EvalMeshError('LOST', `no reply to ping from ${this.#where} for ${silent} ms (heartbeat timeout ${timeoutMs} ms): the node is stopped, hung or unreachable`)
      this.#framed.destroy()
    }
  }
}

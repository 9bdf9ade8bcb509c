import { EventEmitter } from 'node:events'
import { createServer, type Server, type Socket } from 'node:net'
import { createSecureContext, TLSSocket, type SecureContext } from 'node:tls'
import {
  DEFAULT_DECODE_LIMITS, EvalMeshError, MAX_HANDSHAKE_FRAME_BYTES, parseRequest, toWireError,
  type NodeLimits, type Request, type WireError
} from '@evalmesh/protocol'
import type { Identity, TrustStore } from '@evalmesh/trust'
import { FramedSocket } from './framed-socket.js'
import { serverHandshake, type PeerInfo } from './handshake.js'
import { integrityWanted, type IntegrityMode } from './frame-integrity.js'

/**
 * One authenticated client connection as the server sees it.
 * Events: 'request' (Request), 'close'.
 */
export class ServerConnection extends EventEmitter {
  readonly id: number
  readonly peer: PeerInfo
  readonly openedAt = Date.now()
  readonly #framed: FramedSocket
  requests = 0

  constructor (id: number, framed: FramedSocket, peer: PeerInfo) {
    super()
    this.id = id
    this.#framed = framed
    this.peer = peer
    framed.on('message', (value) => this.#onMessage(value))
    framed.on('close', () => this.emit('close'))
  }

  get closed (): boolean { return this.#framed.closed }

  /** Bytes written but not yet taken by the kernel: a stream stops feeding a reader this far behind. */
  get bufferedBytes (): number { return this.#framed.socket.writableLength }

  /** One event frame of a stream opened by request `id` (PROTOCOL.md §3.11). */
  sendEvents (id: number, events: unknown[]): void {
    this.#framed.send({ kind: 'event', id, events })
  }

  reply (id: number, value: unknown): void {
    try {
      this.#framed.send({ kind: 'reply', id, ok: true, value })
    } catch (err) {
      // The value could not be encoded: the client still gets an answer.
      this.replyError(id, err)
    }
  }

  /** Reply with an error: an Error (converted) or an already-built WireError. */
  replyError (id: number, err: unknown): void {
    this.#framed.send({ kind: 'reply', id, ok: false, error: isWireError(err) ? err : toWireError(err, 'EVAL_ERROR') })
  }

  close (): void { this.#framed.close() }

  #onMessage (value: unknown): void {
    let request: Request
    try {
      request = parseRequest(value)
    } catch (err) {
      // A wrong-shaped message that still carries an id gets a reply on that id and the
      // connection stays usable; without an id there is nothing to answer, so it closes.
      const id = typeof value === 'object' && value !== null ? (value as Record<string, unknown>).id : undefined
      if (typeof id === 'number' && Number.isSafeInteger(id) && id >= 0) {
        this.replyError(id, err)
      } else {
        this.#framed.fail(err)
      }
      return
    }
    this.requests++
    this.emit('request', request)
  }
}

function isWireError (v: unknown): v is WireError {
  return typeof v === 'object' && v !== null && !(v instanceof Error) &&
    typeof (v as WireError).code === 'string' && typeof (v as WireError).wire === 'number' && typeof (v as WireError).message === 'string'
}

export interface ListenOptions {
  host: string
  port: number
  identity: Identity
  trust: TrustStore
  limits: NodeLimits
  /**
   * The whole handshake must finish within this (default 2000 ms). An honest peer needs
   * one and a half round trips; a stranger holding a socket open is cut off this soon.
   */
  handshakeTimeoutMs?: number
  /** Most connections at once, authenticated or not (default 1024); beyond it new sockets are closed. */
  maxConnections?: number
  /**
   * Most sockets still in their handshake at once (default a quarter of maxConnections).
   * The rest of the cap is reserved for authenticated peers, which strangers cannot take.
   */
  maxUnauthenticated?: number
  /** Most sockets in their handshake from one remote address (default 16). */
  maxUnauthenticatedPerAddress?: number
  /**
   * Which plain connections must carry frame integrity (PROTOCOL.md §2.4): `auto` (default)
   * all but loopback ones, `always` loopback ones too.
   */
  integrity?: IntegrityMode
  /**
   * Serve TLS 1.3 with this certificate and key (PEM; `cert` may hold the chain), the
   * evalmesh handshake inside it (PROTOCOL.md §2.5). Frames then carry no integrity tags.
   */
  tls?: { cert: string | Buffer, key: string | Buffer }
}

/** What the listener turned away before authentication (for describe and tests). */
export interface ListenerCounters {
  /** Closed at once: the connection cap was reached, with no handshake to make room. */
  refusedFull: number
  /** Closed at once: that address already had its share of handshakes in progress. */
  refusedPerAddress: number
  /** Handshakes cut short to make room for a newer socket (the oldest goes first). */
  evicted: number
  /** Handshakes that did not finish in time. */
  timedOut: number
  /** TLS handshakes that failed or timed out (before the evalmesh handshake). */
  tlsFailed: number
}

/**
 * The TCP listener: accepts sockets, runs the handshake with small frame limits,
 * then hands each authenticated connection to 'connection' listeners.
 *
 * Strangers cannot lock trusted peers out (PROTOCOL.md §2.3): sockets that have not
 * authenticated are held to a short deadline, to a per-address share, and to a part of
 * the connection cap; when that part is full a new socket displaces the oldest
 * handshake, since an honest handshake takes a round trip and one still open after
 * the others is the likeliest to be a stranger holding it. With TLS, the TLS handshake
 * is part of this: a socket is admitted (and counted) when TCP accepts it, and TLS
 * then runs on it inside the same deadline, so stalled TLS handshakes are held to the
 * same shares as stalled evalmesh ones.
 *
 * Events: 'connection' (ServerConnection), 'rejected' ({ address, error }).
 */
export class Listener extends EventEmitter {
  readonly #server: Server
  readonly #opts: ListenOptions
  readonly connections = new Set<ServerConnection>()
  readonly counters: ListenerCounters = { refusedFull: 0, refusedPerAddress: 0, evicted: 0, timedOut: 0, tlsFailed: 0 }
  readonly #sockets = new Set<Socket>()
  /** Sockets in their handshake and their remote address, oldest first (insertion order). */
  readonly #handshaking = new Map<Socket, string>()
  readonly #perAddress = new Map<string, number>()
  /** TLS settings, made once: each accepted socket is wrapped in TLS after admission. */
  readonly #tls: SecureContext | undefined
  #nextId = 1

  private constructor (server: Server, opts: ListenOptions) {
    super()
    this.#server = server
    this.#opts = opts
    this.#tls = opts.tls === undefined ? undefined : createSecureContext({ cert: opts.tls.cert, key: opts.tls.key, minVersion: 'TLSv1.3' })
    // Always a plain TCP server: a tls.Server would hand sockets over only once their TLS
    // handshake is done, leaving handshakes in progress outside every pre-auth limit.
    server.on('connection', (socket: Socket) => this.#onSocket(socket))
  }

  static async listen (opts: ListenOptions): Promise<Listener> {
    const server = createServer({ noDelay: true })
    const listener = new Listener(server, opts)
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject)
      server.listen(opts.port, opts.host, () => { server.off('error', reject); resolve() })
    })
    return listener
  }

  get address (): { host: string, port: number } {
    const a = this.#server.address()
    if (a === null || typeof a === 'string') return { host: this.#opts.host, port: this.#opts.port }
    return { host: a.address, port: a.port }
  }

  /** Whether the listener serves TLS. */
  get tls (): boolean { return this.#opts.tls !== undefined }

  /** Sockets still in their handshake. */
  get unauthenticated (): number { return this.#handshaking.size }

  async close (): Promise<void> {
    await new Promise<void>((resolve) => {
      this.#server.close(() => resolve())
      for (const s of this.#sockets) s.destroy()
    })
  }

  /**
   * Take a stream that another carrier accepted (a NATS stream, @evalmesh/nats) as if TCP
   * had: the same pre-auth caps (counted under its `remoteAddress`), deadline and handshake.
   * It is never wrapped in TLS, and carries frame integrity unless it is loopback. All the
   * streams of one carrier share one address, so `maxPerAddress` may give it a larger share
   * of unfinished handshakes than one TCP address has (default the same).
   */
  accept (socket: Socket, options: { maxPerAddress?: number } = {}): void {
    this.#onSocket(socket, { perAddress: options.maxPerAddress })
  }

  #onSocket (socket: Socket, carrier?: { perAddress: number | undefined }): void {
    const carried = carrier !== undefined
    const maxConnections = this.#opts.maxConnections ?? 1024
    const maxUnauthenticated = Math.max(1, Math.min(maxConnections, this.#opts.maxUnauthenticated ?? Math.ceil(maxConnections / 4)))
    const perAddress = carrier?.perAddress ?? this.#opts.maxUnauthenticatedPerAddress ?? 16
    const address = socket.remoteAddress ?? ''
    // One address cannot take more than its share, nor push out others' handshakes.
    if ((this.#perAddress.get(address) ?? 0) >= perAddress) {
      this.counters.refusedPerAddress++
      socket.destroy()
      return
    }
    if (this.#handshaking.size >= maxUnauthenticated || this.#sockets.size >= maxConnections) {
      const oldest = this.#handshaking.keys().next().value
      if (oldest === undefined) {
        this.counters.refusedFull++
        socket.destroy()
        return
      }
      this.counters.evicted++
      this.#endHandshake(oldest)
      oldest.destroy()
    }
    this.#sockets.add(socket)
    this.#handshaking.set(socket, address)
    this.#perAddress.set(address, (this.#perAddress.get(address) ?? 0) + 1)
    socket.on('close', () => { this.#sockets.delete(socket); this.#endHandshake(socket) })
    socket.on('error', () => { /* reported through 'close' */ })
    socket.setKeepAlive(true, 30_000)
    const timeoutMs = this.#opts.handshakeTimeoutMs ?? 2000
    // One deadline for the whole handshake, not one per message: a peer that trickles
    // its frames must not hold the socket for several timeouts.
    const deadline = setTimeout(() => { this.counters.timedOut++; socket.destroy() }, timeoutMs)
    deadline.unref()
    const secured = carried ? Promise.resolve(socket) : this.#secure(socket)
    secured.then((stream) => this.#handshake(socket, stream, address, deadline, carried), () => {
      // A failed TLS handshake is a stranger going away: nothing to report to anyone.
      clearTimeout(deadline)
      this.counters.tlsFailed++
      socket.destroy()
    })
  }

  /** The socket itself on plain TCP; with TLS, the TLS stream over it once TLS is up. */
  async #secure (socket: Socket): Promise<Socket> {
    if (this.#tls === undefined) return socket
    const tls = new TLSSocket(socket, { isServer: true, secureContext: this.#tls })
    await new Promise<void>((resolve, reject) => {
      tls.once('secure', resolve)
      tls.once('error', reject)
      // Closed before TLS was up (the deadline, an eviction, the peer going away).
      tls.once('close', () => reject(new Error('closed during the TLS handshake')))
    })
    tls.on('error', () => { /* reported through 'close' */ })
    return tls
  }

  /** The evalmesh handshake (PROTOCOL.md §2.2) on `stream`, still inside the accept deadline. */
  #handshake (socket: Socket, stream: Socket, address: string, deadline: NodeJS.Timeout, carried: boolean): void {
    const framed = new FramedSocket(stream, { ...DEFAULT_DECODE_LIMITS, maxFrameBytes: MAX_HANDSHAKE_FRAME_BYTES })
    const timeoutMs = this.#opts.handshakeTimeoutMs ?? 2000
    serverHandshake(framed, {
      identity: this.#opts.identity,
      trust: this.#opts.trust,
      limits: this.#opts.limits,
      timeoutMs,
      requireIntegrity: (carried || this.#opts.tls === undefined) && integrityWanted(this.#opts.integrity, address)
    }).then((peer) => {
      clearTimeout(deadline)
      this.#endHandshake(socket)
      framed.setLimits({
        maxFrameBytes: this.#opts.limits.maxFrameBytes,
        maxDepth: this.#opts.limits.maxDepth,
        maxStringBytes: this.#opts.limits.maxStringBytes,
        maxItems: DEFAULT_DECODE_LIMITS.maxItems
      })
      const conn = new ServerConnection(this.#nextId++, framed, peer)
      this.connections.add(conn)
      conn.on('close', () => this.connections.delete(conn))
      this.emit('connection', conn)
    }, (err: unknown) => {
      clearTimeout(deadline)
      this.emit('rejected', { address, error: err instanceof EvalMeshError ? err : new EvalMeshError('HANDSHAKE_FAILED', String(err)) })
    })
  }

  /** The socket is no longer in its handshake (authenticated, failed or closed); idempotent. */
  #endHandshake (socket: Socket): void {
    // The address is the one recorded at accept: a closed socket no longer knows its peer.
    const address = this.#handshaking.get(socket)
    if (address === undefined) return
    this.#handshaking.delete(socket)
    const n = (this.#perAddress.get(address) ?? 1) - 1
    if (n <= 0) this.#perAddress.delete(address)
    else this.#perAddress.set(address, n)
  }
}

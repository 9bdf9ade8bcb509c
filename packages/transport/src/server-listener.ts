import { EventEmitter } from 'node:events'
import { createServer, type Server, type Socket } from 'node:net'
import {
  DEFAULT_DECODE_LIMITS, EvalMeshError, MAX_HANDSHAKE_FRAME_BYTES, parseRequest, toWireError,
  type NodeLimits, type Request, type WireError
} from '@evalmesh/protocol'
import type { Identity, TrustStore } from '@evalmesh/trust'
import { FramedSocket } from './framed-socket.js'
import { serverHandshake, type PeerInfo } from './handshake.js'

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
  /** Handshake must finish within this; default 5000 ms. */
  handshakeTimeoutMs?: number
  /** Most connections at once (authenticated or not); beyond it new sockets are closed. */
  maxConnections?: number
}

/**
 * The TCP listener: accepts sockets, runs the handshake with small frame limits,
 * then hands each authenticated connection to 'connection' listeners.
 * Events: 'connection' (ServerConnection), 'rejected' ({ address, error }).
 */
export class Listener extends EventEmitter {
  readonly #server: Server
  readonly #opts: ListenOptions
  readonly connections = new Set<ServerConnection>()
  readonly #sockets = new Set<Socket>()
  #nextId = 1

  private constructor (server: Server, opts: ListenOptions) {
    super()
    this.#server = server
    this.#opts = opts
    server.on('connection', (socket) => this.#onSocket(socket))
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

  async close (): Promise<void> {
    await new Promise<void>((resolve) => {
      this.#server.close(() => resolve())
      for (const s of this.#sockets) s.destroy()
    })
  }

  #onSocket (socket: Socket): void {
    if (this.#sockets.size >= (this.#opts.maxConnections ?? 1024)) {
      socket.destroy()
      return
    }
    this.#sockets.add(socket)
    socket.on('close', () => this.#sockets.delete(socket))
    socket.on('error', () => { /* reported through 'close' */ })
    socket.setKeepAlive(true, 30_000)
    const framed = new FramedSocket(socket, { ...DEFAULT_DECODE_LIMITS, maxFrameBytes: MAX_HANDSHAKE_FRAME_BYTES })
    serverHandshake(framed, {
      identity: this.#opts.identity,
      trust: this.#opts.trust,
      limits: this.#opts.limits,
      timeoutMs: this.#opts.handshakeTimeoutMs ?? 5000
    }).then((peer) => {
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
      this.emit('rejected', { address: socket.remoteAddress ?? '', error: err instanceof EvalMeshError ? err : new EvalMeshError('HANDSHAKE_FAILED', String(err)) })
    })
  }
}


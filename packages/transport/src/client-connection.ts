import { EventEmitter } from 'node:events'
import { connect as netConnect } from 'node:net'
import {
  DEFAULT_DECODE_LIMITS, EvalMeshError, MAX_HANDSHAKE_FRAME_BYTES, RemoteEvalError,
  parseServerMessage, parseWireError, type NodeLimits, type Request
} from '@evalmesh/protocol'
import type { Identity, TrustStore } from '@evalmesh/trust'
import { FramedSocket } from './framed-socket.js'
import { clientHandshake, type PeerInfo } from './handshake.js'

/** A request body: any request without its connection-local id. */
export type RequestBody = Request extends infer R ? R extends { id: number } ? Omit<R, 'id'> : never : never

export interface ConnectOptions {
  host: string
  port: number
  identity: Identity
  trust: TrustStore
  /** Connect plus handshake must finish within this. Default 5000 ms. */
  connectTimeoutMs?: number
  /** The node id the server must prove, when known (from the peer table). */
  expectId?: string
}

export interface RequestOptions {
  /** Reject with CLIENT_TIMEOUT if no reply arrives in time (the request is not aborted remotely). */
  timeoutMs?: number
}

interface Pending {
  resolve: (value: unknown) => void
  reject: (err: Error) => void
  timer: NodeJS.Timeout | undefined
}

/**
 * One authenticated connection to a node. Requests are multiplexed by id; replies
 * are matched in one map. When the connection closes, every pending request is
 * rejected at once with LOST, so a waiting caller never hangs.
 *
 * Events: 'close' (error | undefined).
 */
export class ClientConnection extends EventEmitter {
  readonly peer: PeerInfo
  readonly limits: NodeLimits
  readonly version: number
  readonly #framed: FramedSocket
  #nextId = 1
  #pending = new Map<number, Pending>()
  #closeError: EvalMeshError | undefined

  private constructor (framed: FramedSocket, peer: PeerInfo, limits: NodeLimits, version: number) {
    super()
    this.#framed = framed
    this.peer = peer
    this.limits = limits
    this.version = version
    framed.on('message', (value) => this.#onMessage(value))
    framed.on('close', (err?: EvalMeshError) => this.#onClose(err))
  }

  static async open (opts: ConnectOptions): Promise<ClientConnection> {
    const timeoutMs = opts.connectTimeoutMs ?? 5000
    const socket = netConnect({ host: opts.host, port: opts.port })
    const framed = new FramedSocket(socket, { ...DEFAULT_DECODE_LIMITS, maxFrameBytes: MAX_HANDSHAKE_FRAME_BYTES })
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => { socket.destroy(); reject(new EvalMeshError('CONNECT_FAILED', `connecting to ${opts.host}:${opts.port} timed out after ${timeoutMs} ms`)) }, timeoutMs)
      socket.once('connect', () => { clearTimeout(timer); resolve() })
      socket.once('error', (err) => { clearTimeout(timer); reject(new EvalMeshError('CONNECT_FAILED', `cannot connect to ${opts.host}:${opts.port}: ${err.message}`)) })
    })
    const handshake: Parameters<typeof clientHandshake>[1] = { identity: opts.identity, trust: opts.trust, timeoutMs }
    if (opts.expectId !== undefined) handshake.expectId = opts.expectId
    const result = await clientHandshake(framed, handshake)
    framed.setLimits({ ...DEFAULT_DECODE_LIMITS, maxFrameBytes: Math.max(result.limits.maxFrameBytes ?? 0, DEFAULT_DECODE_LIMITS.maxFrameBytes) })
    return new ClientConnection(framed, result.peer, result.limits, result.version)
  }

  get closed (): boolean { return this.#framed.closed }
  get pendingCount (): number { return this.#pending.size }

  /** Send one request; resolves with the reply's value or rejects with a RemoteEvalError. */
  request (body: RequestBody, options: RequestOptions = {}): Promise<unknown> {
    if (this.closed) {
      return Promise.reject(this.#closeError ?? new EvalMeshError('LOST', `connection to ${this.peer.name} is closed`))
    }
    const id = this.#nextId++
    return new Promise((resolve, reject) => {
      const pending: Pending = { resolve, reject, timer: undefined }
      if (options.timeoutMs !== undefined) {
        pending.timer = setTimeout(() => {
          this.#pending.delete(id)
          reject(new EvalMeshError('CLIENT_TIMEOUT', `no reply from ${this.peer.name} within ${options.timeoutMs} ms`))
        }, options.timeoutMs)
      }
      this.#pending.set(id, pending)
      try {
        this.#framed.send({ ...body, id })
      } catch (err) {
        this.#pending.delete(id)
        if (pending.timer !== undefined) clearTimeout(pending.timer)
        reject(err)
      }
    })
  }

  close (): void { this.#framed.close() }
  destroy (): void { this.#framed.destroy() }

  #onMessage (value: unknown): void {
    let msg
    try {
      msg = parseServerMessage(value)
    } catch (err) {
      this.#framed.destroy(new EvalMeshError('LOST', `node ${this.peer.name} sent a bad message: ${(err as Error).message}`))
      return
    }
    if (msg.kind === 'error') {
      const wire = parseWireError(msg.error)
      this.#closeError = new RemoteEvalError(wire, { node: this.peer.name })
      this.#framed.destroy()
      return
    }
    const pending = this.#pending.get(msg.id)
    if (pending === undefined) return // a reply after our own timeout
    this.#pending.delete(msg.id)
    if (pending.timer !== undefined) clearTimeout(pending.timer)
    if (msg.ok) pending.resolve(msg.value)
    else pending.reject(new RemoteEvalError(parseWireError(msg.error), { node: this.peer.name }))
  }

  #onClose (err?: EvalMeshError): void {
    const cause = this.#closeError ?? err
    const lost = cause instanceof RemoteEvalError
      ? cause
      : new EvalMeshError('LOST', `connection to ${this.peer.name} was lost` + (cause !== undefined ? `: ${cause.message}` : ''))
    this.#closeError = lost
    for (const [, p] of this.#pending) {
      if (p.timer !== undefined) clearTimeout(p.timer)
      p.reject(lost)
    }
    this.#pending.clear()
    this.emit('close', lost)
  }
}

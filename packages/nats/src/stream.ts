import { Duplex } from 'node:stream'
import { EvalMeshError } from '@evalmesh/protocol'
import type { Msg, NatsConnection, Subscription } from 'nats'

/*
 * A virtual byte stream over NATS (PROTOCOL.md §9.3). Each side has an inbox subject it
 * subscribes to; the other side publishes to it. Every message is
 *
 *   type (1 byte) || seq (uint32, big-endian) || payload
 *
 * type 1 DATA (payload: the next bytes of the stream), 2 FIN (no more bytes from this
 * side), 3 RST (the stream is over; payload: a UTF-8 reason), 4 PROBE (a liveness
 * request, sent with a reply subject and answered with an empty message; its seq is 0
 * and counts for nothing). DATA, FIN and RST are numbered 0, 1, 2... per direction: a
 * gap or a repeat means NATS lost or reordered a message, and the stream is declared
 * LOST at once, since a byte stream with a hole in it cannot be resumed.
 */
export const STREAM_DATA = 1
export const STREAM_FIN = 2
export const STREAM_RST = 3
export const STREAM_PROBE = 4
export const STREAM_HEADER_BYTES = 5
/**
 * Most bytes a stream holds that its reader has not taken. A reader that is paused (a
 * handshake reads one message at a time) while the other side keeps sending is a peer
 * flooding it: the stream is closed rather than buffering without end.
 */
export const MAX_UNREAD_BYTES = 64 * 1024 * 1024

/** A message a peer sent that the stream dropped or died of, for the node's log. */
export interface StreamDrop { subject: string, reason: string, detail: string }

export interface NatsStreamOptions {
  nc: NatsConnection
  /** Where this side reads: its own inbox, subscribed by the constructor. */
  inbox: string
  /** Largest NATS payload the server takes (its max_payload): DATA messages are cut to fit. */
  maxPayload: number
  /**
   * Probe the peer's inbox this often (default 500 ms). When NATS answers "no responders",
   * the peer's subscription is gone (its process died or closed the stream) and the stream
   * ends with LOST, so a waiting request learns it within about this long.
   */
  probeMs?: number
  /** How each dropped or fatal message is reported. */
  onDrop?: (drop: StreamDrop) => void
  /** What the peer is, for error messages ("node n1 via NATS"). */
  label: string
}

/**
 * The stream as a socket: FramedSocket, the handshake, ClientConnection and
 * ServerConnection run over it unchanged. `remoteAddress` is "nats", which is not
 * loopback, so plain connections over NATS always carry frame integrity (§2.4).
 */
export class NatsStream extends Duplex {
  readonly remoteAddress = 'nats'
  readonly remotePort = 0
  readonly inbox: string
  readonly #opts: NatsStreamOptions
  readonly #sub: Subscription
  readonly #maxData: number
  #peer: string | undefined
  #sendSeq = 0
  #recvSeq = 0
  #probe: NodeJS.Timeout | undefined
  #probing = false
  #finished = false

  constructor (opts: NatsStreamOptions) {
    // As a TCP socket by default: the end of one direction ends the other (FIN answers FIN).
    super({ allowHalfOpen: false })
    this.#opts = opts
    this.inbox = opts.inbox
    this.#maxData = Math.max(64, opts.maxPayload - STREAM_HEADER_BYTES)
    this.#sub = opts.nc.subscribe(opts.inbox, { callback: (err, msg) => { if (err === null) this.#onMessage(msg) } })
  }

  /** Send to `peer` (the other side's inbox) from now on, and start probing it. */
  connectTo (peer: string): void {
    this.#peer = peer
    const ms = this.#opts.probeMs ?? 500
    if (ms > 0) {
      this.#probe = setInterval(() => this.#sendProbe(), ms)
      this.#probe.unref()
    }
  }

  get peerInbox (): string | undefined { return this.#peer }

  // Socket methods FramedSocket and the listener call; nothing to tune on NATS.
  setNoDelay (): this { return this }
  setKeepAlive (): this { return this }

  override _read (): void { /* push-based: messages arrive from the subscription */ }

  override _write (chunk: Buffer, _enc: BufferEncoding, cb: (err?: Error | null) => void): void {
    this.#sendData(chunk, cb)
  }

  override _writev (chunks: Array<{ chunk: Buffer }>, cb: (err?: Error | null) => void): void {
    this.#sendData(chunks.length === 1 ? chunks[0]!.chunk : Buffer.concat(chunks.map(c => c.chunk)), cb)
  }

  override _final (cb: (err?: Error | null) => void): void {
    try {
      this.#publish(STREAM_FIN, Buffer.alloc(0))
      this.#finished = true
      cb()
    } catch (err) { cb(err as Error) }
  }

  override _destroy (err: Error | null, cb: (err: Error | null) => void): void {
    if (this.#probe !== undefined) clearInterval(this.#probe)
    // Tell the peer at once, unless both directions already ended cleanly.
    if (!(this.#finished && this.readableEnded) && this.#peer !== undefined) {
      try { this.#publish(STREAM_RST, Buffer.from(err?.message.slice(0, 200) ?? 'closed', 'utf8')) } catch { /* NATS closed: the peer's probe notices */ }
    }
    try { this.#sub.unsubscribe() } catch { /* connection already closed */ }
    cb(err)
  }

  #sendData (data: Buffer, cb: (err?: Error | null) => void): void {
    try {
      for (let at = 0; at < data.length; at += this.#maxData) this.#publish(STREAM_DATA, data.subarray(at, at + this.#maxData))
      cb()
    } catch (err) {
      cb(new EvalMeshError('LOST', `cannot send to ${this.#opts.label} over NATS: ${(err as Error).message}`))
    }
  }

  #publish (type: number, payload: Buffer): void {
    if (this.#peer === undefined) throw new Error('the stream is not connected yet')
    const msg = Buffer.allocUnsafe(STREAM_HEADER_BYTES + payload.length)
    msg[0] = type
    msg.writeUInt32BE(this.#sendSeq, 1)
    this.#sendSeq = (this.#sendSeq + 1) >>> 0
    payload.copy(msg, STREAM_HEADER_BYTES)
    this.#opts.nc.publish(this.#peer, msg)
  }

  #sendProbe (): void {
    const peer = this.#peer
    if (peer === undefined || this.#probing || this.destroyed) return
    this.#probing = true
    const probe = Buffer.alloc(STREAM_HEADER_BYTES)
    probe[0] = STREAM_PROBE
    this.#opts.nc.request(peer, probe, { timeout: 2000 }).then(() => { this.#probing = false }, (err: { code?: string }) => {
      this.#probing = false
      // 503: no subscriber on the peer's inbox any more. A timeout is not fatal here: a
      // slow or partitioned peer is the heartbeat's business (ClientConnection).
      if (err.code === '503' && !this.destroyed) {
        this.destroy(new EvalMeshError('LOST', `${this.#opts.label} went away: its NATS inbox has no subscriber (the process stopped or closed the stream)`))
      }
    })
  }

  #drop (msg: Msg, reason: string, detail: string): void {
    this.#opts.onDrop?.({ subject: msg.subject, reason, detail })
  }

  #onMessage (msg: Msg): void {
    const data = msg.data
    if (data.length < STREAM_HEADER_BYTES) { this.#drop(msg, 'malformed', `a stream message of ${data.length} bytes is shorter than its header`); return }
    const type = data[0]
    if (type === STREAM_PROBE) {
      if (msg.reply !== undefined && msg.reply !== '') { try { msg.respond(new Uint8Array(0)) } catch { /* closing */ } }
      return
    }
    if (type !== STREAM_DATA && type !== STREAM_FIN && type !== STREAM_RST) { this.#drop(msg, 'malformed', `unknown stream message type ${type}`); return }
    if (this.destroyed || this.readableEnded) return
    const seq = Buffer.from(data.buffer, data.byteOffset, data.byteLength).readUInt32BE(1)
    if (seq !== this.#recvSeq) {
      const detail = `stream message ${seq} arrived when ${this.#recvSeq} was due: NATS lost or reordered a message`
      this.#drop(msg, 'sequence', detail)
      this.destroy(new EvalMeshError('LOST', `the NATS stream from ${this.#opts.label} broke: ${detail}`))
      return
    }
    this.#recvSeq = (this.#recvSeq + 1) >>> 0
    const payload = Buffer.from(data.buffer, data.byteOffset + STREAM_HEADER_BYTES, data.byteLength - STREAM_HEADER_BYTES)
    if (type === STREAM_DATA) {
      if (this.readableLength + payload.length > MAX_UNREAD_BYTES) {
        const detail = `more than ${MAX_UNREAD_BYTES} bytes sent that were not read yet`
        this.#drop(msg, 'oversize', detail)
        this.destroy(new EvalMeshError('LOST', `the NATS stream from ${this.#opts.label} was closed: ${detail}`))
        return
      }
      if (payload.length > 0) this.push(Buffer.from(payload))
    } else if (type === STREAM_FIN) {
      this.push(null)
    } else {
      this.destroy(new EvalMeshError('LOST', `${this.#opts.label} reset the NATS stream: ${payload.toString('utf8').slice(0, 200)}`))
    }
  }
}

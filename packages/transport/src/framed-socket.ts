import { EventEmitter } from 'node:events'
import type { Socket } from 'node:net'
import {
  DEFAULT_DECODE_LIMITS, EvalMeshError, FRAME_HEADER_BYTES, FrameDecoder, decodeValue, encodeFrame, toWireError,
  type DecodeLimits
} from '@evalmesh/protocol'
import { readFrame, wroteFrame } from './busy-poll.js'
import { FrameMac, TAG_BYTES } from './frame-integrity.js'

/**
 * A socket that speaks frames: it splits the byte stream into length-prefixed
 * frames, checks each against the decode limits, decodes it, and emits 'message'.
 * Outgoing frames written in one tick go out in one write (cork/uncork), which
 * matters when many replies finish together. After each such write the process
 * busy-polls until the answer comes (busy-poll.ts).
 *
 * Once the handshake has agreed on frame integrity (PROTOCOL.md §2.4), each direction
 * is switched on at its own frame boundary: every frame sent after `protectSending` and
 * every frame read after `protectReceiving` carries a 32-byte tag after its payload, and
 * a frame whose tag does not check closes the connection with INTEGRITY_FAILED. During
 * the handshake the socket is held to one message at a time (`holdEachMessage`), so
 * that a switch takes effect exactly at the frame after the one that decided it.
 *
 * Events: 'message' (value), 'close' (error | undefined).
 */
export class FramedSocket extends EventEmitter {
  readonly socket: Socket
  #decoder: FrameDecoder
  limits: DecodeLimits
  #corked = false
  #closed = false
  #closeError: EvalMeshError | undefined
  #sendMac: FrameMac | undefined
  #recvMac: FrameMac | undefined
  #holdEach = false
  #held = false
  /** Who is on the other end, for error messages (set once known). */
  peerLabel = 'the peer'

  constructor (socket: Socket, limits: DecodeLimits = DEFAULT_DECODE_LIMITS) {
    super()
    this.socket = socket
    this.limits = limits
    this.#decoder = new FrameDecoder(limits.maxFrameBytes)
    socket.setNoDelay(true)
    socket.on('data', (chunk: Buffer) => this.#onData(chunk))
    socket.on('error', (err) => { this.#closeError ??= new EvalMeshError('LOST', `connection error: ${err.message}`) })
    socket.on('close', () => {
      this.#closed = true
      this.emit('close', this.#closeError)
    })
  }

  get closed (): boolean { return this.#closed || this.socket.destroyed }

  /** Change the limits, e.g. from handshake size to full size once authenticated. */
  setLimits (limits: DecodeLimits): void {
    this.limits = limits
    this.#decoder.maxFrameBytes = limits.maxFrameBytes
  }

  /** Whether frames in both directions carry integrity tags. */
  get integrity (): boolean { return this.#sendMac !== undefined && this.#recvMac !== undefined }

  /** Every frame sent from now on carries a tag under `key`. */
  protectSending (key: Buffer): void { this.#sendMac = new FrameMac(key) }

  /** Every frame read from now on must carry a tag under `key`. */
  protectReceiving (key: Buffer): void {
    this.#recvMac = new FrameMac(key)
    this.#decoder.trailerBytes = TAG_BYTES
  }

  /**
   * While on, the socket emits one message and then holds the rest until `release()`:
   * the handshake reads its messages this way, so whatever follows a message is read
   * the way that message decided.
   */
  holdEachMessage (on: boolean): void {
    this.#holdEach = on
    if (!on) this.release()
  }

  /** Go on reading after a held message. */
  release (): void {
    if (!this.#held) return
    this.#held = false
    this.socket.resume()
    this.#drain()
  }

  send (message: unknown): void {
    if (this.closed) return
    const frame = encodeFrame(message)
    if (!this.#corked) {
      this.#corked = true
      this.socket.cork()
      process.nextTick(() => { this.#corked = false; this.socket.uncork(); wroteFrame() })
    }
    this.socket.write(frame)
    if (this.#sendMac !== undefined) this.socket.write(this.#sendMac.tag(frame))
  }

  /** Send a fatal error frame, then close. The peer learns why before the close. */
  fail (err: unknown): void {
    if (this.closed) return
    const wire = toWireError(err, 'BAD_MESSAGE')
    this.#closeError = err instanceof EvalMeshError ? err : new EvalMeshError('BAD_MESSAGE', wire.message)
    try { this.send({ kind: 'error', error: wire }) } catch { /* encoding our own error cannot fail in practice */ }
    this.socket.end()
    // A peer that never reads must not hold the socket open forever.
    setTimeout(() => this.socket.destroy(), 2000).unref()
  }

  close (): void {
    if (this.closed) return
    this.socket.end()
    setTimeout(() => this.socket.destroy(), 2000).unref()
  }

  destroy (err?: EvalMeshError): void {
    if (err !== undefined) this.#closeError ??= err
    this.socket.destroy()
  }

  #onData (chunk: Buffer): void {
    if (this.#closed) return
    readFrame()
    this.#decoder.append(chunk)
    if (!this.#held) this.#drain()
  }

  #drain (): void {
    while (!this.#held && !this.socket.destroyed && !this.#closed) {
      let frame: Buffer | undefined
      try {
        frame = this.#decoder.next()
      } catch (err) {
        this.socket.pause()
        this.fail(err)
        return
      }
      if (frame === undefined) return
      let value: unknown
      try {
        value = decodeValue(this.#verified(frame), this.limits)
      } catch (err) {
        this.socket.pause()
        this.fail(err)
        return
      }
      if (this.#holdEach) {
        this.#held = true
        this.socket.pause()
      }
      this.emit('message', value)
    }
  }

  /** The payload of a frame read from the socket, its tag checked when frames carry one. */
  #verified (frame: Buffer): Buffer {
    const mac = this.#recvMac
    if (mac === undefined) return frame
    const payload = frame.subarray(0, frame.length - TAG_BYTES)
    const header = Buffer.allocUnsafe(FRAME_HEADER_BYTES)
    header.writeUInt32BE(payload.length, 0)
    const seq = mac.seq
    if (!mac.check(frame.subarray(payload.length), header, payload)) {
      throw new EvalMeshError('INTEGRITY_FAILED', `frame ${seq} from ${this.peerLabel} failed its integrity check: ` +
        'it was altered, injected, replayed or reordered on the way, so the connection is closed')
    }
    return payload
  }
}

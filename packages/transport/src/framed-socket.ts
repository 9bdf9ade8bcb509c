import { EventEmitter } from 'node:events'
import type { Socket } from 'node:net'
import {
  DEFAULT_DECODE_LIMITS, EvalMeshError, FrameDecoder, decodeValue, encodeFrame, toWireError,
  type DecodeLimits
} from '@evalmesh/protocol'

/**
 * A socket that speaks frames: it splits the byte stream into length-prefixed
 * frames, checks each against the decode limits, decodes it, and emits 'message'.
 * Outgoing frames written in one tick go out in one write (cork/uncork), which
 * matters when many replies finish together.
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

  send (message: unknown): void {
    if (this.closed) return
    const frame = encodeFrame(message)
    if (!this.#corked) {
      this.#corked = true
      this.socket.cork()
      process.nextTick(() => { this.#corked = false; this.socket.uncork() })
    }
    this.socket.write(frame)
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
    let frames: Buffer[]
    try {
      frames = this.#decoder.push(chunk)
    } catch (err) {
      this.socket.pause()
      this.fail(err)
      return
    }
    for (const frame of frames) {
      if (this.socket.destroyed) return
      let value: unknown
      try {
        value = decodeValue(frame, this.limits)
      } catch (err) {
        this.socket.pause()
        this.fail(err)
        return
      }
      this.emit('message', value)
    }
  }
}

import { DEFAULT_DECODE_LIMITS, FRAME_HEADER_BYTES } from './constants.js'
import { encodeMessage } from './codec.js'
import { EvalMeshError } from './errors.js'

/**
 * Encode one message as a frame: 4-byte big-endian payload length, then the CBOR payload.
 * Throws EvalMeshError (RESULT_UNENCODABLE, NOT_CLONEABLE) rather than produce a frame a
 * receiver would refuse (PROTOCOL.md §1.2): the caller can answer that request with the
 * error while the connection carries on.
 */
export function encodeFrame (message: unknown): Buffer {
  const payload = encodeMessage(message)
  const frame = Buffer.allocUnsafe(FRAME_HEADER_BYTES + payload.length)
  frame.writeUInt32BE(payload.length, 0)
  frame.set(payload, FRAME_HEADER_BYTES)
  return frame
}

/**
 * Incremental frame splitter for a byte stream: `push(chunk)` returns the complete
 * payloads it now holds, in order; `append(chunk)` then `next()` takes them one at a
 * time, for a reader that changes how the following frames are read (frame integrity,
 * PROTOCOL.md §2.4). An oversized or zero length prefix throws FRAME_TOO_LARGE /
 * MALFORMED_FRAME as soon as the 4 header bytes arrive, before any payload is buffered.
 */
export class FrameDecoder {
  #chunks: Buffer[] = []
  #buffered = 0
  #need = -1 // payload length of the frame being read, or -1 while reading its header
  maxFrameBytes: number
  /**
   * Bytes that follow each payload outside its length (a frame's integrity tag); `next()`
   * returns them with the payload, at its end. Change it only between frames.
   */
  trailerBytes = 0

  constructor (maxFrameBytes: number = DEFAULT_DECODE_LIMITS.maxFrameBytes) {
    this.maxFrameBytes = maxFrameBytes
  }

  /** Bytes received but not yet returned as a frame. */
  get buffered (): number { return this.#buffered }

  push (chunk: Buffer): Buffer[] {
    this.append(chunk)
    const out: Buffer[] = []
    for (let frame = this.next(); frame !== undefined; frame = this.next()) out.push(frame)
    return out
  }

  append (chunk: Buffer): void {
    if (chunk.length > 0) {
      this.#chunks.push(chunk)
      this.#buffered += chunk.length
    }
  }

  /** The next complete payload (and its trailer), or undefined until more bytes arrive. */
  next (): Buffer | undefined {
    if (this.#need < 0) {
      if (this.#buffered < FRAME_HEADER_BYTES) return undefined
      const length = this.#take(FRAME_HEADER_BYTES).readUInt32BE(0)
      if (length === 0) throw new EvalMeshError('MALFORMED_FRAME', 'frame with a zero length prefix')
      if (length > this.maxFrameBytes) {
        throw new EvalMeshError('FRAME_TOO_LARGE', `frame of ${length} bytes exceeds the limit of ${this.maxFrameBytes}`)
      }
      this.#need = length
    }
    const total = this.#need + this.trailerBytes
    if (this.#buffered < total) return undefined
    this.#need = -1
    return this.#take(total)
  }

  #take (n: number): Buffer {
    const first = this.#chunks[0]!
    let result: Buffer
    if (first.length >= n) {
      result = first.subarray(0, n)
      if (first.length === n) this.#chunks.shift()
      else this.#chunks[0] = first.subarray(n)
    } else {
      result = Buffer.allocUnsafe(n)
      let filled = 0
      while (filled < n) {
        const c = this.#chunks[0]!
        const part = Math.min(c.length, n - filled)
        c.copy(result, filled, 0, part)
        filled += part
        if (part === c.length) this.#chunks.shift()
        else this.#chunks[0] = c.subarray(part)
      }
    }
    this.#buffered -= n
    return result
  }
}

import { ALLOWED_TAGS, MAX_BIGNUM_BYTES, type DecodeLimits } from './constants.js'
import { EvalMeshError } from './errors.js'

/**
 * A span of the frame the decoder cannot read as it is, to be rewritten before
 * decoding (codec.ts), in order of `at`; spans never overlap.
 * - `wide-integer`: an 8-byte integer (`1b`/`3b`, 9 bytes at `at`) beyond ±(2^53 - 1),
 *   which a Number cannot hold exactly: the codec makes it a bignum, decoded as BigInt.
 * - `indefinite-string`: an indefinite-length byte or text string (RFC 8949 §3.2.3),
 *   `length` bytes at `at`, made of the definite `chunks` [offset, length]: cbor-x
 *   cannot read these, so the codec joins the chunks into one definite string.
 */
export type Rewrite =
  | { kind: 'wide-integer', at: number, length: 9 }
  | { kind: 'indefinite-string', at: number, length: number, major: 2 | 3, chunks: Array<[number, number]> }

/** What the scan learned that the decoder needs. */
export interface ScanResult {
  rewrites: Rewrite[]
}

/**
 * Walk the CBOR item headers of `buf` without building any values, and refuse the
 * frame if it breaks a limit: nesting depth, string length, item count, a tag
 * outside the allowed set, a declared length past the end, trailing bytes, or a
 * reserved header. This costs one pass over the headers (strings are skipped, not
 * read), so a hostile frame is refused before the decoder spends work on it.
 */
export function scanCbor (buf: Uint8Array, limits: DecodeLimits): ScanResult {
  // Each stack entry counts the items still expected in an open array/map/tag;
  // -1 marks an indefinite-length container that ends at a break byte (0xff).
  const stack: number[] = []
  let pos = 0
  let items = 0
  let topLevelSeen = false
  const end = buf.length
  const rewrites: Rewrite[] = []

  const malformed = (why: string): never => { throw new EvalMeshError('MALFORMED_FRAME', `malformed CBOR at byte ${pos}: ${why}`) }

  const readLength = (ai: number): number => {
    if (ai < 24) return ai
    const size = ai === 24 ? 1 : ai === 25 ? 2 : ai === 26 ? 4 : ai === 27 ? 8 : 0
    if (size === 0) malformed(`reserved additional information ${ai}`)
    if (pos + size > end) malformed('header runs past the end of the frame')
    let n = 0
    for (let i = 0; i < size; i++) n = n * 256 + buf[pos + i]! // exact up to 2^53; larger is refused below
    pos += size
    return n
  }

  // A bignum must be one definite byte string of at most MAX_BIGNUM_BYTES: checked from
  // its header, before the decoder turns it into a BigInt.
  const checkBignum = (tag: number): void => {
    const at = pos
    const head = pos < end ? buf[pos++]! : -1
    if (head >> 5 !== 2 || (head & 31) === 31) malformed(`tag ${tag} (bignum) must hold a definite-length byte string`)
    const len = readLength(head & 31)
    pos = at
    if (len > MAX_BIGNUM_BYTES) {
      throw new EvalMeshError('BAD_MESSAGE', `bignum (tag ${tag}) of ${len} bytes exceeds the limit of ${MAX_BIGNUM_BYTES} bytes (PROTOCOL.md §1.2)`, { limit: 'maxBignumBytes' })
    }
  }

  while (true) {
    if (stack.length === 0) {
      if (topLevelSeen) break
      topLevelSeen = true
    } else {
      const top = stack[stack.length - 1]!
      if (top === 0) { stack.pop(); continue }
    }
    if (pos >= end) malformed('frame ends inside an item')
    const initial = buf[pos++]!
    const major = initial >> 5
    const ai = initial & 31

    // A break byte closes the innermost indefinite-length container.
    if (initial === 0xff) {
      if (stack.length === 0 || stack[stack.length - 1] !== -1) malformed('unexpected break byte')
      stack.pop()
      continue
    }
    if (stack.length > 0 && stack[stack.length - 1]! > 0) stack[stack.length - 1]!--
    if (++items > limits.maxItems) throw new EvalMeshError('ITEM_LIMIT', `frame holds more than ${limits.maxItems} data items`)

    switch (major) {
      case 0: case 1: {
        if (ai === 31) malformed('indefinite integer')
        const n = readLength(ai)
        // n is exact below 2^53 and rounds upwards from there, so these compare exactly:
        // the value is n for major 0 and -1 - n for major 1.
        if (ai === 27 && (major === 0 ? n > Number.MAX_SAFE_INTEGER : n >= Number.MAX_SAFE_INTEGER)) rewrites.push({ kind: 'wide-integer', at: pos - 9, length: 9 })
        break
      }
      case 2: case 3: {
        if (ai === 31) {
          // Indefinite string: a sequence of definite chunks of the same major type.
          const at = pos - 1
          const chunks: Array<[number, number]> = []
          let total = 0
          while (true) {
            if (pos >= end) malformed('unterminated indefinite string')
            if (buf[pos] === 0xff) { pos++; break }
            const chunk = buf[pos++]!
            if (chunk >> 5 !== major || (chunk & 31) === 31) malformed('bad chunk in indefinite string')
            const len = readLength(chunk & 31)
            total += len
            if (total > limits.maxStringBytes) throw new EvalMeshError('STRING_LIMIT', `string of more than ${limits.maxStringBytes} bytes`)
            if (pos + len > end) malformed('string runs past the end of the frame')
            chunks.push([pos, len])
            pos += len
          }
          rewrites.push({ kind: 'indefinite-string', at, length: pos - at, major, chunks })
          break
        }
        const len = readLength(ai)
        if (len > limits.maxStringBytes) throw new EvalMeshError('STRING_LIMIT', `string of ${len} bytes exceeds the limit of ${limits.maxStringBytes}`)
        if (pos + len > end) malformed('string runs past the end of the frame')
        pos += len
        break
      }
      case 4: case 5: {
        const perEntry = major === 5 ? 2 : 1
        if (ai === 31) {
          stack.push(-1)
        } else {
          const n = readLength(ai)
          // Every item needs at least one byte: refuse impossible counts at once.
          if (n * perEntry > end - pos) malformed(`declares ${n} entries but the frame is too short`)
          if (n > 0) stack.push(n * perEntry)
        }
        if (stack.length > limits.maxDepth) throw new EvalMeshError('DEPTH_LIMIT', `frame nests deeper than ${limits.maxDepth}`)
        break
      }
      case 6: {
        if (ai === 31) malformed('indefinite tag')
        const tag = readLength(ai)
        if (!ALLOWED_TAGS.has(tag)) throw new EvalMeshError('TAG_NOT_ALLOWED', `CBOR tag ${tag} is not allowed`)
        if (tag === 2 || tag === 3) checkBignum(tag)
        stack.push(1)
        if (stack.length > limits.maxDepth) throw new EvalMeshError('DEPTH_LIMIT', `frame nests deeper than ${limits.maxDepth}`)
        break
      }
      case 7:
        if (ai === 31) malformed('unexpected break byte')
        if (ai >= 28) malformed(`reserved simple value ${ai}`)
        if (ai >= 24) readLength(ai)
        break
    }
  }
  if (pos !== end) malformed(`${end - pos} trailing bytes after the message`)
  return { rewrites }
}

import { Decoder, Encoder, Tag, addExtension } from 'cbor-x'
import { ALLOWED_TAGS, DEFAULT_DECODE_LIMITS, MAX_BIGNUM_BYTES, RESULT_ENVELOPE_DEPTH, type DecodeLimits } from './constants.js'
import { EvalMeshError } from './errors.js'
import { scanCbor, type Rewrite } from './scan.js'

/*
 * One codec for every frame and datagram. The options keep the output readable by
 * any standard CBOR decoder (PROTOCOL.md §1.3): no records, no bundled strings;
 * Map as tag 259, Set as tag 258, typed arrays as RFC 8746 tags, Date as tag 1,
 * undefined as simple value 23. Values cbor-x would write in its own dialect (Error
 * and RegExp as tag 27, an Invalid Date as tag 1 holding NaN, BigInt by a quadratic
 * loop) are rewritten by `toWire` before cbor-x sees them.
 */
const options = {
  useRecords: false,
  mapsAsObjects: true,
  useTag259ForMaps: true,
  tagUint8Array: true,
  bundleStrings: false,
  pack: false,
  structuredClone: false,
  // A CBOR integer is a Number. The few beyond ±(2^53 - 1), which a Number cannot hold
  // exactly, are turned into bignums by the scan (see decodeValue) and come back as BigInt.
  int64AsNumber: true,
  // Decoded byte strings must not alias the frame buffer, which is reused.
  copyBuffers: true
} as const

const encoder = new Encoder(options as ConstructorParameters<typeof Encoder>[0])
const decoder = new Decoder(options as ConstructorParameters<typeof Decoder>[0])

// cbor-x builds a bignum one byte at a time with a shift, which is quadratic: a 128 KiB
// one took 2 s. Hex conversion of a BigInt is linear in V8. (This registers the
// decoders for the whole process; this package is the only user of cbor-x.)
addExtension({ tag: 2, decode: (bytes: unknown) => bignumOf(bytes) } as Parameters<typeof addExtension>[0])
addExtension({ tag: 3, decode: (bytes: unknown) => -1n - bignumOf(bytes) } as Parameters<typeof addExtension>[0])

function bignumOf (bytes: unknown): bigint {
  if (!(bytes instanceof Uint8Array)) throw new Error('a bignum tag must hold a byte string')
  if (bytes.length === 0) return 0n
  return BigInt('0x' + Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('hex'))
}

function bignumBytes (n: bigint): Buffer {
  const hex = n.toString(16)
  return Buffer.from(hex.length % 2 === 0 ? hex : '0' + hex, 'hex')
}

/** 2^(8 × MAX_BIGNUM_BYTES): the magnitude no BigInt on the wire may reach. */
const BIGNUM_CEILING = 1n << BigInt(8 * MAX_BIGNUM_BYTES)

/**
 * Deepest JavaScript nesting encodeValue follows. Any receiver refuses a frame deeper
 * than its maxDepth (64 by default) anyway; this only turns a runaway (or cyclic)
 * value into a clear error instead of a stack overflow.
 */
const ENCODE_DEPTH_CAP = 1000

/** The reason toWire gives for nesting; encodeWithin replaces it with the limit in numbers. */
const TOO_DEEP = 'too deep'

/** Thrown inside the walk; `path` grows as it unwinds, so the message can say where. */
class WalkError extends Error {
  constructor (readonly code: 'NOT_CLONEABLE' | 'RESULT_UNENCODABLE', readonly why: string, readonly path: string[] = []) {
    super(why)
  }
}

/**
 * Encode one value as CBOR in the §1.3 profile. Throws EvalMeshError: NOT_CLONEABLE
 * for a value CBOR cannot carry (a function, a symbol), RESULT_UNENCODABLE for one
 * that breaks a wire limit (a BigInt over MAX_BIGNUM_BYTES, runaway nesting).
 */
export function encodeValue (value: unknown): Uint8Array {
  return encodeWithin(value, ENCODE_DEPTH_CAP, 'value')
}

function encodeWithin (value: unknown, maxDepth: number, what: string, depthNote = ''): Uint8Array {
  let wire: unknown
  try {
    wire = toWire(value, maxDepth)
  } catch (err) {
    if (err instanceof WalkError) {
      const path = shortPath(err.path)
      const at = path !== '' ? ` at ${what}${path}` : ''
      const why = err.why === TOO_DEEP ? `it nests deeper than ${maxDepth} levels${depthNote}` : err.why
      throw new EvalMeshError(err.code, `${what} cannot be encoded${at}: ${why}`, { path })
    }
    if (err instanceof RangeError) throw new EvalMeshError('RESULT_UNENCODABLE', `${what} cannot be encoded: it nests too deeply (${err.message})`)
    throw err
  }
  try {
    return encoder.encode(wire)
  } catch (err) {
    throw new EvalMeshError('NOT_CLONEABLE', `${what} cannot be encoded: ${(err as Error).message}`)
  }
}

/**
 * Rewrite the parts of `value` that cbor-x would not write in the §1.3 profile.
 * Copy on write: containers are copied only on the path to something rewritten, so
 * plain data costs one read-only walk.
 *
 * - BigInt: tag 2/3 with its magnitude in big-endian bytes, always, so that a BigInt
 *   stays a BigInt (a plain integer decodes as a Number); over MAX_BIGNUM_BYTES refused.
 * - A Number that is an integer beyond 32 bits (epoch ms, large ids): written as a CBOR
 *   integer (8 bytes) rather than cbor-x's float64, so strict decoders see a uint.
 * - Error: `{"$error": {name, message}}` (no stack: it may hold host paths).
 * - RegExp: its text, "/source/flags".
 * - Invalid Date: null. Boxed primitives: their primitive value.
 */
function toWire (v: unknown, depthLeft: number): unknown {
  switch (typeof v) {
    case 'bigint': return bigintToWire(v)
    case 'number': return wideInteger(v) ? BigInt(v) : v
    case 'function': throw new WalkError('NOT_CLONEABLE', 'a function cannot be encoded; return plain data')
    case 'symbol': throw new WalkError('NOT_CLONEABLE', 'a symbol cannot be encoded; return plain data')
    case 'object': break
    default: return v
  }
  if (v === null) return v
  if (depthLeft <= 0) throw new WalkError('RESULT_UNENCODABLE', TOO_DEEP)
  if (Array.isArray(v)) return arrayToWire(v, depthLeft - 1)
  if (v instanceof Uint8Array || ArrayBuffer.isView(v) || v instanceof ArrayBuffer) return v
  if (v instanceof Map) return mapToWire(v, depthLeft - 1)
  if (v instanceof Set) {
    const items = [...v]
    const out = arrayToWire(items, depthLeft - 1)
    return out === items ? v : new Set(out as unknown[])
  }
  if (v instanceof Date) return Number.isNaN(v.getTime()) ? null : v
  if (v instanceof Error) return { $error: { name: String(v.name), message: String(v.message) } }
  if (v instanceof RegExp) return String(v)
  if (v instanceof Number || v instanceof String || v instanceof Boolean) return toWire(v.valueOf(), depthLeft)
  if (v instanceof Tag) {
    if (!ALLOWED_TAGS.has(v.tag)) throw new WalkError('NOT_CLONEABLE', `CBOR tag ${v.tag} is outside the allowed set (PROTOCOL.md §1.3)`)
    return v
  }
  if (typeof (v as { [Symbol.iterator]?: unknown })[Symbol.iterator] === 'function') {
    // cbor-x writes any other iterable as an array; make that explicit, and walk it.
    return arrayToWire([...(v as Iterable<unknown>)], depthLeft - 1)
  }
  return objectToWire(v as Record<string, unknown>, depthLeft - 1)
}

/** True for a safe integer that cbor-x would write as float64 (outside 32 bits). */
function wideInteger (n: number): boolean {
  return (n > 0xffffffff || n < -0x100000000) && Number.isSafeInteger(n)
}

function bigintToWire (n: bigint): Tag {
  // The magnitude on the wire is n for tag 2 and -1 - n for tag 3 (as the decoder bounds it).
  if (n >= BIGNUM_CEILING || n < -BIGNUM_CEILING) {
    throw new WalkError('RESULT_UNENCODABLE', `a BigInt of more than ${8 * MAX_BIGNUM_BYTES} bits exceeds the bignum limit of ${MAX_BIGNUM_BYTES} bytes (PROTOCOL.md §1.3); send it as text (n.toString())`)
  }
  return n >= 0n ? new Tag(bignumBytes(n), 2) : new Tag(bignumBytes(-1n - n), 3)
}

/** Whether an element needs the walk at all: primitives other than these pass as they are. */
function needsWalk (x: unknown): boolean {
  const t = typeof x
  return t === 'object' ? x !== null : t === 'bigint' || t === 'function' || t === 'symbol' || (t === 'number' && wideInteger(x as number))
}

function arrayToWire (a: unknown[], depthLeft: number): unknown[] {
  let out: unknown[] | undefined
  let i = 0
  try {
    for (; i < a.length; i++) {
      const x = a[i]
      if (!needsWalk(x)) continue
      const y = toWire(x, depthLeft)
      if (y !== x) (out ??= a.slice())[i] = y
    }
  } catch (err) {
    throw within(err, `[${i}]`)
  }
  return out ?? a
}

function objectToWire (o: Record<string, unknown>, depthLeft: number): Record<string, unknown> {
  let out: Record<string, unknown> | undefined
  let key = ''
  try {
    for (key in o) {
      if (!Object.hasOwn(o, key)) continue
      const x = o[key]
      if (!needsWalk(x)) continue
      const y = toWire(x, depthLeft)
      if (y !== x) (out ??= { ...o })[key] = y
    }
  } catch (err) {
    throw within(err, /^[A-Za-z_$][\w$]*$/.test(key) ? `.${key}` : `[${JSON.stringify(key)}]`)
  }
  return out ?? o
}

function mapToWire (m: Map<unknown, unknown>, depthLeft: number): Map<unknown, unknown> {
  let changed = false
  const entries: Array<[unknown, unknown]> = []
  let at = 0
  try {
    for (const [k, x] of m) {
      const k2 = needsWalk(k) ? toWire(k, depthLeft) : k
      const y = needsWalk(x) ? toWire(x, depthLeft) : x
      if (k2 !== k || y !== x) changed = true
      entries.push([k2, y])
      at++
    }
  } catch (err) {
    throw within(err, `<Map entry ${at}>`)
  }
  return changed ? new Map(entries) : m
}

/** A path for a message: a deep one keeps its ends, so that it stays readable. */
function shortPath (path: string[]): string {
  if (path.length <= 8) return path.join('')
  return `${path.slice(0, 4).join('')}...(${path.length - 7} more)...${path.slice(-3).join('')}`
}

function within (err: unknown, step: string): unknown {
  if (err instanceof WalkError) err.path.unshift(step)
  return err
}

/**
 * Decode one CBOR item after checking it against the limits. Throws
 * EvalMeshError (MALFORMED_FRAME, DEPTH_LIMIT, STRING_LIMIT, ITEM_LIMIT,
 * TAG_NOT_ALLOWED, FRAME_TOO_LARGE, BAD_MESSAGE for an oversized bignum) and never
 * anything else.
 */
export function decodeValue (buf: Uint8Array, limits: DecodeLimits = DEFAULT_DECODE_LIMITS): unknown {
  if (buf.length > limits.maxFrameBytes) {
    throw new EvalMeshError('FRAME_TOO_LARGE', `frame of ${buf.length} bytes exceeds the limit of ${limits.maxFrameBytes}`)
  }
  const { rewrites } = scanCbor(buf, limits)
  const input = rewrites.length === 0 ? buf : rewrite(buf, rewrites)
  try {
    return decoder.decode(input)
  } catch (err) {
    throw new EvalMeshError('MALFORMED_FRAME', `CBOR decode failed: ${(err as Error).message}`)
  }
}

/**
 * Rewrite the spans the scan found into equivalent CBOR that cbor-x reads as §1.3 says
 * (see Rewrite in scan.ts). Only frames that hold such spans pay for the copy.
 */
function rewrite (buf: Uint8Array, rewrites: readonly Rewrite[]): Buffer {
  const parts: Uint8Array[] = []
  let from = 0
  for (const r of rewrites) {
    parts.push(buf.subarray(from, r.at))
    if (r.kind === 'wide-integer') {
      // `1b`/`3b` + 8 bytes is the same value as bignum `c2`/`c3`, `48` + the same 8 bytes.
      parts.push(Buffer.from([buf[r.at] === 0x1b ? 0xc2 : 0xc3, 0x48]), buf.subarray(r.at + 1, r.at + 9))
    } else {
      const total = r.chunks.reduce((sum, [, len]) => sum + len, 0)
      parts.push(stringHeader(r.major, total), ...r.chunks.map(([at, len]) => buf.subarray(at, at + len)))
    }
    from = r.at + r.length
  }
  parts.push(buf.subarray(from))
  return Buffer.concat(parts)
}

/** The definite-length header of a byte (2) or text (3) string of `length` bytes. */
function stringHeader (major: 2 | 3, length: number): Buffer {
  const base = major << 5
  if (length < 24) return Buffer.from([base | length])
  const head = Buffer.alloc(5)
  head[0] = base | 26
  head.writeUInt32BE(length, 1)
  return head
}

/**
 * Encode an evaluation result for a reply, or throw the error that request must get
 * instead: the node calls this BEFORE sending, so that a result no receiver would take
 * fails its own request, not the connection (PROTOCOL.md §3.4).
 *
 * Checks what a receiver checks (§1.2), with the nesting the reply envelope adds
 * (reply map, outcome map) taken off `limits.maxDepth`. Throws EvalMeshError
 * RESULT_UNENCODABLE (too deep, bignum too large, too many items, string too long,
 * a tag outside §1.3) or NOT_CLONEABLE (a function or symbol), naming where.
 * Returns the encoded bytes: their length is the result's size for RESULT_LIMIT.
 */
export function encodeResultValue (value: unknown, limits: Partial<DecodeLimits> = {}): Uint8Array {
  const full = { ...DEFAULT_DECODE_LIMITS, ...limits }
  const maxDepth = full.maxDepth - RESULT_ENVELOPE_DEPTH
  const envelope = ` (${full.maxDepth} less ${RESULT_ENVELOPE_DEPTH} for the reply envelope)`
  const bytes = encodeWithin(value, maxDepth, 'result', envelope)
  try {
    // The envelope also holds a few dozen items of its own (txn, node, output...).
    scanCbor(bytes, { ...full, maxDepth, maxItems: full.maxItems - 64, maxFrameBytes: Number.MAX_SAFE_INTEGER })
  } catch (err) {
    const e = err as EvalMeshError
    const why = e.code === 'DEPTH_LIMIT' ? `it nests deeper than ${maxDepth} levels${envelope}` : e.message
    throw new EvalMeshError('RESULT_UNENCODABLE', `result cannot be sent: ${why}`, { limit: e.code })
  }
  return bytes
}

/**
 * The non-throwing form of encodeResultValue: null when `value` can be sent as a
 * result, else the EvalMeshError (RESULT_UNENCODABLE or NOT_CLONEABLE) to reply with.
 */
export function checkEncodable (value: unknown, limits: Partial<DecodeLimits> = {}): EvalMeshError | null {
  try {
    encodeResultValue(value, limits)
    return null
  } catch (err) {
    if (err instanceof EvalMeshError) return err
    return new EvalMeshError('RESULT_UNENCODABLE', `result cannot be sent: ${(err as Error).message}`)
  }
}

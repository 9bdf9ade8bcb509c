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
 * What the walk counts as it goes, exactly as scanCbor will count the bytes: the open
 * containers and tags around the current value (`depth`) and the data items so far, so
 * that a value no receiver would take is refused before it is encoded at all.
 */
interface Walk {
  depth: number
  items: number
  readonly limits: DecodeLimits
  /** Strings shorter than this cannot exceed maxStringBytes in UTF-8 (3 bytes a unit). */
  readonly longString: number
  /** Whether BigInts are bounded by MAX_BIGNUM_BYTES (when encoding for the wire). */
  readonly boundBignums: boolean
}

/** No limits: encodeValue without `limits`, for measuring a value rather than sending it. */
const UNBOUNDED: DecodeLimits = Object.freeze({ maxFrameBytes: Infinity, maxDepth: Infinity, maxStringBytes: Infinity, maxItems: Infinity })

/** The reasons toWire gives for a limit; encodeWithin puts the limit in numbers. */
const TOO_DEEP = 'too deep'
const TOO_MANY = 'too many items'

/** Thrown inside the walk; `path` grows as it unwinds, so the message can say where. */
class WalkError extends Error {
  constructor (readonly code: 'NOT_CLONEABLE' | 'RESULT_UNENCODABLE', readonly why: string, readonly path: string[] = []) {
    super(why)
  }
}

/**
 * Encode one value as CBOR in the §1.3 profile. Throws EvalMeshError NOT_CLONEABLE for
 * a value CBOR cannot carry (a function, a symbol).
 *
 * With `limits`, also refuse what a receiver with those limits would refuse to decode
 * (§1.2), with RESULT_UNENCODABLE: nesting depth, item count, string length, frame
 * size, a BigInt over MAX_BIGNUM_BYTES. encodeFrame passes the default limits, so a
 * frame that would be refused, and close the connection, is never sent: the sender gets
 * the error instead. Without `limits` nothing is bounded (for measuring a value's size).
 */
export function encodeValue (value: unknown, limits?: DecodeLimits): Uint8Array {
  return encodeWithin(value, limits, 'value')
}

function encodeWithin (value: unknown, bounds: DecodeLimits | undefined, what: string, depthNote = ''): Uint8Array {
  const limits = bounds ?? UNBOUNDED
  const walk: Walk = { depth: 0, items: 0, limits, longString: Math.floor(limits.maxStringBytes / 3), boundBignums: bounds !== undefined }
  let wire: unknown
  try {
    wire = toWire(value, walk)
  } catch (err) {
    if (err instanceof WalkError) {
      const path = shortPath(err.path)
      const at = path !== '' ? ` at ${what}${path}` : ''
      const why = err.why === TOO_DEEP
        ? `it nests deeper than ${limits.maxDepth} levels${depthNote}, or refers to itself`
        : err.why === TOO_MANY ? `it holds more than ${limits.maxItems} data items` : err.why
      throw new EvalMeshError(err.code, `${what} cannot be encoded${at}: ${why}`, { path })
    }
    if (err instanceof RangeError) throw new EvalMeshError('NOT_CLONEABLE', `${what} cannot be encoded: ${err.message}`)
    throw err
  }
  let bytes: Uint8Array
  try {
    bytes = encoder.encode(wire)
  } catch (err) {
    throw new EvalMeshError('NOT_CLONEABLE', `${what} cannot be encoded: ${(err as Error).message}`)
  }
  if (bytes.length > limits.maxFrameBytes) {
    throw new EvalMeshError('RESULT_UNENCODABLE', `${what} cannot be sent: it encodes to ${bytes.length} bytes, over the frame limit of ${limits.maxFrameBytes}`)
  }
  return bytes
}

/** Encode a whole message for a frame, refusing what the receiver would refuse (see encodeValue). */
export function encodeMessage (message: unknown, limits: DecodeLimits = DEFAULT_DECODE_LIMITS): Uint8Array {
  return encodeWithin(message, limits, 'message')
}

/**
 * Rewrite the parts of `value` that cbor-x would not write in the §1.3 profile, and
 * count its nesting and items on the way. Copy on write: containers are copied only on
 * the path to something rewritten, so plain data costs one read-only walk.
 *
 * - BigInt: tag 2/3 with its magnitude in big-endian bytes, always, so that a BigInt
 *   stays a BigInt (a plain integer decodes as a Number); over MAX_BIGNUM_BYTES refused.
 * - A Number that is an integer beyond 32 bits (epoch ms, large ids): written as a CBOR
 *   integer (8 bytes) rather than cbor-x's float64, so strict decoders see a uint.
 * - Error: `{"$error": {name, message}}` (no stack: it may hold host paths).
 * - RegExp: its text, "/source/flags".
 * - Invalid Date: null. Boxed primitives: their primitive value.
 */
function toWire (v: unknown, w: Walk): unknown {
  count(w, 1)
  switch (typeof v) {
    case 'bigint': count(w, 1); within1(w); return bigintToWire(v, w.boundBignums)
    case 'number': return wideInteger(v) ? BigInt(v) : v
    case 'string': if (v.length >= w.longString) checkString(v, w); return v
    case 'function': throw new WalkError('NOT_CLONEABLE', 'a function cannot be encoded; return plain data')
    case 'symbol': throw new WalkError('NOT_CLONEABLE', 'a symbol cannot be encoded; return plain data')
    case 'object': break
    default: return v
  }
  if (v === null) return v
  if (Array.isArray(v)) return arrayToWire(v, w)
  if (ArrayBuffer.isView(v)) {
    // Typed arrays other than Buffer and DataView are an RFC 8746 tag around the bytes.
    if (!(v instanceof Buffer) && !(v instanceof DataView)) { count(w, 1); within1(w) }
    checkBytes(v.byteLength, w)
    return v
  }
  if (v instanceof ArrayBuffer) { checkBytes(v.byteLength, w); return v }
  if (v instanceof Map) return tagged(w, () => mapToWire(v, w))
  if (v instanceof Set) return tagged(w, () => setToWire(v, w))
  if (v instanceof Date) {
    if (Number.isNaN(v.getTime())) return null
    count(w, 1); within1(w)
    return v
  }
  if (v instanceof Error) {
    const plain = { $error: { name: String(v.name), message: String(v.message) } }
    w.items-- // counted again as the plain map
    return toWire(plain, w)
  }
  if (v instanceof RegExp) return String(v)
  if (v instanceof Number || v instanceof String || v instanceof Boolean) { w.items--; return toWire(v.valueOf(), w) }
  if (v instanceof Tag) {
    // Only code that imports cbor-x makes these; the tag must still be one §1.3 allows.
    if (!ALLOWED_TAGS.has(v.tag)) throw new WalkError('NOT_CLONEABLE', `CBOR tag ${v.tag} is outside the allowed set (PROTOCOL.md §1.3)`)
    const inner = v.value as unknown
    const out = nested(w, () => toWire(inner, w)) // the tag (counted above) around its value
    return out === inner ? v : new Tag(out, v.tag)
  }
  if (typeof (v as { [Symbol.iterator]?: unknown })[Symbol.iterator] === 'function') {
    // cbor-x writes any other iterable as an array; make that explicit, and walk it.
    return arrayToWire([...(v as Iterable<unknown>)], w)
  }
  return objectToWire(v as Record<string, unknown>, w)
}

function count (w: Walk, n: number): void {
  w.items += n
  if (w.items > w.limits.maxItems) throw new WalkError('RESULT_UNENCODABLE', TOO_MANY)
}

/** A tag or non-empty container opens one level around what follows. */
function within1 (w: Walk): void {
  if (w.depth + 1 > w.limits.maxDepth) throw new WalkError('RESULT_UNENCODABLE', TOO_DEEP)
}

/** Walk the inside of a container (or a tag) one level down. */
function nested<T> (w: Walk, inside: () => T): T {
  within1(w)
  w.depth++
  try { return inside() } finally { w.depth-- }
}

/** Map and Set: a tag (259, 258) holding the container. */
function tagged<T> (w: Walk, inside: () => T): T {
  count(w, 1)
  return nested(w, inside)
}

function setToWire (set: Set<unknown>, w: Walk): Set<unknown> {
  const items = [...set]
  const out = arrayToWire(items, w)
  return out === items ? set : new Set(out)
}

function checkString (s: string, w: Walk): void {
  const bytes = Buffer.byteLength(s, 'utf8')
  if (bytes > w.limits.maxStringBytes) throw new WalkError('RESULT_UNENCODABLE', `a string of ${bytes} bytes exceeds the limit of ${w.limits.maxStringBytes}`)
}

function checkBytes (n: number, w: Walk): void {
  if (n > w.limits.maxStringBytes) throw new WalkError('RESULT_UNENCODABLE', `a byte string of ${n} bytes exceeds the limit of ${w.limits.maxStringBytes}`)
}

/** True for a safe integer that cbor-x would write as float64 (outside 32 bits). */
function wideInteger (n: number): boolean {
  return (n > 0xffffffff || n < -0x100000000) && Number.isSafeInteger(n)
}

function bigintToWire (n: bigint, bounded: boolean): Tag {
  // The magnitude on the wire is n for tag 2 and -1 - n for tag 3 (as the decoder bounds it).
  if (bounded && (n >= BIGNUM_CEILING || n < -BIGNUM_CEILING)) {
    throw new WalkError('RESULT_UNENCODABLE', `a BigInt of more than ${8 * MAX_BIGNUM_BYTES} bits exceeds the bignum limit of ${MAX_BIGNUM_BYTES} bytes (PROTOCOL.md §1.3); send it as text (n.toString())`)
  }
  return n >= 0n ? new Tag(bignumBytes(n), 2) : new Tag(bignumBytes(-1n - n), 3)
}

/** Whether an element needs the walk beyond being counted: most primitives do not. */
function needsWalk (x: unknown, w: Walk): boolean {
  const t = typeof x
  return t === 'object'
    ? x !== null
    : t === 'bigint' || t === 'function' || t === 'symbol' || (t === 'number' && wideInteger(x as number)) || (t === 'string' && (x as string).length >= w.longString)
}

function arrayToWire (a: unknown[], w: Walk): unknown[] {
  if (a.length === 0) return a
  within1(w)
  w.depth++
  let out: unknown[] | undefined
  let i = 0
  try {
    for (; i < a.length; i++) {
      const x = a[i]
      if (!needsWalk(x, w)) { count(w, 1); continue }
      const y = toWire(x, w)
      if (y !== x) (out ??= a.slice())[i] = y
    }
  } catch (err) {
    throw within(err, `[${i}]`)
  } finally {
    w.depth--
  }
  return out ?? a
}

function objectToWire (o: Record<string, unknown>, w: Walk): Record<string, unknown> {
  let out: Record<string, unknown> | undefined
  let key = ''
  let opened = false
  try {
    for (key in o) {
      if (!Object.hasOwn(o, key)) continue
      // The first own key opens the map (an empty map opens no level).
      if (!opened) { within1(w); w.depth++; opened = true }
      if (key.length >= w.longString) checkString(key, w)
      const x = o[key]
      if (!needsWalk(x, w)) { count(w, 2); continue }
      count(w, 1)
      const y = toWire(x, w)
      if (y !== x) (out ??= { ...o })[key] = y
    }
  } catch (err) {
    throw within(err, /^[A-Za-z_$][\w$]*$/.test(key) ? `.${key}` : `[${JSON.stringify(key).slice(0, 40)}]`)
  } finally {
    if (opened) w.depth--
  }
  return out ?? o
}

function mapToWire (m: Map<unknown, unknown>, w: Walk): Map<unknown, unknown> {
  if (m.size === 0) return m
  within1(w)
  w.depth++
  let changed = false
  const entries: Array<[unknown, unknown]> = []
  let at = 0
  try {
    for (const [k, x] of m) {
      const k2 = toWire(k, w)
      const y = toWire(x, w)
      if (k2 !== k || y !== x) changed = true
      entries.push([k2, y])
      at++
    }
  } catch (err) {
    throw within(err, `<Map entry ${at}>`)
  } finally {
    w.depth--
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
  const inner: DecodeLimits = {
    ...full,
    maxDepth: full.maxDepth - RESULT_ENVELOPE_DEPTH,
    // The envelope also holds a few dozen items and bytes of its own (txn, node, output...).
    maxItems: full.maxItems - 64,
    maxFrameBytes: full.maxFrameBytes - 1024
  }
  const envelope = ` (${full.maxDepth} less ${RESULT_ENVELOPE_DEPTH} for the reply envelope)`
  const bytes = encodeWithin(value, inner, 'result', envelope)
  try {
    // The walk counted as the receiver will; reading the bytes as it will is the proof.
    scanCbor(bytes, inner)
  } catch (err) {
    const e = err as EvalMeshError
    const why = e.code === 'DEPTH_LIMIT' ? `it nests deeper than ${inner.maxDepth} levels${envelope}` : e.message
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

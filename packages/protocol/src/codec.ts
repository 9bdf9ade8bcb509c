import { Decoder, Encoder } from 'cbor-x'
import { DEFAULT_DECODE_LIMITS, type DecodeLimits } from './constants.js'
import { EvalMeshError } from './errors.js'
import { scanCbor } from './scan.js'

/*
 * One codec for every frame and datagram. The options keep the output readable by
 * any standard CBOR decoder (PROTOCOL.md §1.3): no records, no bundled strings;
 * Map as tag 259, Set as tag 258, typed arrays as RFC 8746 tags, Date as tag 1,
 * big integers as tags 2/3, undefined as simple value 23.
 */
const options = {
  useRecords: false,
  mapsAsObjects: true,
  useTag259ForMaps: true,
  tagUint8Array: true,
  bundleStrings: false,
  pack: false,
  structuredClone: false,
  // Integers beyond 2^53 come back as BigInt rather than losing precision.
  int64AsNumber: false,
  // Decoded byte strings must not alias the frame buffer, which is reused.
  copyBuffers: true
} as const

const encoder = new Encoder(options as ConstructorParameters<typeof Encoder>[0])
const decoder = new Decoder(options as ConstructorParameters<typeof Decoder>[0])

export function encodeValue (value: unknown): Uint8Array {
  try {
    return encoder.encode(value)
  } catch (err) {
    throw new EvalMeshError('NOT_CLONEABLE', `value cannot be encoded: ${(err as Error).message}`)
  }
}

/**
 * Decode one CBOR item after checking it against the limits. Throws
 * EvalMeshError (MALFORMED_FRAME, DEPTH_LIMIT, STRING_LIMIT, ITEM_LIMIT,
 * TAG_NOT_ALLOWED, FRAME_TOO_LARGE) and never anything else.
 */
export function decodeValue (buf: Uint8Array, limits: DecodeLimits = DEFAULT_DECODE_LIMITS): unknown {
  if (buf.length > limits.maxFrameBytes) {
    throw new EvalMeshError('FRAME_TOO_LARGE', `frame of ${buf.length} bytes exceeds the limit of ${limits.maxFrameBytes}`)
  }
  scanCbor(buf, limits)
  try {
    return decoder.decode(buf)
  } catch (err) {
    throw new EvalMeshError('MALFORMED_FRAME', `CBOR decode failed: ${(err as Error).message}`)
  }
}

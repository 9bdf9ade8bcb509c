/**
 * @packageDocumentation
 * The evalmesh wire protocol: message types, the CBOR codec, length-prefixed
 * framing, decode limits and the error catalogue. No I/O lives here.
 *
 * A frame is a 4-byte big-endian length followed by one CBOR map:
 *
 * ```
 * 00 00 00 1a  a3 64 6b 69 6e 64 64 70 69 6e 67 62 69 64 01 ...
 * ```
 *
 * docs/PROTOCOL.md is the normative description.
 */
export * from './constants.js'
export * from './errors.js'
export { encodeValue, encodeMessage, decodeValue, encodeResultValue, checkEncodable } from './codec.js'
export { encodeFrame, FrameDecoder } from './framing.js'
export { scanCbor, type ScanResult, type Rewrite } from './scan.js'
export * from './txn.js'
export * from './messages.js'
export * from './replies.js'
export * from './printable.js'
export { scrubPaths } from './scrub.js'
export { formatHost, socketErrorText } from './address.js'

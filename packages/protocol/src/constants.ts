/**
 * Protocol numbers and default limits. docs/PROTOCOL.md is the normative text;
 * each constant names the section it comes from.
 */

/** Wire protocol version spoken by this implementation (PROTOCOL.md §2, "Handshake"). */
export const PROTOCOL_VERSION = 1

/** Versions this implementation can speak, best first. */
export const SUPPORTED_VERSIONS: readonly number[] = [1]

/** Default TCP and UDP port; EVALSERVER used PUP socket 668 (PROTOCOL.md §1). */
export const DEFAULT_PORT = 6680

/**
 * The node's control port, a Unix socket of this name in its state directory (README,
 * "The control port"): local text commands, not this protocol, but named once for the
 * node and its clients.
 */
export const CONTROL_SOCKET = 'control.sock'

/** Multicast group and port of broadcast queries on a LAN (PROTOCOL.md §5.2). Admin-scoped. */
export const BROADCAST_GROUP = '239.255.66.80'
/**
 * The IPv6 group of broadcast queries (PROTOCOL.md §5.2): ff12::6680, link-local scope
 * (2) like ff02::fb, with the transient flag (1) because IANA did not assign it (RFC 4291
 * §2.7). Link-local, so it never leaves the link, as 239.255.66.80 is kept in by routers.
 */
export const BROADCAST_GROUP_V6 = 'ff12::6680'
export const BROADCAST_PORT = 6680

/** The broadcast group of a LAN address's family. */
export function broadcastGroupFor (address: string): string {
  return address.includes(':') ? BROADCAST_GROUP_V6 : BROADCAST_GROUP
}

/** Bytes in a frame's length prefix: a 32-bit big-endian unsigned integer (PROTOCOL.md §1). */
export const FRAME_HEADER_BYTES = 4

/** Handshake frames are small; anything larger before authentication is hostile (PROTOCOL.md §2). */
export const MAX_HANDSHAKE_FRAME_BYTES = 4096

/** Labels bound into the handshake signatures so that one role's proof cannot be replayed as the other's. */
export const HANDSHAKE_LABEL_SERVER = 'evalmesh/1 server'
export const HANDSHAKE_LABEL_CLIENT = 'evalmesh/1 client'

/** Limits a decoder applies to every frame before decoding it (PROTOCOL.md §1.2). */
export interface DecodeLimits {
  /** Largest frame payload accepted, in bytes. */
  maxFrameBytes: number
  /** Deepest nesting of arrays, maps and tags. */
  maxDepth: number
  /** Longest text or byte string, in bytes. */
  maxStringBytes: number
  /** Most data items in one frame (every integer, string, array... counts once). */
  maxItems: number
}

export const DEFAULT_DECODE_LIMITS: Readonly<DecodeLimits> = Object.freeze({
  maxFrameBytes: 64 * 1024 * 1024,
  maxDepth: 64,
  maxStringBytes: 32 * 1024 * 1024,
  maxItems: 4 * 1024 * 1024
})

/**
 * Largest magnitude of a bignum (tag 2/3), in bytes: 65,536 bits, about 19,700 decimal
 * digits (PROTOCOL.md §1.3). A receiver refuses a frame holding a larger one before
 * decoding (§1.2), and evalmesh refuses to encode a larger BigInt, so that no integer
 * can cost a decoder much: cbor-x's own bignum decoder was quadratic (a 128 KiB bignum
 * froze a node for 2 s).
 */
export const MAX_BIGNUM_BYTES = 8192

/**
 * Nesting a reply adds around an evaluation result: the reply map and the outcome
 * map (PROTOCOL.md §3.4). A result may nest at most maxDepth less this.
 */
export const RESULT_ENVELOPE_DEPTH = 2

/**
 * CBOR tags a frame may contain (PROTOCOL.md §1.3). All are IANA-registered, so any
 * standard decoder reads them; everything else (cbor-x records, shared references,
 * Error and RegExp tags) is refused before decoding.
 */
export const ALLOWED_TAGS: ReadonlySet<number> = new Set([
  0, 1, // date/time (string, epoch)
  2, 3, // bignums
  64, 65, 66, 67, 68, 69, 70, 71, 72, 73, 74, 75, 76, 77, 78, 79, 80, 81, 82, 83, 84, 85, 86, 87, // RFC 8746 typed arrays
  258, // set
  259, // map with non-string keys / Map datatype
  55799 // self-described CBOR
])

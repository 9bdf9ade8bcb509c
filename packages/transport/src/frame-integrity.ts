import {
  createHash, createHmac, createPrivateKey, createPublicKey, diffieHellman, generateKeyPairSync, hkdfSync, timingSafeEqual,
  type KeyObject
} from 'node:crypto'
import { EvalMeshError } from '@evalmesh/protocol'

/*
 * Frame integrity (PROTOCOL.md §2.4). Each side of the handshake brings an ephemeral
 * X25519 key (`kx`); both signatures cover both of them, so no one on the path can put in
 * a key of its own. From the shared secret, HKDF-SHA256 derives one key per direction,
 * salted with the hash of the handshake's values; every frame after the handshake then
 * carries HMAC-SHA256(direction key, sequence number || frame), with the sequence number
 * counted per direction from 0 and never sent, so an altered, injected, dropped, replayed
 * or reordered frame fails its check.
 */

export const KX_BYTES = 32
export const TAG_BYTES = 32
export const INFO_CLIENT_TO_SERVER = 'evalmesh/1 c2s'
export const INFO_SERVER_TO_CLIENT = 'evalmesh/1 s2c'

const X25519_SPKI_PREFIX = Buffer.from('302a300506032b656e032100', 'hex')
const X25519_PKCS8_PREFIX = Buffer.from('302e020100300506032b656e04220420', 'hex')

export interface EphemeralKey { privateKey: KeyObject, publicKey: Buffer }

/** A fresh X25519 key pair, or the one made from `seed` (32 bytes; the worked example's fixed keys). */
export function ephemeralKey (seed?: Uint8Array): EphemeralKey {
  const privateKey = seed === undefined
    ? generateKeyPairSync('x25519').privateKey
    : createPrivateKey({ key: Buffer.concat([X25519_PKCS8_PREFIX, seed]), format: 'der', type: 'pkcs8' })
  const der = createPublicKey(privateKey).export({ format: 'der', type: 'spki' })
  return { privateKey, publicKey: der.subarray(der.length - KX_BYTES) }
}

export interface DirectionKeys { clientToServer: Buffer, serverToClient: Buffer }

/** What the keys are bound to: the handshake's nonces, identity keys and ephemeral keys. */
export interface KeyContext {
  clientNonce: Uint8Array
  serverNonce: Uint8Array
  clientKey: Uint8Array
  serverKey: Uint8Array
  clientKx: Uint8Array
  serverKx: Uint8Array
}

/**
 * The two direction keys: HKDF-SHA256 over the X25519 shared secret, salted with
 * SHA-256(client nonce || server nonce || client key || server key || client kx || server kx).
 */
export function deriveDirectionKeys (own: KeyObject, peerKx: Uint8Array, ctx: KeyContext): DirectionKeys {
  let shared: Buffer
  try {
    const peer = createPublicKey({ key: Buffer.concat([X25519_SPKI_PREFIX, peerKx]), format: 'der', type: 'spki' })
    shared = diffieHellman({ privateKey: own, publicKey: peer })
  } catch (err) {
    throw new EvalMeshError('BAD_MESSAGE', `field "kx" is not a usable X25519 public key: ${(err as Error).message}`)
  }
  // A low-order point gives an all-zero secret that anyone could compute.
  if (shared.every(b => b === 0)) throw new EvalMeshError('BAD_MESSAGE', 'field "kx" is a low-order X25519 point (the shared secret is zero)')
  const salt = createHash('sha256')
    .update(ctx.clientNonce).update(ctx.serverNonce).update(ctx.clientKey).update(ctx.serverKey)
    .update(ctx.clientKx).update(ctx.serverKx).digest()
  const key = (info: string): Buffer => Buffer.from(hkdfSync('sha256', shared, salt, info, 32))
  return { clientToServer: key(INFO_CLIENT_TO_SERVER), serverToClient: key(INFO_SERVER_TO_CLIENT) }
}

/**
 * One direction's MAC: tag(frame) is HMAC-SHA256(key, seq (uint64, big end) || frame),
 * where frame is the 4-byte length prefix and the payload, as on the wire; seq starts at
 * 0 and counts every frame this direction carries.
 */
export class FrameMac {
  readonly #key: Buffer
  #seq = 0n
  readonly #seqBytes = Buffer.alloc(8)

  constructor (key: Buffer) { this.#key = key }

  /** Sequence number of the next frame. */
  get seq (): bigint { return this.#seq }

  /** The tag of the next frame (the header and payload as parts), and count it. */
  tag (...parts: Uint8Array[]): Buffer {
    this.#seqBytes.writeBigUInt64BE(this.#seq++)
    const h = createHmac('sha256', this.#key).update(this.#seqBytes)
    for (const p of parts) h.update(p)
    return h.digest()
  }

  /** Whether `tag` is the next frame's tag; the frame is counted either way. */
  check (tag: Uint8Array, ...parts: Uint8Array[]): boolean {
    return timingSafeEqual(this.tag(...parts), tag)
  }
}

/**
 * When frames carry integrity (PROTOCOL.md §2.4): `auto` (the default) on every plain
 * connection except over loopback, `always` on loopback too (tests, a proxy on this host).
 */
export type IntegrityMode = 'auto' | 'always'

/**
 * A loopback stream never leaves this machine: only its root, who can read every key here
 * anyway, can alter it, so `auto` leaves it without tags.
 */
export function isLoopbackAddress (address: string | undefined): boolean {
  if (address === undefined) return false
  const a = address.toLowerCase().replace(/^::ffff:(?=\d+\.)/, '')
  return a === '::1' || /^127\.\d+\.\d+\.\d+$/.test(a)
}

/** Whether a plain connection to or from `remoteAddress` carries integrity tags under `mode`. */
export function integrityWanted (mode: IntegrityMode | undefined, remoteAddress: string | undefined): boolean {
  return mode === 'always' || !isLoopbackAddress(remoteAddress)
}

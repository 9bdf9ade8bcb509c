import { randomBytes } from 'node:crypto'
import { EvalMeshError, decodeValue, encodeValue, asRecord, field, isBytes, isUint, isString } from '@evalmesh/protocol'
import { nodeIdOf, verifySignature, type Identity, type TrustStore } from '@evalmesh/trust'

/**
 * Authenticated control datagrams (PROTOCOL.md §5.1). Only small control messages
 * travel over UDP; forms and results never do.
 *
 *   datagram = CBOR { body: bytes, sig: bytes(64), mac?: bytes(32) }
 *   body     = CBOR { kind, key: bytes(32), name, ts: uint (ms), nonce: bytes(8), ...fields }
 *   sig      = Ed25519(sender key, "evalmesh/1 datagram" || body)
 *   mac      = HMAC-SHA256(mesh key, "evalmesh/1 datagram" || body), when the sender has one
 */
export const DATAGRAM_LABEL = 'evalmesh/1 datagram'
export const MAX_DATAGRAM_BYTES = 1200
/** Datagrams older or newer than this (sender clock vs ours) are refused as replays. */
export const DATAGRAM_WINDOW_MS = 30_000

const datagramLimits = { maxFrameBytes: MAX_DATAGRAM_BYTES, maxDepth: 8, maxStringBytes: 512, maxItems: 256 }

export interface DatagramSender {
  id: string
  name: string
  key: Uint8Array
  self: boolean
  trustedBy: 'self' | 'key' | 'mesh'
}

export type DropReason = 'malformed' | 'forged' | 'untrusted' | 'replayed' | 'stale'

export interface DatagramCounters {
  received: number
  accepted: number
  dropped: Record<DropReason, number>
}

export function newDatagramCounters (): DatagramCounters {
  return { received: 0, accepted: 0, dropped: { malformed: 0, forged: 0, untrusted: 0, replayed: 0, stale: 0 } }
}

/** Seal a control message: sign it (and MAC it with the mesh key, if any). */
export function sealDatagram (identity: Identity, trust: TrustStore, message: Record<string, unknown>): Buffer {
  const body = Buffer.from(encodeValue({
    ...message,
    key: Buffer.from(identity.publicKey),
    name: identity.name,
    ts: Date.now(),
    nonce: randomBytes(8)
  }))
  const signed = Buffer.concat([Buffer.from(DATAGRAM_LABEL, 'ascii'), body])
  const datagram: Record<string, unknown> = { body, sig: Buffer.from(identity.sign(signed)) }
  const mac = trust.meshMac(signed)
  if (mac !== undefined) datagram.mac = Buffer.from(mac)
  const out = Buffer.from(encodeValue(datagram))
  if (out.length > MAX_DATAGRAM_BYTES) throw new EvalMeshError('BAD_MESSAGE', `control datagram of ${out.length} bytes exceeds ${MAX_DATAGRAM_BYTES}`)
  return out
}

/**
 * Remembers (key, nonce) pairs for the acceptance window, so that a datagram
 * captured and sent again is refused (PROTOCOL.md §5.1). A datagram is fresh while its
 * ts is within DATAGRAM_WINDOW_MS of our clock; its pair is kept until its ts is twice
 * that old, so it outlives every moment the datagram could be accepted. Bounded: older
 * entries are swept every 5 s.
 */
export class ReplayWindow {
  #seen = new Map<string, number>()
  #lastSweep = 0

  /** True if this (key, nonce) is new; records it. */
  admit (key: Uint8Array, nonce: Uint8Array, ts: number, now = Date.now()): boolean {
    if (now - this.#lastSweep > 5000) {
      for (const [k, t] of this.#seen) if (t < now - 2 * DATAGRAM_WINDOW_MS) this.#seen.delete(k)
      this.#lastSweep = now
    }
    const id = Buffer.from(key).toString('base64') + Buffer.from(nonce).toString('base64')
    if (this.#seen.has(id)) return false
    this.#seen.set(id, ts)
    return true
  }

  get size (): number { return this.#seen.size }
}

export type OpenResult =
  | { ok: true, message: Record<string, unknown>, sender: DatagramSender }
  | { ok: false, reason: DropReason, detail: string }

/**
 * Check a received datagram: well-formed, signed by the key it names, from a trusted
 * peer, inside the time window, not seen before. Counts what it drops.
 */
export function openDatagram (buf: Buffer, trust: TrustStore, replay: ReplayWindow, counters?: DatagramCounters): OpenResult {
  const result = check(buf, trust, replay)
  if (counters !== undefined) {
    counters.received++
    if (result.ok) counters.accepted++
    else counters.dropped[result.reason]++
  }
  return result
}

function check (buf: Buffer, trust: TrustStore, replay: ReplayWindow): OpenResult {
  let outer: Record<string, unknown>
  let body: Record<string, unknown>
  let bodyBytes: Uint8Array
  let sig: Uint8Array
  try {
    outer = asRecord(decodeValue(buf, datagramLimits), 'datagram')
    bodyBytes = field(outer, 'body', isBytes, 'bytes')
    sig = field(outer, 'sig', isBytes, 'bytes')
    body = asRecord(decodeValue(bodyBytes, datagramLimits), 'datagram body')
    field(body, 'kind', isString, 'a string')
    field(body, 'name', isString, 'a string')
    // Any CBOR integer width (evalmesh writes epoch ms as an 8-byte integer) or an integral float.
    field(body, 'ts', isUint, 'an unsigned integer (epoch milliseconds)')
    field(body, 'key', isBytes, 'bytes')
    field(body, 'nonce', isBytes, 'bytes')
  } catch (err) {
    return { ok: false, reason: 'malformed', detail: (err as Error).message }
  }
  const key = body.key as Uint8Array
  if (key.length !== 32) return { ok: false, reason: 'malformed', detail: 'key must be 32 bytes' }
  const signed = Buffer.concat([Buffer.from(DATAGRAM_LABEL, 'ascii'), bodyBytes])
  const self = Buffer.compare(Buffer.from(key), Buffer.from(trust.self.publicKey)) === 0
  const mac = isBytes(outer.mac) ? outer.mac : undefined
  // Fast path: a valid mesh MAC proves the sender belongs to the mesh (2 µs, against
  // ~100 µs for an Ed25519 check). Which member it is gets proven by the TCP handshake
  // before anything runs, and the policy is checked again there (PROTOCOL.md §5.1).
  let trustedBy: DatagramSender['trustedBy'] | undefined
  if (trust.checkMeshMac(signed, mac)) {
    trustedBy = self ? 'self' : 'mesh'
  } else {
    if (!verifySignature(key, signed, sig)) return { ok: false, reason: 'forged', detail: 'signature does not verify' }
    trustedBy = self ? 'self' : trust.isTrustedKey(key) ? 'key' : undefined
  }
  if (trustedBy === undefined) return { ok: false, reason: 'untrusted', detail: `sender ${nodeIdOf(key)} is not trusted` }
  const ts = body.ts as number
  if (Math.abs(Date.now() - ts) > DATAGRAM_WINDOW_MS) return { ok: false, reason: 'stale', detail: `timestamp ${ts} outside the ${DATAGRAM_WINDOW_MS} ms window` }
  if (!replay.admit(key, body.nonce as Uint8Array, ts)) return { ok: false, reason: 'replayed', detail: 'nonce already seen' }
  return { ok: true, message: body, sender: { id: nodeIdOf(key), name: String(body.name).slice(0, 63), key, self, trustedBy } }
}

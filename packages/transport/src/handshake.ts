import { randomBytes } from 'node:crypto'
import {
  EvalMeshError, HANDSHAKE_LABEL_CLIENT, HANDSHAKE_LABEL_SERVER, PROTOCOL_VERSION, SUPPORTED_VERSIONS,
  asRecord, field, isBytes, isString, isUint, parseWireError, RemoteEvalError,
  type ClientAuth, type ClientHello, type NodeLimits, type ServerHello, type Welcome
} from '@evalmesh/protocol'
import { nodeIdOf, verifySignature, type Identity, type TrustStore } from '@evalmesh/trust'
import type { TLSSocket } from 'node:tls'
import type { FramedSocket } from './framed-socket.js'
import { KX_BYTES, deriveDirectionKeys, ephemeralKey, type EphemeralKey } from './frame-integrity.js'

/** Who is on the other end, as proven by the handshake. */
export interface PeerInfo {
  /** Node id derived from the peer's proven public key. */
  id: string
  /**
   * The name of the peer: the name it gave in its hello, until the node replaces it
   * with the name it gives the key (its trusted-keys label); then `claimedName` keeps
   * what the peer said, as a hint only.
   */
  name: string
  claimedName?: string
  key: Uint8Array
  /** The peer holds this node's own key: a process of the same user on this machine. */
  self: boolean
  /** How the peer is trusted. */
  trustedBy: 'self' | 'key' | 'mesh'
  /** Frames after the handshake carry integrity tags (PROTOCOL.md §2.4). */
  integrity: boolean
  /** The connection runs inside TLS 1.3 (PROTOCOL.md §2.5). */
  tls: boolean
  address: string
  port: number
}

/*
 * The transcript both sides sign (PROTOCOL.md §2.2):
 *   label (ASCII) || client nonce (32) || server nonce (32) || client key (32) || server key (32)
 *   [|| client kx (32) || server kx (32), with frame integrity (§2.4)]
 * The server signs with label "evalmesh/1 server", the client with "evalmesh/1 client", so
 * neither proof can be replayed as the other. With a mesh key, each side also sends
 * HMAC-SHA256(mesh key, same bytes). Each side puts in the client kx it sent or received,
 * so a kx struck out on the way makes the signatures fail instead of turning integrity off.
 */
export function transcript (label: string, clientNonce: Uint8Array, serverNonce: Uint8Array, clientKey: Uint8Array, serverKey: Uint8Array,
  kx?: { client: Uint8Array, server?: Uint8Array | undefined }, tlsExporter?: Uint8Array): Uint8Array {
  const parts = [Buffer.from(label, 'ascii'), clientNonce, serverNonce, clientKey, serverKey]
  if (kx !== undefined) parts.push(kx.client, kx.server ?? new Uint8Array(0))
  if (tlsExporter !== undefined) parts.push(tlsExporter)
  return Buffer.concat(parts)
}

/** The TLS exporter label (RFC 8446 §7.5) whose 32 bytes end the transcript inside TLS. */
export const TLS_EXPORTER_LABEL = 'EXPORTER-evalmesh/1'

/** The 32-byte exporter value of a TLS connection, or undefined on plain TCP. */
export function tlsExporterOf (framed: FramedSocket): Buffer | undefined {
  const socket = framed.socket as Partial<TLSSocket>
  return typeof socket.exportKeyingMaterial === 'function' && socket.encrypted === true
    ? socket.exportKeyingMaterial(32, TLS_EXPORTER_LABEL, Buffer.alloc(0))
    : undefined
}

const NONCE_BYTES = 32

/** Byte fields go out as plain CBOR byte strings (a Buffer), not RFC 8746 typed arrays. */
const bytes = (u: Uint8Array): Buffer => Buffer.from(u.buffer, u.byteOffset, u.byteLength)

/** The next handshake message; the socket holds what follows it until the next call (FramedSocket.holdEachMessage). */
function nextMessage (framed: FramedSocket, timeoutMs: number, phase: string): Promise<Record<string, unknown>> {
  framed.holdEachMessage(true)
  framed.release()
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => { cleanup(); reject(new EvalMeshError('HANDSHAKE_FAILED', `handshake timed out waiting for ${phase}`)) }, timeoutMs)
    const onMessage = (value: unknown): void => {
      cleanup()
      try {
        const m = asRecord(value, phase)
        if (m.kind === 'error') {
          const err = parseWireError(m.error)
          reject(new RemoteEvalError(err))
          return
        }
        resolve(m)
      } catch (err) { reject(err) }
    }
    const onClose = (err?: Error): void => { cleanup(); reject(err ?? new EvalMeshError('HANDSHAKE_FAILED', `connection closed during handshake (waiting for ${phase})`)) }
    const cleanup = (): void => {
      clearTimeout(timer)
      framed.off('message', onMessage)
      framed.off('close', onClose)
    }
    framed.on('message', onMessage)
    framed.on('close', onClose)
  })
}

function keyField (m: Record<string, unknown>, name: string, length: number): Uint8Array {
  const v = field(m, name, isBytes, `a byte string of ${length} bytes`)
  if (v.length !== length) throw new EvalMeshError('BAD_MESSAGE', `field "${name}" must be ${length} bytes, got ${v.length}`)
  return v
}

export interface ServerHandshakeOptions {
  identity: Identity
  trust: TrustStore
  limits: NodeLimits
  timeoutMs: number
  /**
   * Refuse a client that does not offer frame integrity (INTEGRITY_REQUIRED). A client
   * that offers it always gets it, whatever this says.
   */
  requireIntegrity: boolean
}

/** Run the server side of the handshake. Resolves with the proven peer, or fails the socket and rejects. */
export async function serverHandshake (framed: FramedSocket, opts: ServerHandshakeOptions): Promise<PeerInfo> {
  try {
    const hello = await nextMessage(framed, opts.timeoutMs, 'client hello')
    if (hello.kind !== 'hello') throw new EvalMeshError('HANDSHAKE_FAILED', `expected "hello" first, got ${JSON.stringify(hello.kind)}`)
    const versions = field(hello, 'versions', (v): v is number[] => Array.isArray(v) && v.every(isUint), 'an array of version numbers')
    const version = SUPPORTED_VERSIONS.find(v => versions.includes(v))
    if (version === undefined) {
      throw new EvalMeshError('UNSUPPORTED_VERSION', `client speaks versions [${versions.join(', ')}], this node speaks [${SUPPORTED_VERSIONS.join(', ')}]`)
    }
    const clientKey = keyField(hello, 'key', 32)
    const clientNonce = keyField(hello, 'nonce', NONCE_BYTES)
    const claimedId = field(hello, 'id', isString, 'a string')
    const name = field(hello, 'name', isString, 'a string').slice(0, 63)
    if (claimedId !== nodeIdOf(clientKey)) throw new EvalMeshError('BAD_SIGNATURE', 'client id does not match its key')
    const clientKx = hello.kx === undefined ? undefined : keyField(hello, 'kx', KX_BYTES)
    if (clientKx === undefined && opts.requireIntegrity) {
      throw new EvalMeshError('INTEGRITY_REQUIRED', `node ${opts.identity.name} takes plain connections from other hosts only with frame integrity ` +
        '(PROTOCOL.md §2.4): the client hello has no "kx"; use a client that offers it, or TLS')
    }
    framed.peerLabel = `client ${name} (${claimedId})`

    const serverNonce = randomBytes(NONCE_BYTES)
    const exporter = tlsExporterOf(framed)
    const eph = clientKx === undefined ? undefined : ephemeralKey()
    const kx = clientKx === undefined ? undefined : { client: clientKx, server: eph!.publicKey }
    const serverBytes = transcript(HANDSHAKE_LABEL_SERVER, clientNonce, serverNonce, clientKey, opts.identity.publicKey, kx, exporter)
    const reply: ServerHello & { kx?: Buffer } = {
      kind: 'hello', version, role: 'server', id: opts.identity.id, name: opts.identity.name,
      key: bytes(opts.identity.publicKey), nonce: serverNonce, sig: bytes(opts.identity.sign(serverBytes))
    }
    const mac = opts.trust.meshMac(serverBytes)
    if (mac !== undefined) reply.mac = bytes(mac)
    if (eph !== undefined) reply.kx = eph.publicKey
    framed.send(reply)
    const keys = eph === undefined
      ? undefined
      : deriveDirectionKeys(eph.privateKey, clientKx!, { clientNonce, serverNonce, clientKey, serverKey: opts.identity.publicKey, clientKx: clientKx!, serverKx: eph.publicKey })
    // Everything after the server hello is tagged: the answer to auth (welcome or an
    // error) included. The client's frames are tagged from the one after auth.
    if (keys !== undefined) framed.protectSending(keys.serverToClient)

    const auth = await nextMessage(framed, opts.timeoutMs, 'client auth')
    if (keys !== undefined) framed.protectReceiving(keys.clientToServer)
    if (auth.kind !== 'auth') throw new EvalMeshError('HANDSHAKE_FAILED', `expected "auth", got ${JSON.stringify(auth.kind)}`)
    const clientBytes = transcript(HANDSHAKE_LABEL_CLIENT, clientNonce, serverNonce, clientKey, opts.identity.publicKey, kx, exporter)
    if (!verifySignature(clientKey, clientBytes, keyField(auth, 'sig', 64))) {
      throw new EvalMeshError('BAD_SIGNATURE', 'client signature does not verify: it does not hold the key it claims')
    }
    const authMac = auth.mac === undefined ? undefined : keyField(auth, 'mac', 32)
    const self = Buffer.compare(Buffer.from(clientKey), Buffer.from(opts.identity.publicKey)) === 0
    const trustedBy = self ? 'self' : opts.trust.isTrustedKey(clientKey) ? 'key' : opts.trust.checkMeshMac(clientBytes, authMac) ? 'mesh' : undefined
    if (trustedBy === undefined) {
      throw new EvalMeshError('UNTRUSTED_PEER', `node ${opts.identity.name} does not trust ${name} (${claimedId}): add its key to trusted-keys or share the mesh key`, { peer: claimedId })
    }
    const welcome: Welcome = { kind: 'welcome', peer: claimedId, limits: opts.limits }
    framed.send(welcome)
    framed.holdEachMessage(false)
    return {
      id: claimedId, name, key: clientKey, self, trustedBy, integrity: keys !== undefined, tls: exporter !== undefined,
      address: framed.socket.remoteAddress ?? '', port: framed.socket.remotePort ?? 0
    }
  } catch (err) {
    framed.fail(err)
    throw err
  }
}

export interface ClientHandshakeOptions {
  identity: Identity
  trust: TrustStore
  timeoutMs: number
  /** When set, the server must prove this node id. */
  expectId?: string
  /** Offer frame integrity (PROTOCOL.md §2.4) and refuse a server that does not take it (default false). */
  integrity?: boolean
  /** Fixed ephemeral key, for the worked example only. */
  ephemeral?: EphemeralKey
  /**
   * Inside TLS: how the server's certificate was found good. `pinned` certificates must
   * carry the very Ed25519 key the server proves here (PROTOCOL.md §2.5); `verified` ones
   * passed the CA check and the host name.
   */
  tlsCertificate?: { key: Uint8Array | undefined, verified: boolean, why: string }
}

export interface ClientHandshakeResult { peer: PeerInfo, limits: NodeLimits, version: number }

/** Run the client side of the handshake: prove who we are, and check who they are. */
export async function clientHandshake (framed: FramedSocket, opts: ClientHandshakeOptions): Promise<ClientHandshakeResult> {
  try {
    const clientNonce = randomBytes(NONCE_BYTES)
    const hello: ClientHello & { kx?: Buffer } = {
      kind: 'hello', versions: [...SUPPORTED_VERSIONS], role: 'client',
      id: opts.identity.id, name: opts.identity.name, key: bytes(opts.identity.publicKey), nonce: clientNonce
    }
    const eph = opts.integrity === true ? opts.ephemeral ?? ephemeralKey() : undefined
    if (eph !== undefined) hello.kx = eph.publicKey
    framed.send(hello)
    const reply = await nextMessage(framed, opts.timeoutMs, 'server hello')
    if (reply.kind !== 'hello') throw new EvalMeshError('HANDSHAKE_FAILED', `expected server "hello", got ${JSON.stringify(reply.kind)}`)
    const serverKey = keyField(reply, 'key', 32)
    const serverNonce = keyField(reply, 'nonce', NONCE_BYTES)
    const serverId = field(reply, 'id', isString, 'a string')
    const name = field(reply, 'name', isString, 'a string').slice(0, 63)
    const version = field(reply, 'version', isUint, 'a version number')
    if (!SUPPORTED_VERSIONS.includes(version)) throw new EvalMeshError('UNSUPPORTED_VERSION', `server chose version ${version}`)
    if (serverId !== nodeIdOf(serverKey)) throw new EvalMeshError('BAD_SIGNATURE', 'server id does not match its key')
    if (opts.expectId !== undefined && opts.expectId !== serverId) {
      throw new EvalMeshError('BAD_SIGNATURE', `expected node ${opts.expectId}, but ${name} (${serverId}) answered`)
    }
    const serverKx = reply.kx === undefined ? undefined : keyField(reply, 'kx', KX_BYTES)
    if (eph !== undefined && serverKx === undefined) {
      throw new EvalMeshError('INTEGRITY_REQUIRED', `server ${name} (${serverId}) did not take frame integrity (its hello has no "kx"): ` +
        'it is too old for this connection, or someone on the path struck it out')
    }
    if (eph === undefined && serverKx !== undefined) throw new EvalMeshError('BAD_MESSAGE', 'the server hello has a "kx" the client did not ask for')
    const kx = eph === undefined ? undefined : { client: eph.publicKey, server: serverKx }
    const cert = opts.tlsCertificate
    if (cert !== undefined && !cert.verified && (cert.key === undefined || Buffer.compare(Buffer.from(cert.key), Buffer.from(serverKey)) !== 0)) {
      throw new EvalMeshError('BAD_SIGNATURE', `node ${name} (${serverId}) presents a TLS certificate that is neither over the key it proves in the handshake ` +
        `nor one this client can verify (${cert.why})`)
    }
    const exporter = tlsExporterOf(framed)
    const serverBytes = transcript(HANDSHAKE_LABEL_SERVER, clientNonce, serverNonce, opts.identity.publicKey, serverKey, kx, exporter)
    if (!verifySignature(serverKey, serverBytes, keyField(reply, 'sig', 64))) {
      throw new EvalMeshError('BAD_SIGNATURE', `server ${name} failed to prove its key`)
    }
    const serverMac = reply.mac === undefined ? undefined : keyField(reply, 'mac', 32)
    const self = Buffer.compare(Buffer.from(serverKey), Buffer.from(opts.identity.publicKey)) === 0
    const trustedBy = self ? 'self' : opts.trust.isTrustedKey(serverKey) ? 'key' : opts.trust.checkMeshMac(serverBytes, serverMac) ? 'mesh' : undefined
    if (trustedBy === undefined) {
      throw new EvalMeshError('UNTRUSTED_PEER', `this client does not trust node ${name} (${serverId}): add its key to trusted-keys or share the mesh key`, { peer: serverId })
    }
    framed.peerLabel = `node ${name} (${serverId})`
    const keys = eph === undefined
      ? undefined
      : deriveDirectionKeys(eph.privateKey, serverKx!, { clientNonce, serverNonce, clientKey: opts.identity.publicKey, serverKey, clientKx: eph.publicKey, serverKx: serverKx! })
    if (keys !== undefined) framed.protectReceiving(keys.serverToClient)
    const clientBytes = transcript(HANDSHAKE_LABEL_CLIENT, clientNonce, serverNonce, opts.identity.publicKey, serverKey, kx, exporter)
    const auth: ClientAuth = { kind: 'auth', sig: bytes(opts.identity.sign(clientBytes)) }
    const mac = opts.trust.meshMac(clientBytes)
    if (mac !== undefined) auth.mac = bytes(mac)
    framed.send(auth)
    if (keys !== undefined) framed.protectSending(keys.clientToServer)
    const welcome = await nextMessage(framed, opts.timeoutMs, 'welcome')
    if (welcome.kind !== 'welcome') throw new EvalMeshError('HANDSHAKE_FAILED', `expected "welcome", got ${JSON.stringify(welcome.kind)}`)
    const limits = asRecord(welcome.limits, 'welcome limits') as unknown as NodeLimits
    framed.holdEachMessage(false)
    return {
      peer: { id: serverId, name, key: serverKey, self, trustedBy, integrity: keys !== undefined, tls: exporter !== undefined, address: framed.socket.remoteAddress ?? '', port: framed.socket.remotePort ?? 0 },
      limits,
      version
    }
  } catch (err) {
    framed.destroy(err instanceof EvalMeshError ? err : undefined)
    throw err
  }
}

export { PROTOCOL_VERSION }

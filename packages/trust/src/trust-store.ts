import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto'
import { existsSync, readFileSync, statSync } from 'node:fs'
import { join } from 'node:path'
import { nodeIdOf, writePrivateFile, ensureStateDir, type Identity } from './identity.js'

export const TRUSTED_KEYS_FILE = 'trusted-keys'
export const MESH_KEY_FILE = 'mesh.key'

export interface TrustedKey { key: Uint8Array, id: string, name: string }

/**
 * Who this node believes. A peer is trusted when it proves possession of:
 *  - this node's own key (another process of the same user on the same machine), or
 *  - a key listed in `<state-dir>/trusted-keys` (one `<base64 public key> [name]` per line), or
 *  - the shared mesh key in `<state-dir>/mesh.key` (base64 of 32 random bytes), shown by a
 *    handshake MAC.
 * Both files are re-read when they change, so trust can be granted without a restart.
 */
export class TrustStore {
  readonly stateDir: string
  readonly self: Identity
  #keys = new Map<string, TrustedKey>()
  #meshKey: Buffer | undefined
  #stamp = ''

  constructor (stateDir: string, self: Identity) {
    this.stateDir = stateDir
    this.self = self
    this.reload()
  }

  get meshKey (): Buffer | undefined {
    this.#refresh()
    return this.#meshKey
  }

  trustedKeys (): TrustedKey[] {
    this.#refresh()
    return [...this.#keys.values()]
  }

  /** Whether `publicKey` is this node's own key or an explicitly trusted one. */
  isTrustedKey (publicKey: Uint8Array): boolean {
    if (Buffer.compare(Buffer.from(publicKey), Buffer.from(this.self.publicKey)) === 0) return true
    this.#refresh()
    return this.#keys.has(Buffer.from(publicKey).toString('base64'))
  }

  /** HMAC-SHA256 of `data` under the mesh key, or undefined without one. */
  meshMac (data: Uint8Array): Uint8Array | undefined {
    const key = this.meshKey
    return key === undefined ? undefined : new Uint8Array(createHmac('sha256', key).update(data).digest())
  }

  /** Constant-time check of a mesh MAC; false when this node has no mesh key. */
  checkMeshMac (data: Uint8Array, mac: Uint8Array | undefined): boolean {
    if (mac === undefined) return false
    const expected = this.meshMac(data)
    return expected !== undefined && expected.length === mac.length && timingSafeEqual(expected, mac)
  }

  reload (): void {
    this.#stamp = ''
    this.#refresh()
  }

  // Cheap enough per handshake: two stat calls; files are re-parsed only on change.
  #refresh (): void {
    const keysPath = join(this.stateDir, TRUSTED_KEYS_FILE)
    const meshPath = join(this.stateDir, MESH_KEY_FILE)
    const stamp = [keysPath, meshPath].map(p => existsSync(p) ? String(statSync(p).mtimeMs) + ':' + String(statSync(p).size) : '-').join('|')
    if (stamp === this.#stamp) return
    this.#stamp = stamp
    this.#keys = existsSync(keysPath) ? parseTrustedKeys(readFileSync(keysPath, 'utf8'), keysPath) : new Map()
    this.#meshKey = existsSync(meshPath) ? parseMeshKey(readFileSync(meshPath, 'utf8'), meshPath) : undefined
  }
}

export function parseTrustedKeys (text: string, source = 'trusted-keys'): Map<string, TrustedKey> {
  const keys = new Map<string, TrustedKey>()
  text.split('\n').forEach((raw, i) => {
    const line = raw.replace(/#.*/, '').trim()
    if (line === '') return
    const [b64, name] = line.split(/\s+/)
    const key = Buffer.from(b64!, 'base64')
    if (key.length !== 32) throw new Error(`${source}:${i + 1}: not a base64 Ed25519 public key (want 32 bytes)`)
    keys.set(key.toString('base64'), { key: new Uint8Array(key), id: nodeIdOf(key), name: name ?? '' })
  })
  return keys
}

function parseMeshKey (text: string, source: string): Buffer {
  const key = Buffer.from(text.trim(), 'base64')
  if (key.length < 16) throw new Error(`${source}: mesh key must be base64 of at least 16 bytes`)
  return key
}

/** The line another node puts in its trusted-keys file to trust this one. */
export function trustLine (identity: Identity): string {
  return `${Buffer.from(identity.publicKey).toString('base64')} ${identity.name}`
}

/** Create a new mesh key file (0600); returns its base64 text. Refuses to overwrite. */
export function createMeshKey (stateDir: string): string {
  const path = join(stateDir, MESH_KEY_FILE)
  if (existsSync(path)) throw new Error(`${path} already exists`)
  ensureStateDir(stateDir)
  const text = randomBytes(32).toString('base64')
  writePrivateFile(path, text + '\n')
  return text
}

/** Install a mesh key given as base64 text (0600). */
export function importMeshKey (stateDir: string, base64: string): void {
  parseMeshKey(base64, 'mesh key')
  ensureStateDir(stateDir)
  writePrivateFile(join(stateDir, MESH_KEY_FILE), base64.trim() + '\n')
}

/** Append a trusted key line (validated) to the trusted-keys file. */
export function addTrustedKey (stateDir: string, line: string): TrustedKey {
  const parsed = [...parseTrustedKeys(line, 'argument').values()]
  if (parsed.length !== 1) throw new Error('give exactly one "<base64 public key> [name]" line')
  ensureStateDir(stateDir)
  const path = join(stateDir, TRUSTED_KEYS_FILE)
  const existing = existsSync(path) ? readFileSync(path, 'utf8') : ''
  const entry = parsed[0]!
  if (!parseTrustedKeys(existing, path).has(Buffer.from(entry.key).toString('base64'))) {
    writePrivateFile(path, existing + (existing === '' || existing.endsWith('\n') ? '' : '\n') + line.trim() + '\n')
  }
  return entry
}

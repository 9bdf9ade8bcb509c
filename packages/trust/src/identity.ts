import { createHash, createPrivateKey, createPublicKey, generateKeyPairSync, sign, verify, type KeyObject } from 'node:crypto'
import { chmodSync, existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs'
import { homedir, hostname } from 'node:os'
import { join } from 'node:path'
import { assertPrivateDir, assertStateDirSafe } from './permissions.js'

/**
 * A node's identity: an Ed25519 key pair kept in its state directory. The node id
 * is derived from the public key, so it cannot be claimed without the key.
 */
export interface Identity {
  /** 16 hex digits: the first 8 bytes of SHA-256(public key). */
  readonly id: string
  /** Human name (defaults to the host name); not proof of anything. */
  readonly name: string
  /** Raw 32-byte Ed25519 public key. */
  readonly publicKey: Uint8Array
  sign (data: Uint8Array): Uint8Array
}

export const KEY_FILE = 'node.key'
export const NAME_FILE = 'node.name'

/** `$EVALMESH_STATE_DIR`, else `~/.evalmesh`. */
export function defaultStateDir (): string {
  const env = process.env.EVALMESH_STATE_DIR
  return env !== undefined && env !== '' ? env : join(homedir(), '.evalmesh')
}

/** Default node name: the host name up to its first dot, in DNS-label-safe characters. */
export function defaultNodeName (): string {
  return sanitizeName(hostname().split('.')[0] ?? 'node') || 'node'
}

export function sanitizeName (name: string): string {
  return name.toLowerCase().replace(/[^a-z0-9-]/g, '-').replace(/^-+|-+$/g, '').slice(0, 63)
}

export function nodeIdOf (publicKey: Uint8Array): string {
  return createHash('sha256').update(publicKey).digest('hex').slice(0, 16)
}

/**
 * Make the state directory owner-only, creating it if needed. An existing directory
 * that others may write, or read while it holds the key, is refused (UnsafePermissionsError),
 * not quietly fixed: what it holds may already be another user's.
 */
export function ensureStateDir (dir: string): void {
  if (existsSync(dir)) assertPrivateDir(dir, { holdsKey: existsSync(join(dir, KEY_FILE)) })
  mkdirSync(dir, { recursive: true, mode: 0o700 })
  chmodSync(dir, 0o700)
}

/** Write a file readable by the owner only, atomically. */
export function writePrivateFile (path: string, data: string | Uint8Array): void {
  const tmp = `${path}.${process.pid}.tmp`
  writeFileSync(tmp, data, { mode: 0o600 })
  chmodSync(tmp, 0o600)
  renameSync(tmp, path)
}

export interface LoadIdentityOptions {
  /** Create the key (and the directory) when missing. Servers create; clients usually do too. */
  create?: boolean
  /** Override the node name (and remember it in the state dir, unless `remember` is false). */
  name?: string
  /** Remember `name` for later runs (default true). */
  remember?: boolean
}

/**
 * Load the identity in `stateDir`, creating it on first use when `create` is set.
 * The private key file is PKCS#8 PEM, mode 0600, in a 0700 directory. A state dir or
 * key that another local user may read or write is refused with an UnsafePermissionsError
 * naming the path and the chmod that fixes it (servers and clients alike).
 */
export function loadIdentity (stateDir: string, options: LoadIdentityOptions = {}): Identity {
  const keyPath = join(stateDir, KEY_FILE)
  const namePath = join(stateDir, NAME_FILE)
  assertStateDirSafe(stateDir)
  let privateKey: KeyObject
  if (existsSync(keyPath)) {
    privateKey = createPrivateKey(readFileSync(keyPath))
    if (privateKey.asymmetricKeyType !== 'ed25519') throw new Error(`${keyPath} is not an Ed25519 key`)
  } else {
    if (options.create !== true) {
      throw new Error(`no node key in ${stateDir}: run \`evalmesh serve\` once, or pass --state-dir / set EVALMESH_STATE_DIR`)
    }
    ensureStateDir(stateDir)
    privateKey = generateKeyPairSync('ed25519').privateKey
    writePrivateFile(keyPath, privateKey.export({ type: 'pkcs8', format: 'pem' }))
  }
  let name = options.name !== undefined ? sanitizeName(options.name) : undefined
  if (name !== undefined && name !== '') {
    if (existsSync(stateDir) && options.remember !== false) writePrivateFile(namePath, name + '\n')
  } else {
    name = existsSync(namePath) ? sanitizeName(readFileSync(namePath, 'utf8').trim()) : defaultNodeName()
  }
  return identityFromKey(privateKey, name || defaultNodeName())
}

export function identityFromKey (privateKey: KeyObject, name: string): Identity {
  const spki = createPublicKey(privateKey).export({ type: 'spki', format: 'der' })
  // An Ed25519 SPKI is a fixed 12-byte header followed by the 32-byte key.
  const publicKey = new Uint8Array(spki.subarray(spki.length - 32))
  return {
    id: nodeIdOf(publicKey),
    name,
    publicKey,
    sign: (data) => new Uint8Array(sign(null, data, privateKey))
  }
}

/** A throwaway identity, for tests and for clients that must not touch disk. */
export function ephemeralIdentity (name = 'ephemeral'): Identity {
  return identityFromKey(generateKeyPairSync('ed25519').privateKey, name)
}

const SPKI_ED25519_PREFIX = Buffer.from('302a300506032b6570032100', 'hex')

// Building a KeyObject costs as much as a verification; peers are few, so keep them.
const keyObjects = new Map<string, KeyObject>()

export function verifySignature (publicKey: Uint8Array, data: Uint8Array, signature: Uint8Array): boolean {
  if (publicKey.length !== 32 || signature.length !== 64) return false
  try {
    const id = Buffer.from(publicKey).toString('base64')
    let key = keyObjects.get(id)
    if (key === undefined) {
      key = createPublicKey({ key: Buffer.concat([SPKI_ED25519_PREFIX, publicKey]), format: 'der', type: 'spki' })
      if (keyObjects.size >= 4096) keyObjects.delete(keyObjects.keys().next().value as string)
      keyObjects.set(id, key)
    }
    return verify(null, data, key, signature)
  } catch {
    return false
  }
}

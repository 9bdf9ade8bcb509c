import { createHash, createHmac, randomBytes, timingSafeEqual } from 'node:crypto'
import { existsSync, readFileSync, statSync } from 'node:fs'
import { join } from 'node:path'
import { nodeIdOf, writePrivateFile, ensureStateDir, type Identity } from './identity.js'

export const TRUSTED_KEYS_FILE = 'trusted-keys'
export const MESH_KEY_FILE = 'mesh.key'

/** Labels the admission policy gives a meaning of its own; a key may not be called by them. */
export const RESERVED_LABELS: ReadonlySet<string> = new Set(['self', 'broadcast', 'directed', 'operator', 'mesh'])

export interface TrustedKey {
  key: Uint8Array
  /** Node id: the first 8 bytes of SHA-256(key), hex. */
  id: string
  /** The label this node gives the key ('' when the line has none). */
  name: string
  /** `SHA256:<base64>`, as ssh-keygen -l prints it for the same key. */
  fingerprint: string
  /** Marked `role=operator`: sees and controls every client's work on this node. */
  operator: boolean
  /** When it was added (ISO 8601), if the line says. */
  added?: string
}

/**
 * `SHA256:<unpadded base64>` of the key's OpenSSH wire form (string "ssh-ed25519",
 * string key): the fingerprint `ssh-keygen -l` prints for the same Ed25519 key.
 */
export function fingerprint (publicKey: Uint8Array): string {
  const type = Buffer.from('ssh-ed25519')
  const len = (n: number): Buffer => { const b = Buffer.alloc(4); b.writeUInt32BE(n); return b }
  const blob = Buffer.concat([len(type.length), type, len(publicKey.length), Buffer.from(publicKey)])
  return 'SHA256:' + createHash('sha256').update(blob).digest('base64').replace(/=+$/, '')
}

/** A mesh key and the window it is valid in (epoch ms). */
export interface MeshKeyEntry {
  key: Buffer
  /** `SHA256:<base64>` of the key bytes: safe to show, unlike the key. */
  fingerprint: string
  /** This node MACs with it from then on (absent: at once). */
  sendFrom?: number
  /** It is no longer accepted from then on (absent: until removed). */
  notAfter?: number
}

export type MeshKeyState = 'sending' | 'accepted' | 'next' | 'expired'

export interface MeshKeyStatus extends MeshKeyEntry { state: MeshKeyState }

const meshFingerprint = (key: Buffer): string => 'SHA256:' + createHash('sha256').update(key).digest('base64').replace(/=+$/, '')

/** Which key `entries` send with at `now`: the newest one already sending and not expired. */
function sendingKey (entries: readonly MeshKeyEntry[], now: number): MeshKeyEntry | undefined {
  const live = entries.filter(e => e.notAfter === undefined || now < e.notAfter)
  for (let i = live.length - 1; i >= 0; i--) if (live[i]!.sendFrom === undefined || live[i]!.sendFrom! <= now) return live[i]
  return live[0]
}

/** Each key's state at `now`: sending, accepted (still taken from others), next (taken, sent later), expired. */
export function meshKeyStates (entries: readonly MeshKeyEntry[], now = Date.now()): MeshKeyStatus[] {
  const send = sendingKey(entries, now)
  return entries.map(e => ({
    ...e,
    state: e === send ? 'sending' : e.notAfter !== undefined && now >= e.notAfter ? 'expired' : e.sendFrom !== undefined && e.sendFrom > now ? 'next' : 'accepted'
  }))
}

export interface TrustStoreOptions {
  /** Clock (epoch ms) for the mesh keys' windows; for tests. */
  now?: () => number
}

/**
 * Who this node believes. A peer is trusted when it proves possession of:
 *  - this node's own key (another process of the same user on the same machine), or
 *  - a key listed in `<state-dir>/trusted-keys` (one `<base64 public key> [label] [role=operator]
 *    [added=<ISO time>]` per line), or
 *  - a mesh key in `<state-dir>/mesh.key`, shown by a handshake MAC. During a rotation the
 *    file holds the old and the new key: both are accepted until the old one's `not-after`.
 * Both files are re-read when they change, so trust can be granted without a restart.
 *
 * Operators (`isOperator`) are this node's own key and keys marked `role=operator`; a peer's
 * name (`nameOf`) is the label this node gives its key, never what the peer says.
 */
export class TrustStore {
  readonly stateDir: string
  readonly self: Identity
  #keys = new Map<string, TrustedKey>()
  #meshKeys: MeshKeyEntry[] = []
  #stamp = ''
  #now: () => number

  constructor (stateDir: string, self: Identity, options: TrustStoreOptions = {}) {
    this.stateDir = stateDir
    this.self = self
    this.#now = options.now ?? Date.now
    this.reload()
  }

  /** The mesh key this node MACs with now, or undefined without one. */
  get meshKey (): Buffer | undefined {
    this.#refresh()
    return sendingKey(this.#meshKeys, this.#now())?.key
  }

  /** Every mesh key in mesh.key with its state now (the key bytes included: do not print them). */
  meshKeys (now = this.#now()): MeshKeyStatus[] {
    this.#refresh()
    return meshKeyStates(this.#meshKeys, now)
  }

  trustedKeys (): TrustedKey[] {
    this.#refresh()
    return [...this.#keys.values()]
  }

  #isSelf (publicKey: Uint8Array): boolean {
    return Buffer.compare(Buffer.from(publicKey), Buffer.from(this.self.publicKey)) === 0
  }

  /** The trusted-keys entry for `publicKey`, if there is one. */
  trustedKey (publicKey: Uint8Array): TrustedKey | undefined {
    this.#refresh()
    return this.#keys.get(Buffer.from(publicKey).toString('base64'))
  }

  /** Whether `publicKey` is this node's own key or an explicitly trusted one. */
  isTrustedKey (publicKey: Uint8Array): boolean {
    return this.#isSelf(publicKey) || this.trustedKey(publicKey) !== undefined
  }

  /**
   * Whether the holder of `publicKey` is an operator of this node: its own key, or a key
   * marked `role=operator` in trusted-keys. A peer trusted only through the mesh key is not.
   */
  isOperator (publicKey: Uint8Array): boolean {
    return this.#isSelf(publicKey) || this.trustedKey(publicKey)?.operator === true
  }

  /**
   * The name this node gives `publicKey`: its own name for its own key, else the key's
   * trusted-keys label. Undefined for an unlabelled key or a peer known only through the
   * mesh key: the caller then uses the node id, and may show the peer's self-declared
   * name as a hint, never as the name.
   */
  nameOf (publicKey: Uint8Array): string | undefined {
    if (this.#isSelf(publicKey)) return this.self.name
    const name = this.trustedKey(publicKey)?.name
    return name === undefined || name === '' ? undefined : name
  }

  /** `nameOf(publicKey)`, else the key's node id: what status, the trace and the policy call a peer. */
  nameOrId (publicKey: Uint8Array): string {
    return this.nameOf(publicKey) ?? nodeIdOf(publicKey)
  }

  /** HMAC-SHA256 of `data` under the mesh key this node sends with, or undefined without one. */
  meshMac (data: Uint8Array): Uint8Array | undefined {
    const key = this.meshKey
    return key === undefined ? undefined : new Uint8Array(createHmac('sha256', key).update(data).digest())
  }

  /**
   * Constant-time check of a mesh MAC against every mesh key accepted now (during a
   * rotation, the old and the new); false when this node has none.
   */
  checkMeshMac (data: Uint8Array, mac: Uint8Array | undefined): boolean {
    if (mac === undefined || mac.length !== 32) return false
    this.#refresh()
    const now = this.#now()
    let ok = false
    for (const e of this.#meshKeys) {
      if (e.notAfter !== undefined && now >= e.notAfter) continue
      const expected = createHmac('sha256', e.key).update(data).digest()
      if (timingSafeEqual(expected, mac)) ok = true
    }
    return ok
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
    this.#meshKeys = existsSync(meshPath) ? parseMeshKeys(readFileSync(meshPath, 'utf8'), meshPath) : []
  }
}

// ---- trusted-keys ------------------------------------------------------------------

/*
 * A trusted-keys line is `<base64 public key> [label] [attr=value ...]`, `#` starts a
 * comment. The attributes evalmesh writes are `role=operator` and `added=<ISO time>`;
 * unknown ones are ignored. Older evalmesh read the key and the label and ignore the rest,
 * and every older file is read as before (no operators), so the format is compatible both ways.
 */
interface ParsedLine { entry: TrustedKey, attrs: Map<string, string> }

function parseLine (raw: string, source: string, lineNo: number): ParsedLine | undefined {
  const line = raw.replace(/#.*/, '').trim()
  if (line === '') return undefined
  const [b64, ...rest] = line.split(/\s+/)
  const key = Buffer.from(b64!, 'base64')
  if (key.length !== 32) throw new Error(`${source}:${lineNo}: not a base64 Ed25519 public key (want 32 bytes)`)
  const attrs = new Map<string, string>()
  let name = ''
  for (const tok of rest) {
    const eq = tok.indexOf('=')
    if (eq > 0) attrs.set(tok.slice(0, eq).toLowerCase(), tok.slice(eq + 1))
    else if (name === '') name = tok
  }
  const entry: TrustedKey = {
    key: new Uint8Array(key), id: nodeIdOf(key), name, fingerprint: fingerprint(key),
    operator: (attrs.get('role') ?? '').split(',').includes('operator')
  }
  const added = attrs.get('added'); if (added !== undefined) entry.added = added
  return { entry, attrs }
}

export function parseTrustedKeys (text: string, source = 'trusted-keys'): Map<string, TrustedKey> {
  const keys = new Map<string, TrustedKey>()
  text.split('\n').forEach((raw, i) => {
    const p = parseLine(raw, source, i + 1)
    if (p !== undefined) keys.set(Buffer.from(p.entry.key).toString('base64'), p.entry)
  })
  return keys
}

/** The trusted-keys line for `entry` (with its attributes). */
export function formatTrustedKey (entry: Pick<TrustedKey, 'key' | 'name' | 'operator' | 'added'>): string {
  return [
    Buffer.from(entry.key).toString('base64'),
    ...(entry.name !== '' ? [entry.name] : []),
    ...(entry.operator ? ['role=operator'] : []),
    ...(entry.added !== undefined ? [`added=${entry.added}`] : [])
  ].join(' ')
}

/** The line another node puts in its trusted-keys file to trust this one. */
export function trustLine (identity: Identity): string {
  return `${Buffer.from(identity.publicKey).toString('base64')} ${identity.name}`
}

/** Refuse a label that is empty-looking, reserved by the policy, or would not survive the file format. */
export function checkLabel (name: string): void {
  if (!/^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$/.test(name)) {
    throw new Error(`label "${name}" must be 1-63 letters, digits, ".", "_" or "-", starting with a letter or digit`)
  }
  if (RESERVED_LABELS.has(name.toLowerCase())) throw new Error(`label "${name}" is reserved by the admission policy; choose another`)
  if (/^[0-9a-f]{16}$/.test(name)) throw new Error(`label "${name}" looks like a node id; choose another`)
}

function readLines (path: string): string[] {
  if (!existsSync(path)) return []
  const text = readFileSync(path, 'utf8')
  const lines = text.split('\n')
  if (lines.at(-1) === '') lines.pop()
  return lines
}

function writeLines (path: string, lines: string[]): void {
  writePrivateFile(path, lines.length === 0 ? '' : lines.join('\n') + '\n')
}

export interface AddTrustedKeyOptions {
  /** true marks the key operator, false clears the mark; undefined keeps an existing key's. */
  operator?: boolean
  /** Clock, for tests. */
  now?: () => Date
}

export interface AddedTrustedKey extends TrustedKey {
  /** What happened to the file. */
  change: 'added' | 'updated' | 'unchanged'
}

/**
 * Trust a key given as a `"<base64 public key> [label]"` line (the output of `evalmesh key`),
 * writing its operator mark and the time. A key already trusted keeps its line, updated
 * with a new label or operator mark if given.
 */
export function addTrustedKey (stateDir: string, line: string, options: AddTrustedKeyOptions = {}): AddedTrustedKey {
  const parsed = [...parseTrustedKeys(line, 'argument').values()]
  if (parsed.length !== 1) throw new Error('give exactly one "<base64 public key> [label]" line')
  const given = parsed[0]!
  if (given.name !== '') checkLabel(given.name)
  ensureStateDir(stateDir)
  const path = join(stateDir, TRUSTED_KEYS_FILE)
  const lines = readLines(path)
  const b64 = Buffer.from(given.key).toString('base64')
  for (let i = 0; i < lines.length; i++) {
    const p = parseLine(lines[i]!, path, i + 1)
    if (p === undefined || Buffer.from(p.entry.key).toString('base64') !== b64) continue
    const next: TrustedKey = { ...p.entry }
    if (given.name !== '') next.name = given.name
    if (options.operator !== undefined) next.operator = options.operator
    if (next.name === p.entry.name && next.operator === p.entry.operator) return { ...p.entry, change: 'unchanged' }
    const comment = /#.*/.exec(lines[i]!)?.[0]
    lines[i] = formatTrustedKey(next) + (comment !== undefined ? ' ' + comment : '')
    writeLines(path, lines)
    return { ...next, change: 'updated' }
  }
  const entry: TrustedKey = {
    ...given, operator: options.operator === true,
    added: (options.now?.() ?? new Date()).toISOString().replace(/\.\d{3}Z$/, 'Z')
  }
  lines.push(formatTrustedKey(entry))
  writeLines(path, lines)
  return { ...entry, change: 'added' }
}

/** The keys in `stateDir`'s trusted-keys file, in file order. */
export function listTrustedKeys (stateDir: string): TrustedKey[] {
  const path = join(stateDir, TRUSTED_KEYS_FILE)
  return existsSync(path) ? [...parseTrustedKeys(readFileSync(path, 'utf8'), path).values()] : []
}

/** Whether `entry` is the one `selector` names: label, fingerprint (with or without `SHA256:`), node id or base64 key. */
function selects (entry: TrustedKey, selector: string): boolean {
  const s = selector.trim()
  if (s === '') return false
  return entry.name === s || entry.fingerprint === s || entry.fingerprint === 'SHA256:' + s ||
    entry.id === s.toLowerCase() || Buffer.from(entry.key).toString('base64') === s
}

/**
 * Stop trusting the key(s) `selector` names (label, fingerprint, node id or base64 key).
 * A label shared by several keys is refused: name one by its fingerprint. Comments and
 * other lines are kept. Returns what was removed; throws if nothing matches.
 */
export function removeTrustedKey (stateDir: string, selector: string): TrustedKey[] {
  const path = join(stateDir, TRUSTED_KEYS_FILE)
  const lines = readLines(path)
  const hits: number[] = []
  const removed: TrustedKey[] = []
  lines.forEach((raw, i) => {
    const p = parseLine(raw, path, i + 1)
    if (p !== undefined && selects(p.entry, selector)) { hits.push(i); removed.push(p.entry) }
  })
  if (removed.length === 0) throw new Error(`no trusted key matches "${selector}" (give a label, a fingerprint, a node id or the key; \`evalmesh trust list\` shows them)`)
  const distinct = new Set(removed.map(k => Buffer.from(k.key).toString('base64')))
  if (distinct.size > 1) {
    throw new Error(`"${selector}" names ${distinct.size} keys (${removed.map(k => k.fingerprint).join(', ')}): remove one by its fingerprint`)
  }
  writeLines(path, lines.filter((_, i) => !hits.includes(i)))
  return removed.slice(0, 1)
}

// ---- mesh keys ---------------------------------------------------------------------

/*
 * mesh.key holds one key per line, oldest first: `<base64 key> [send-from=<ISO>] [not-after=<ISO>]`.
 * A file of one bare base64 line (all older evalmesh wrote) is one key, sent and accepted
 * with no end. A rotation adds the new key with `send-from` and gives the old `not-after`:
 * both are accepted until then, and this node MACs with the new one from `send-from` on.
 */
export function parseMeshKeys (text: string, source = MESH_KEY_FILE): MeshKeyEntry[] {
  const out: MeshKeyEntry[] = []
  text.split('\n').forEach((raw, i) => {
    const line = raw.replace(/#.*/, '').trim()
    if (line === '') return
    const [b64, ...attrs] = line.split(/\s+/)
    const key = Buffer.from(b64!, 'base64')
    if (key.length < 16) throw new Error(`${source}:${i + 1}: mesh key must be base64 of at least 16 bytes`)
    const e: MeshKeyEntry = { key, fingerprint: meshFingerprint(key) }
    for (const a of attrs) {
      const eq = a.indexOf('=')
      const name = eq < 0 ? a : a.slice(0, eq)
      if (name !== 'send-from' && name !== 'not-after') continue
      const t = Date.parse(a.slice(eq + 1))
      if (Number.isNaN(t)) throw new Error(`${source}:${i + 1}: ${name} must be an ISO 8601 time, got "${a.slice(eq + 1)}"`)
      if (name === 'send-from') e.sendFrom = t
      else e.notAfter = t
    }
    out.push(e)
  })
  if (out.length === 0) throw new Error(`${source}: holds no mesh key`)
  return out
}

const iso = (ms: number): string => new Date(ms).toISOString().replace(/\.\d{3}Z$/, 'Z')

export function formatMeshKeys (entries: readonly MeshKeyEntry[]): string {
  return ['# evalmesh mesh keys, oldest first: <base64 key> [send-from=<time>] [not-after=<time>] (evalmesh trust mesh-key list)',
    ...entries.map(e => [e.key.toString('base64'), ...(e.sendFrom !== undefined ? [`send-from=${iso(e.sendFrom)}`] : []), ...(e.notAfter !== undefined ? [`not-after=${iso(e.notAfter)}`] : [])].join(' '))
  ].join('\n') + '\n'
}

function parseMeshKeyArg (base64: string): Buffer {
  const key = Buffer.from(base64.trim(), 'base64')
  if (key.length < 16 || key.toString('base64').replace(/=+$/, '') !== base64.trim().replace(/=+$/, '')) {
    throw new Error('mesh key must be base64 of at least 16 bytes')
  }
  return key
}

/** The mesh keys in `stateDir` with their states now (empty without a mesh.key). */
export function listMeshKeys (stateDir: string, now = Date.now()): MeshKeyStatus[] {
  const path = join(stateDir, MESH_KEY_FILE)
  return existsSync(path) ? meshKeyStates(parseMeshKeys(readFileSync(path, 'utf8'), path), now) : []
}

/** Create a new mesh key file (0600); returns its base64 text. Refuses to overwrite. */
export function createMeshKey (stateDir: string): string {
  const path = join(stateDir, MESH_KEY_FILE)
  if (existsSync(path)) throw new Error(`${path} already exists (to change the mesh key without downtime: evalmesh trust mesh-key rotate)`)
  ensureStateDir(stateDir)
  const text = randomBytes(32).toString('base64')
  writePrivateFile(path, text + '\n')
  return text
}

/** Install a mesh key given as base64 text (0600), replacing any other at once. */
export function importMeshKey (stateDir: string, base64: string): void {
  parseMeshKeyArg(base64)
  ensureStateDir(stateDir)
  writePrivateFile(join(stateDir, MESH_KEY_FILE), base64.trim() + '\n')
}

export interface RotateMeshKeyOptions {
  /** The new key (base64), as the first node's rotation printed it; default: make one. */
  key?: string
  /** How long the old key stays accepted (ms, default one hour); ignored when `notAfter` is given. */
  windowMs?: number
  /** When this node starts MACing with the new key (epoch ms); default half-way through the window. */
  sendFrom?: number
  /** When the old key stops being accepted (epoch ms); default now + window. */
  notAfter?: number
  now?: number
}

export interface MeshKeyRotation {
  /** The new key, base64: give it to every other node (a secret). */
  key: string
  fingerprint: string
  sendFrom: number
  notAfter: number
  /** The command that makes the same rotation on another node. */
  command: string
}

/**
 * Rotate the mesh key without downtime. The new key is accepted at once; this node keeps
 * MACing with the old one until `sendFrom`, and accepts the old one until `notAfter`,
 * after which it is dropped. Every node of the mesh must make the same rotation (same key,
 * same times: `command`) before `sendFrom`.
 */
export function rotateMeshKey (stateDir: string, options: RotateMeshKeyOptions = {}): MeshKeyRotation {
  const path = join(stateDir, MESH_KEY_FILE)
  const now = options.now ?? Date.now()
  if (!existsSync(path)) throw new Error(`no mesh key in ${stateDir} to rotate (evalmesh trust mesh-key create or import makes one)`)
  const current = parseMeshKeys(readFileSync(path, 'utf8'), path).filter(e => e.notAfter === undefined || now < e.notAfter)
  const windowMs = options.windowMs ?? 3_600_000
  if (!(windowMs > 0)) throw new Error('the rotation window must be longer than 0')
  const notAfter = options.notAfter ?? now + windowMs
  const sendFrom = options.sendFrom ?? Math.round(now + (notAfter - now) / 2)
  if (!(notAfter > now)) throw new Error(`not-after ${iso(notAfter)} has passed: the old key would be dropped at once`)
  if (sendFrom > notAfter) throw new Error('send-from must not be later than not-after')
  const key = options.key !== undefined ? parseMeshKeyArg(options.key) : randomBytes(32)
  const b64 = key.toString('base64')
  if (current.some(e => e.key.equals(key))) throw new Error('that mesh key is already installed here')
  const pending = current.find(e => e.notAfter !== undefined || (e.sendFrom !== undefined && e.sendFrom > now))
  if (pending !== undefined) {
    throw new Error(`a rotation is already under way here (until ${iso(pending.notAfter ?? pending.sendFrom!)}): wait for it to end, or finish it now with \`evalmesh trust mesh-key retire\``)
  }
  const next: MeshKeyEntry[] = [
    ...current.map(e => ({ ...e, notAfter })),
    { key, fingerprint: meshFingerprint(key), sendFrom }
  ]
  ensureStateDir(stateDir)
  writePrivateFile(path, formatMeshKeys(next))
  return {
    key: b64, fingerprint: meshFingerprint(key), sendFrom, notAfter,
    command: `evalmesh trust mesh-key rotate --key ${b64} --send-from ${iso(sendFrom)} --not-after ${iso(notAfter)}`
  }
}

/**
 * End a rotation now: keep only the newest mesh key, sent and accepted from now on.
 * Returns the fingerprints dropped.
 */
export function retireMeshKeys (stateDir: string): string[] {
  const path = join(stateDir, MESH_KEY_FILE)
  if (!existsSync(path)) throw new Error(`no mesh key in ${stateDir}`)
  const all = parseMeshKeys(readFileSync(path, 'utf8'), path)
  const newest = all.at(-1)!
  writePrivateFile(path, newest.key.toString('base64') + '\n')
  return all.slice(0, -1).map(e => e.fingerprint)
}

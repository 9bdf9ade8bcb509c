import { existsSync, statSync, type Stats } from 'node:fs'
import { join } from 'node:path'

/*
 * File modes as a careful daemon keeps them (docs/SECURITY.md, "Files and permissions").
 *
 * The state directory holds the node's private key and the files that decide whom it
 * trusts, so another local user must neither read the key nor plant trust:
 *  - the directory must not be writable by group or others, and, once it holds the
 *    key, not readable by them either (0700 is what evalmesh makes; 0711 passes);
 *  - node.key must be readable and writable by its owner only (0600 or 0400);
 *  - if the directory lets others in at all (x bits), mesh.key must be owner-only too
 *    and trusted-keys and peers must not be writable by others;
 *  - every one of them must belong to the user running evalmesh (or to root).
 * The checks look at mode bits and owner only, so they mean the same run as root.
 */

/** A file or directory whose mode lets another local user read or change it. */
export class UnsafePermissionsError extends Error {
  override name = 'UnsafePermissionsError'
  readonly code = 'UNSAFE_PERMISSIONS'
  /** The file or directory at fault. */
  readonly path: string
  /** Its mode bits (e.g. 0o755). */
  readonly mode: number
  /** The shell command that fixes it, e.g. `chmod 700 /home/ann/.evalmesh`. */
  readonly fix: string

  constructor (path: string, mode: number, problem: string, fix: string) {
    super(`refusing to use ${path}: ${problem} (mode ${octal(mode)}). Fix it with: ${fix}`)
    this.path = path
    this.mode = mode
    this.fix = fix
  }
}

const supported = (): boolean => process.platform !== 'win32' && typeof process.getuid === 'function'

export function octal (mode: number): string {
  return '0' + (mode & 0o7777).toString(8).padStart(3, '0')
}

/** `path` quoted for a POSIX shell when it needs it. */
export function shellQuote (path: string): string {
  return /^[A-Za-z0-9_./@%+=:,-]+$/.test(path) ? path : `'${path.replace(/'/g, `'\\''`)}'`
}

/** "group", "others" or "group and others", for the bits of `mask` set in `mode`. */
function whom (mode: number, bits: number): string {
  const g = (mode & (bits & 0o070)) !== 0
  const o = (mode & (bits & 0o007)) !== 0
  return g && o ? 'group and others' : g ? 'group' : 'others'
}

function what (mode: number, readMask: number, writeMask: number): string {
  const r = (mode & readMask) !== 0
  const w = (mode & writeMask) !== 0
  return r && w ? `readable and writable by ${whom(mode, readMask | writeMask)}` : r ? `readable by ${whom(mode, readMask)}` : `writable by ${whom(mode, writeMask)}`
}

function checkOwner (path: string, st: Stats, fix: string): void {
  const uid = process.getuid!()
  if (st.uid !== uid && st.uid !== 0) {
    throw new UnsafePermissionsError(path, st.mode, `it belongs to user ${st.uid}, not to the user running evalmesh (${uid}), who could replace it`, `chown ${uid} ${shellQuote(path)} && ${fix}`)
  }
}

/**
 * Refuse a file holding a secret (the node key) that anyone but its owner may read or
 * write. Passes for a missing file. Throws UnsafePermissionsError naming the chmod.
 */
export function assertPrivateFile (path: string, what_ = 'this node\'s private key'): void {
  if (!supported() || !existsSync(path)) return
  const st = statSync(path)
  const fix = `chmod 600 ${shellQuote(path)}`
  checkOwner(path, st, fix)
  if ((st.mode & 0o077) !== 0) {
    const stolen = (st.mode & 0o044) !== 0 ? '; another user may already have copied it: consider a new key (docs/SECURITY.md)' : ''
    throw new UnsafePermissionsError(path, st.mode, `it holds ${what_} and is ${what(st.mode, 0o044, 0o022)}${stolen}`, fix)
  }
}

/** Refuse a file that decides trust (trusted-keys, peers) that others may write. */
export function assertNotWritableByOthers (path: string, what_ = 'whom this node trusts'): void {
  if (!supported() || !existsSync(path)) return
  const st = statSync(path)
  const fix = `chmod go-w ${shellQuote(path)}`
  checkOwner(path, st, fix)
  if ((st.mode & 0o022) !== 0) {
    throw new UnsafePermissionsError(path, st.mode, `it decides ${what_} and is ${what(st.mode, 0, 0o022)}`, fix)
  }
}

export interface PrivateDirOptions {
  /** The directory holds (or is about to hold) a private key: group/other read is refused too. Default true. */
  holdsKey?: boolean
}

/**
 * Refuse a directory that group or others may write (they could plant files), or read
 * when it holds a key. Passes for a missing directory.
 */
export function assertPrivateDir (path: string, options: PrivateDirOptions = {}): void {
  if (!supported() || !existsSync(path)) return
  const st = statSync(path)
  const fix = `chmod 700 ${shellQuote(path)}`
  if (!st.isDirectory()) throw new UnsafePermissionsError(path, st.mode, 'it is not a directory', `mv ${shellQuote(path)} ${shellQuote(path + '.old')}`)
  checkOwner(path, st, fix)
  if ((st.mode & 0o022) !== 0) {
    throw new UnsafePermissionsError(path, st.mode, `the state directory is ${what(st.mode, 0o044, 0o022)}, so another user could plant trusted-keys or replace the node key`, fix)
  }
  if (options.holdsKey !== false && (st.mode & 0o044) !== 0) {
    throw new UnsafePermissionsError(path, st.mode, `the state directory holds this node's private key and is ${what(st.mode, 0o044, 0)}`, fix)
  }
}

const KEY_FILE_NAME = 'node.key'

/**
 * Check a state directory and the files in it that hold secrets or decide trust.
 * Called wherever a key is loaded, so `serve`, `start` and every client refuse alike.
 */
export function assertStateDirSafe (stateDir: string): void {
  if (!supported() || !existsSync(stateDir)) return
  const keyPath = join(stateDir, KEY_FILE_NAME)
  assertPrivateDir(stateDir, { holdsKey: existsSync(keyPath) })
  assertPrivateFile(keyPath)
  const dirMode = statSync(stateDir).mode
  if ((dirMode & 0o077) === 0) return // nobody else can reach anything inside
  assertPrivateFile(join(stateDir, 'mesh.key'), 'the mesh key')
  assertNotWritableByOthers(join(stateDir, 'trusted-keys'))
  assertNotWritableByOthers(join(stateDir, 'peers'), 'where this node\'s peers are')
}

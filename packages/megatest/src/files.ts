import { chmodSync, closeSync, existsSync, mkdirSync, openSync } from 'node:fs'
import { EvalMeshError } from '@evalmesh/protocol'

/*
 * An area's files as a careful daemon keeps them: the directory 0700 and every database
 * file (the db, its -wal and its -shm) 0600, so that another local user can read neither
 * the CI database nor the registrations. SQLite gives -wal and -shm the mode of their
 * database file, so a database is made 0600 before it is first opened.
 */
export const AREA_DIR_MODE = 0o700
export const AREA_FILE_MODE = 0o600

/** The files SQLite keeps beside `db` in WAL mode. */
export const sidecars = (db: string): string[] => [db, `${db}-wal`, `${db}-shm`]

/**
 * chmod `path` to `mode`. A file this user does not own (EPERM) is an error for an area the
 * node writes, and is left as it is for a read-only one (not ours to change).
 */
function tighten (area: string, path: string, mode: number, readOnly: boolean): void {
  try {
    chmodSync(path, mode)
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code
    if (code === 'ENOENT') return
    if (readOnly && (code === 'EPERM' || code === 'EROFS' || code === 'EACCES')) return
    throw new EvalMeshError('MEGATEST_ERROR', `area ${area}: cannot make ${path} private (${code ?? String(err)}): the node must own the files of an area it writes`, {}, { cause: err })
  }
}

/** Create the area directory 0700 (an existing one is made 0700). */
export function secureAreaDir (area: string, dir: string, readOnly: boolean): void {
  if (!existsSync(dir)) mkdirSync(dir, { recursive: true, mode: AREA_DIR_MODE })
  tighten(area, dir, AREA_DIR_MODE, readOnly)
}

/**
 * Make `db` and its -wal and -shm 0600; create `db` empty (a valid empty SQLite file) at
 * 0600 first when `create` is set, so SQLite never makes it with the umask's mode.
 */
export function secureDbFiles (area: string, db: string, readOnly: boolean, create = false): void {
  if (create && !existsSync(db)) closeSync(openSync(db, 'a', AREA_FILE_MODE))
  for (const f of sidecars(db)) tighten(area, f, AREA_FILE_MODE, readOnly)
}

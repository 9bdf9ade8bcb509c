import { createHash } from 'node:crypto'
import { existsSync } from 'node:fs'
import { join, resolve } from 'node:path'
import Database from 'better-sqlite3'
import { EvalMeshError, scrubPaths } from '@evalmesh/protocol'
import { Args } from './args.js'
import { loadOrCreateConfig, type KeyField } from './config.js'
import { MEGATEST_VERSION } from './constants.js'
import { mainSchema, NO_SYNC_SCHEMA } from './schema.js'
import { COMMANDS, type CommandDef } from './commands/index.js'
import { NOT_SERVED } from './coverage.js'
import { secureAreaDir, secureDbFiles } from './files.js'

/** The database file holding every table of an area (v1.65 layout: one file). */
export const MAIN_DB_FILE = 'megatest.db'
/** Locks, sync times and process registrations; never synced anywhere. */
export const NO_SYNC_DB_FILE = 'no-sync.db'

const STMT_CACHE_LIMIT = 512

export interface AreaInit {
  /** The name clients use: `megatest.<command>(name, ...)`. */
  name: string
  /** The area directory: megatest.config, megatest.db and no-sync.db live here. */
  dir: string
  /**
   * Run keys for a new area, in target order: `'TARGET'` (TEXT), `'NAME TYPE'`
   * or `{ name, type }`. An existing megatest.config wins; given keys must match it.
   */
  keys?: ReadonlyArray<string | KeyField>
  /** Refuse every write command with READ_ONLY. */
  readOnly?: boolean
  /**
   * SQLite `synchronous` in WAL mode. 'normal' (default): an acknowledged write
   * survives the process being killed; 'full' also survives power loss.
   */
  synchronous?: 'normal' | 'full'
  /** Clock in seconds, for tests of time-dependent commands. */
  now?: () => number
}

/** What a command sees: the area and its open databases. */
export interface AreaContext {
  readonly name: string
  readonly dir: string
  readonly keys: readonly KeyField[]
  readonly keyNames: readonly string[]
  readonly db: Database.Database
  /** null only for a read-only area whose no-sync.db was never created. */
  readonly nosync: Database.Database | null
  readonly signature: string
  now: () => number
  /** A prepared statement, cached per SQL text. */
  stmt: (sql: string) => Database.Statement
  nsStmt: (sql: string) => Database.Statement
  requestKill: () => void
}

/** The server signature of an area: a stable md5 of its absolute path (tt:mk-signature). */
export function areaSignature (dir: string): string {
  return createHash('md5').update(resolve(dir)).digest('hex')
}

function normalizeKeys (keys: AreaInit['keys']): KeyField[] | undefined {
  if (keys === undefined) return undefined
  return keys.map(k => {
    if (typeof k === 'string') {
      const [name = '', type = 'TEXT'] = k.trim().split(/\s+/)
      return { name, type }
    }
    return { name: k.name, type: k.type ?? 'TEXT' }
  })
}

export class MegatestArea {
  readonly name: string
  readonly dir: string
  readonly readOnly: boolean
  readonly signature: string
  readonly keys: readonly KeyField[]
  /** Set by kill-server: the service then stops serving this area (never the node). */
  killRequested = false
  onKill: ((area: string) => void) | undefined
  private readonly ctx: AreaContext
  private readonly db: Database.Database
  private readonly nosync: Database.Database | null
  private closed = false

  constructor (init: AreaInit) {
    if (typeof init.name !== 'string' || init.name === '') throw new EvalMeshError('BAD_MESSAGE', 'area name must be a non-empty string')
    if (typeof init.dir !== 'string' || init.dir === '') throw new EvalMeshError('BAD_MESSAGE', `area ${init.name}: dir must be a non-empty string`)
    this.name = init.name
    this.dir = resolve(init.dir)
    this.readOnly = init.readOnly === true
    this.signature = areaSignature(this.dir)
    if (!existsSync(this.dir)) {
      if (this.readOnly) throw new EvalMeshError('READ_ONLY', `area ${this.name} is read-only and ${this.dir} does not exist`)
    }
    secureAreaDir(this.name, this.dir, this.readOnly)
    this.keys = loadOrCreateConfig(this.name, this.dir, normalizeKeys(init.keys), this.readOnly)
    const mainFile = join(this.dir, MAIN_DB_FILE)
    const nsFile = join(this.dir, NO_SYNC_DB_FILE)
    const sync = init.synchronous === 'full' ? 'FULL' : 'NORMAL'
    for (const f of [mainFile, nsFile]) secureDbFiles(this.name, f, this.readOnly, !this.readOnly)
    if (this.readOnly) {
      if (!existsSync(mainFile)) throw new EvalMeshError('READ_ONLY', `area ${this.name} is read-only and has no ${MAIN_DB_FILE}`)
      this.db = openReadOnly(mainFile)
      this.nosync = existsSync(nsFile) ? openReadOnly(nsFile) : null
    } else {
      this.db = new Database(mainFile)
      this.db.pragma('journal_mode = WAL')
      this.db.pragma(`synchronous = ${sync}`)
      this.db.pragma('busy_timeout = 10000')
      this.db.pragma('foreign_keys = OFF')
      this.db.exec(mainSchema(this.keys))
      this.initMain()
      this.nosync = new Database(nsFile)
      this.nosync.pragma('journal_mode = WAL')
      this.nosync.pragma(`synchronous = ${sync}`)
      this.nosync.pragma('busy_timeout = 10000')
      this.nosync.exec(NO_SYNC_SCHEMA)
      // WAL mode has made -wal and -shm (with the db's 0600); an older area's may predate it.
      for (const f of [mainFile, nsFile]) secureDbFiles(this.name, f, false)
    }
    this.checkKeysTable()
    const cache = new Map<string, Database.Statement>()
    const nsCache = new Map<string, Database.Statement>()
    const db = this.db
    const nosync = this.nosync
    this.ctx = {
      name: this.name,
      dir: this.dir,
      keys: this.keys,
      keyNames: this.keys.map(k => k.name),
      db,
      nosync,
      signature: this.signature,
      now: init.now ?? (() => Math.floor(Date.now() / 1000)),
      stmt: (sql) => {
        let s = cache.get(sql)
        if (s === undefined) {
          // Pattern lists vary the SQL text by their length; keep the cache bounded.
          if (cache.size >= STMT_CACHE_LIMIT) cache.clear()
          s = db.prepare(sql)
          cache.set(sql, s)
        }
        // Callers switch pluck on per use; a cached statement must not keep it.
        return s.reader ? s.pluck(false) : s
      },
      nsStmt: (sql) => {
        if (nosync === null) throw new EvalMeshError('MEGATEST_ERROR', `area ${this.name} has no ${NO_SYNC_DB_FILE} (read-only area never opened for writing)`)
        let s = nsCache.get(sql)
        if (s === undefined) { s = nosync.prepare(sql); nsCache.set(sql, s) }
        return s.reader ? s.pluck(false) : s
      },
      requestKill: () => {
        this.killRequested = true
        this.onKill?.(this.name)
      }
    }
  }

  private initMain (): void {
    const db = this.db
    db.transaction(() => {
      const existing = db.prepare('SELECT fieldname FROM keys ORDER BY id').pluck().all() as string[]
      if (existing.length === 0) {
        const ins = db.prepare('INSERT OR IGNORE INTO keys (fieldname, fieldtype) VALUES (?, ?)')
        for (const k of this.keys) ins.run(k.name, k.type)
      }
      db.prepare("DELETE FROM tasks_queue WHERE state='done' AND creation_time < strftime('%s','now') - 86400").run()
      db.prepare('INSERT OR REPLACE INTO metadat (var, val) VALUES (?, ?)').run('MEGATEST_VERSION', MEGATEST_VERSION)
    }).immediate()
  }

  /** The keys table and the runs columns must agree with megatest.config. */
  private checkKeysTable (): void {
    const existing = this.db.prepare('SELECT fieldname FROM keys ORDER BY id').pluck().all() as string[]
    const want = this.keys.map(k => k.name)
    if (existing.length !== want.length || existing.some((k, i) => k !== want[i])) {
      throw new EvalMeshError('BAD_MESSAGE',
        `area ${this.name}: megatest.config [fields] (${want.join(' ')}) differ from the keys of ${MAIN_DB_FILE} (${existing.join(' ')})`)
    }
  }

  command (name: string): CommandDef {
    const def = COMMANDS.get(name)
    const why = def === undefined ? NOT_SERVED.get(name) : undefined
    if (why !== undefined) {
      throw new EvalMeshError('MEGATEST_NOT_SERVED', `Megatest command "${name}" is deliberately not served (area ${this.name}): ${why}`, { command: name, reason: why })
    }
    if (def === undefined) {
      throw new EvalMeshError('UNKNOWN_COMMAND', `unknown Megatest command "${name}" (area ${this.name})`, { command: name })
    }
    return def
  }

  /**
   * Run one command synchronously. A write runs in one IMMEDIATE transaction,
   * so it is atomic and, once this returns, on disk (WAL, committed).
   */
  exec (command: string, params: readonly unknown[] = []): unknown {
    if (this.closed) throw new EvalMeshError('MEGATEST_ERROR', `area ${this.name} is closed`)
    if (typeof command !== 'string') throw new EvalMeshError('BAD_MESSAGE', 'command must be a string')
    if (!Array.isArray(params)) throw new EvalMeshError('BAD_MESSAGE', `${command}: params must be a list`)
    const def = this.command(command)
    if (def.mode === 'write' && this.readOnly) {
      throw new EvalMeshError('READ_ONLY', `area ${this.name} is read-only: ${command} is a write command`, { command, area: this.name })
    }
    const args = new Args(command, def.params, params)
    try {
      if (def.mode === 'read' || def.db === 'none') return def.run(this.ctx, args)
      const target = def.db === 'nosync' ? this.nosync : this.db
      if (target === null) return def.run(this.ctx, args)
      return target.transaction(() => def.run(this.ctx, args)).immediate()
    } catch (err) {
      const where = { name: this.name, dir: this.dir }
      if (err instanceof EvalMeshError) {
        if (!err.message.includes('/')) throw err
        throw new EvalMeshError(err.code, scrubPaths(err.message, where), err.data, { cause: err })
      }
      // Host errors (SQLite, the file system) may name files: clients see the area's name only.
      const msg = scrubPaths(err instanceof Error ? err.message : String(err), where)
      const sqliteCode = (err as { code?: unknown }).code
      throw new EvalMeshError('MEGATEST_ERROR', `${command} failed in area ${this.name}: ${msg}`,
        { command, area: this.name, ...(typeof sqliteCode === 'string' ? { sqlite: sqliteCode } : {}) }, { cause: err })
    }
  }

  close (): void {
    if (this.closed) return
    this.closed = true
    this.db.close()
    this.nosync?.close()
  }
}

function openReadOnly (file: string): Database.Database {
  const db = new Database(file, { readonly: true, fileMustExist: true })
  db.pragma('busy_timeout = 10000')
  return db
}

export function openArea (init: AreaInit): MegatestArea {
  return new MegatestArea(init)
}

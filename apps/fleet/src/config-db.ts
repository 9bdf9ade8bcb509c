import Database from 'better-sqlite3'
import { mkdirSync } from 'node:fs'
import { hostname, userInfo } from 'node:os'
import { dirname } from 'node:path'
import type { FleetConfig, NodeSpec } from './config.js'

/** One entry of the deployment log (after m2sh's, Mongrel2 manual §3.7). */
export interface LogEntry {
  id: number
  /** ISO time. */
  at: string
  user: string
  host: string
  pid: number
  /** The fleet command: load, start, commit... */
  command: string
  args: string[]
  /** A commit's message, or what the command did. */
  message: string | null
}

const SCHEMA = `
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS server (
  uuid TEXT PRIMARY KEY,
  name TEXT NOT NULL UNIQUE,
  position INTEGER NOT NULL,
  listen TEXT NOT NULL,
  port INTEGER NOT NULL,
  state_dir TEXT NOT NULL,
  log_file TEXT NOT NULL,
  spec TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS log (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  at TEXT NOT NULL,
  user TEXT NOT NULL,
  host TEXT NOT NULL,
  pid INTEGER NOT NULL,
  command TEXT NOT NULL,
  args TEXT NOT NULL,
  message TEXT
);
`

const SPEC_DEFAULTS: Partial<NodeSpec> = { areas: [], keys: [], readOnly: false, functions: null, hosts: [], gags: [], limits: {}, quotas: {}, after: [], args: [], trust: [], trustFleet: false, logLevel: null, logFormat: null }

function who (): { user: string, host: string } {
  let user: string
  try { user = userInfo().username } catch { user = process.env.USER ?? String(process.getuid?.() ?? '?') }
  return { user, host: hostname() }
}

/**
 * The fleet's config database (SQLite): the nodes `fleet load` read from the config
 * file, and the deployment log. Loading replaces the nodes; the log is never replaced.
 */
export class ConfigDb {
  readonly path: string
  readonly #db: Database.Database

  constructor (path: string, options: { create?: boolean } = {}) {
    this.path = path
    if (options.create === true) mkdirSync(dirname(path), { recursive: true })
    this.#db = new Database(path, { fileMustExist: options.create !== true })
    this.#db.pragma('journal_mode = WAL')
    this.#db.pragma('busy_timeout = 5000')
    this.#db.exec(SCHEMA)
  }

  close (): void {
    this.#db.close()
  }

  /** Replace the nodes with the config's, in one transaction; the log stays. */
  load (config: FleetConfig, file: string): void {
    this.#db.transaction(() => {
      this.#db.prepare('DELETE FROM server').run()
      const insert = this.#db.prepare('INSERT INTO server (uuid, name, position, listen, port, state_dir, log_file, spec) VALUES (?, ?, ?, ?, ?, ?, ?, ?)')
      config.nodes.forEach((n, i) => insert.run(n.uuid, n.name, i, n.listen, n.port, n.stateDir, n.log, JSON.stringify(n)))
      const meta = this.#db.prepare('INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)')
      meta.run('configFile', file)
      meta.run('loadedAt', new Date().toISOString())
      meta.run('runDir', config.runDir)
    })()
  }

  /** Whether `fleet load` has filled this database. */
  get loaded (): boolean {
    return this.meta('runDir') !== undefined
  }

  meta (key: string): string | undefined {
    const row = this.#db.prepare('SELECT value FROM meta WHERE key = ?').get(key) as { value: string } | undefined
    return row?.value
  }

  metaAll (): Record<string, string> {
    const rows = this.#db.prepare('SELECT key, value FROM meta ORDER BY key').all() as Array<{ key: string, value: string }>
    return Object.fromEntries(rows.map(r => [r.key, r.value]))
  }

  get runDir (): string {
    const r = this.meta('runDir')
    if (r === undefined) throw new Error(`${this.path}: no fleet loaded yet (evalmesh fleet load FILE)`)
    return r
  }

  /** The nodes, in config file order. */
  servers (): NodeSpec[] {
    const rows = this.#db.prepare('SELECT spec FROM server ORDER BY position').all() as Array<{ spec: string }>
    // A database loaded by an older evalmesh lacks the newer fields: their defaults.
    return rows.map(r => ({ ...SPEC_DEFAULTS, ...JSON.parse(r.spec) as NodeSpec }))
  }

  /** name to uuid, so that a reload keeps the uuids of nodes the file gives none. */
  uuids (): Map<string, string> {
    const rows = this.#db.prepare('SELECT name, uuid FROM server').all() as Array<{ name: string, uuid: string }>
    return new Map(rows.map(r => [r.name, r.uuid]))
  }

  /** Record one fleet command (who, where, when, the arguments). Returns the entry's id. */
  log (command: string, args: string[], message: string | null = null): number {
    const { user, host } = who()
    const r = this.#db.prepare('INSERT INTO log (at, user, host, pid, command, args, message) VALUES (?, ?, ?, ?, ?, ?, ?)')
      .run(new Date().toISOString(), user, host, process.pid, command, JSON.stringify(args), message)
    return Number(r.lastInsertRowid)
  }

  /** Add what a logged command did to its entry (a commit's message stays as it is). */
  note (id: number, message: string): void {
    this.#db.prepare('UPDATE log SET message = ? WHERE id = ? AND message IS NULL').run(message, id)
  }

  entries (limit?: number): LogEntry[] {
    const rows = (limit === undefined
      ? this.#db.prepare('SELECT * FROM log ORDER BY id').all()
      : this.#db.prepare('SELECT * FROM (SELECT * FROM log ORDER BY id DESC LIMIT ?) ORDER BY id').all(limit)) as Array<Omit<LogEntry, 'args'> & { args: string }>
    return rows.map(r => ({ ...r, args: JSON.parse(r.args) as string[] }))
  }
}

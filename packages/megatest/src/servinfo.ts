import { mkdirSync, readdirSync, readFileSync, renameSync, rmSync, statSync, utimesSync, writeFileSync } from 'node:fs'
import { cpus, loadavg } from 'node:os'
import { join, resolve } from 'node:path'
import { areaSignature } from './area.js'

/**
 * Server registration records, as Megatest's tt transport keeps them: one file
 * per server in `<area>/.servinfo/`, named `<host>:<port>-<pid>:<dbfname>`, holding
 * one line (`SERVER STARTED: <host>:<port> AT <secs> server-id: <id> pid: <pid>
 * dbfname: <db>`, which tt:server-get-info's regex reads; evalmesh adds ` node:
 * <name>` after it); a live server touches it every few seconds and readers treat
 * files older than the stale threshold as dead. One area is one database here, so
 * dbfname is always `main.db`, the one Megatest's clients start a server for.
 */

export const SERVINFO_DIR = '.servinfo'
/** tt:find-server: a file untouched for more than 10 s is not trusted. */
export const DEFAULT_STALE_MS = 10_000
/** A live server touches its file about every 5 s. */
export const HEARTBEAT_MS = 5_000
/** tt:server-process-run: no new start within 5 s of this client's last one. */
export const MIN_RESTART_MS = 5_000
/** The database a server serves, in its file name and line: the whole area here. */
export const SERVINFO_DBFNAME = 'main.db'

export interface ServerRegistration {
  host: string
  port: number
  /** Seconds since the epoch, with a fraction, when the server started. */
  startedAt: number
  /** The area signature (ping answers with it). */
  serverId: string
  pid: number
  /** The database it serves (Megatest's dbfname): `main.db`. */
  dbfname: string
  /** The evalmesh node name or id ('' in a file Megatest wrote). */
  node: string
  /** Absolute path of the registration file. */
  file: string
}

export interface StalenessOptions {
  /** ms since the epoch; default Date.now(). */
  nowMs?: number
  /** Files untouched for longer are stale; default 10 000 ms. */
  staleAfterMs?: number
}

// Megatest's line, with evalmesh's node after it; the older evalmesh line had node: in place of dbfname:.
const LINE = /^SERVER STARTED: (\S+):(\d+) AT (\d+(?:\.\d+)?) server-id: (\S+) pid: (\d+)(?: dbfname: (\S+))?(?: node: (.+))?$/

export function servinfoDir (areaDir: string): string {
  return join(resolve(areaDir), SERVINFO_DIR)
}

export function servinfoFileName (host: string, port: number, pid: number, dbfname = SERVINFO_DBFNAME): string {
  if (/[/\s]/.test(host) || host === '') throw new Error(`host "${host}" cannot name a servinfo file`)
  return `${host}:${port}-${pid}:${dbfname}`
}

export function formatServinfoLine (r: Omit<ServerRegistration, 'file' | 'dbfname'> & { dbfname?: string }): string {
  const node = r.node === '' ? '' : ` node: ${r.node}`
  return `SERVER STARTED: ${r.host}:${r.port} AT ${r.startedAt.toFixed(3)} server-id: ${r.serverId} pid: ${r.pid} dbfname: ${r.dbfname ?? SERVINFO_DBFNAME}${node}`
}

/** Parse one servinfo line (tt:server-get-info); null when it does not match. */
export function parseServinfoLine (line: string, file = ''): ServerRegistration | null {
  const m = LINE.exec(line.trim())
  if (m === null) return null
  const [, host = '', port = '', at = '', serverId = '', pid = '', dbfname = SERVINFO_DBFNAME, node = ''] = m
  return { host, port: Number(port), startedAt: Number(at), serverId, pid: Number(pid), dbfname, node: node.trim(), file }
}

export interface RegisterOptions {
  host: string
  port: number
  node: string
  pid?: number
  /** Defaults to the area signature. */
  serverId?: string
  /** Seconds since the epoch; default now. */
  startedAt?: number
}

/** Write this server's registration file (atomically) and return its record. */
export function registerServer (areaDir: string, opts: RegisterOptions): ServerRegistration {
  if (!Number.isSafeInteger(opts.port) || opts.port <= 0 || opts.port > 65535) throw new Error(`port ${String(opts.port)} is not a TCP port`)
  if (/[\r\n]/.test(opts.node) || opts.node.trim() === '') throw new Error('node must be a non-empty single line')
  const dir = servinfoDir(areaDir)
  mkdirSync(dir, { recursive: true, mode: 0o700 })
  const pid = opts.pid ?? process.pid
  const file = join(dir, servinfoFileName(opts.host, opts.port, pid))
  const rec: ServerRegistration = {
    host: opts.host,
    port: opts.port,
    startedAt: opts.startedAt ?? Date.now() / 1000,
    serverId: opts.serverId ?? areaSignature(areaDir),
    pid,
    dbfname: SERVINFO_DBFNAME,
    node: opts.node.trim(),
    file
  }
  const tmp = `${file}.tmp-${process.pid}`
  writeFileSync(tmp, formatServinfoLine(rec) + '\n')
  renameSync(tmp, file)
  return rec
}

/** The heartbeat: bump the file's mtime. False if the file is gone (someone judged us stale). */
export function touchServer (file: string, nowMs = Date.now()): boolean {
  try {
    const t = new Date(nowMs)
    utimesSync(file, t, t)
    return true
  } catch {
    return false
  }
}

export function unregisterServer (file: string): void {
  rmSync(file, { force: true })
}

interface Scanned { rec: ServerRegistration | null, file: string, ageMs: number }

function scan (areaDir: string, nowMs: number): Scanned[] {
  const dir = servinfoDir(areaDir)
  let names: string[]
  try {
    names = readdirSync(dir)
  } catch {
    return []
  }
  const out: Scanned[] = []
  for (const name of names) {
    if (name.includes('.tmp-')) continue
    const file = join(dir, name)
    try {
      const st = statSync(file)
      if (!st.isFile()) continue
      const line = readFileSync(file, 'utf8').split('\n')[0] ?? ''
      out.push({ rec: parseServinfoLine(line, file), file, ageMs: nowMs - st.mtimeMs })
    } catch {
      // Removed between readdir and read: another reader cleaned it.
    }
  }
  return out
}

/** Live registrations for main.db, oldest start first (the first is the primary, as in Megatest). */
export function listServers (areaDir: string, opts: StalenessOptions = {}): ServerRegistration[] {
  const now = opts.nowMs ?? Date.now()
  const stale = opts.staleAfterMs ?? DEFAULT_STALE_MS
  return scan(areaDir, now)
    .filter(s => s.rec !== null && s.ageMs <= stale && s.rec.dbfname === SERVINFO_DBFNAME)
    .map(s => s.rec as ServerRegistration)
    .sort((a, b) => a.startedAt - b.startedAt || (a.file < b.file ? -1 : a.file > b.file ? 1 : 0))
}

/** Delete stale and unreadable registration files; returns the removed paths. */
export function cleanStaleServers (areaDir: string, opts: StalenessOptions = {}): string[] {
  const now = opts.nowMs ?? Date.now()
  const stale = opts.staleAfterMs ?? DEFAULT_STALE_MS
  const removed: string[] = []
  for (const s of scan(areaDir, now)) {
    if (s.rec === null || s.ageMs > stale) {
      rmSync(s.file, { force: true })
      removed.push(s.file)
    }
  }
  return removed
}

/** A server stays up only while its file sorts first among the live ones (tt server loop). */
export function isPrimaryServer (areaDir: string, file: string, opts: StalenessOptions = {}): boolean {
  return listServers(areaDir, opts)[0]?.file === resolve(file)
}

export interface StartDecisionOptions {
  /** ms since the epoch. */
  now: number
  /** ms since the epoch when this client last started a server for the area; null if never. */
  lastStartAt: number | null | undefined
  /** Start no server once this many live ones are registered; default 1. */
  maxServers?: number
  staleAfterMs?: number
  /** The live registrations, if the caller already listed them (skips the directory read). */
  servers?: readonly ServerRegistration[]
  /**
   * Megatest's load guard (tt:server-process-run): no start while the host's 1-minute
   * load average divided by its CPUs is above maxLoad (Megatest: 2.0). Off unless given.
   */
  maxLoad?: number
  /** The normalized load to judge (default: os.loadavg()[0] / os.cpus().length). */
  normalizedLoad?: number
}

export interface StartDecision {
  start: boolean
  reason: string
  live: ServerRegistration[]
}

/** shouldStartServer with its reason and the live registrations it saw. */
export function explainStartDecision (areaDir: string, opts: StartDecisionOptions): StartDecision {
  const live = opts.servers !== undefined ? [...opts.servers] : listServers(areaDir, { nowMs: opts.now, staleAfterMs: opts.staleAfterMs })
  const max = opts.maxServers ?? 1
  if (opts.lastStartAt !== null && opts.lastStartAt !== undefined && opts.now - opts.lastStartAt < MIN_RESTART_MS) {
    return { start: false, reason: `this client started a server ${Math.round(opts.now - opts.lastStartAt)} ms ago (less than ${MIN_RESTART_MS} ms)`, live }
  }
  if (live.length >= max) {
    return { start: false, reason: `${live.length} live server(s) registered (max ${max})`, live }
  }
  if (opts.maxLoad !== undefined) {
    const load = opts.normalizedLoad ?? loadavg()[0]! / Math.max(1, cpus().length)
    if (load > opts.maxLoad) return { start: false, reason: `the host's normalized load ${load.toFixed(2)} is above ${opts.maxLoad}`, live }
  }
  return { start: true, reason: `${live.length} live server(s) registered (max ${max}) and no recent start`, live }
}

/**
 * tt:server-process-run's guard: no new start if this client started one less
 * than 5 s ago, or if enough live servers are registered.
 */
export function shouldStartServer (areaDir: string, opts: StartDecisionOptions): boolean {
  return explainStartDecision(areaDir, opts).start
}

export interface PrimaryWatch {
  /** The area whose registrations are compared. */
  areaDir: string
  /**
   * Called once when this server's file no longer sorts first among the live ones:
   * another server started earlier serves the area, and this one should stop serving it,
   * as Megatest's second server exits (tt server loop). An earlier file counts only once
   * it has been touched after this heartbeat started, so the leftover file of a server
   * that died (not yet stale) never demotes its successor.
   */
  onNotPrimary: (primary: ServerRegistration | undefined) => void
  staleAfterMs?: number
}

/**
 * Touch the file every intervalMs (unref'd timer); onLost fires once if the file
 * disappears. With a PrimaryWatch, each beat also checks that this server is the
 * area's primary.
 */
export function startHeartbeat (file: string, intervalMs = HEARTBEAT_MS, onLost?: () => void, primary?: PrimaryWatch): { stop: () => void } {
  let lost = false
  let demoted = false
  const since = Date.now()
  const checkPrimary = (): void => {
    if (primary === undefined || demoted) return
    const first = listServers(primary.areaDir, { staleAfterMs: primary.staleAfterMs })[0]
    if (first === undefined || first.file === resolve(file)) return
    let touched = 0
    try { touched = statSync(first.file).mtimeMs } catch { return }
    if (touched <= since) return
    demoted = true
    primary.onNotPrimary(first)
  }
  const timer = setInterval(() => {
    if (!touchServer(file) && !lost) {
      lost = true
      onLost?.()
    }
    checkPrimary()
  }, intervalMs)
  timer.unref()
  return { stop: () => clearInterval(timer) }
}

import { spawn } from 'node:child_process'
import { closeSync, existsSync, mkdirSync, openSync, readFileSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs'
import { basename, dirname, join, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import { Client, EvalMeshError, formatHost } from '@evalmesh/client'
import { areaSignature, cleanStaleServers, explainStartDecision, listServers, type ServerRegistration } from '@evalmesh/megatest'

/**
 * Megatest's tt connect-and-start (spec §3.4) from the client side, with bounds:
 * use a live registered server of the area, or start a node for it and wait for
 * its registration. Unlike tt:client-connect-to-server there is no unbounded
 * recursion: every wait has a deadline, and a start happens at most once per
 * 5 s per area from this process (and, through a lock file, from any process).
 */

export interface AreaServerOptions {
  /** State dir of the started node, and of the client that pings it (same key = trusted). */
  stateDir: string
  /** The area's name on the node (default: the directory's name). */
  area?: string
  /** Node name of a started node (default: `area-<area name>`). */
  name?: string
  /** A started node stops after this many seconds without Megatest use (default 600, Megatest's). */
  idleTimeoutSeconds?: number
  /** Start no node once this many live ones are registered (default 1). */
  maxServers?: number
  /**
   * Megatest's load guard: start no node while the host's load average per CPU is above
   * this (Megatest uses 2.0); wait and look again instead. Off unless given.
   */
  maxLoad?: number
  /** Run keys for a new area (default TARGET); an existing area keeps its megatest.config. */
  keys?: string[]
  /** Give up after this long (default 30 000 ms). */
  timeoutMs?: number
  /** The client used to ping registered servers (default: one on stateDir, closed afterwards). */
  client?: Client
  /** The evalmesh CLI script to start (default: apps/cli/bin/evalmesh.js of this checkout). */
  cli?: string
  /** Called with what happens (for --verbose and tests). */
  onEvent?: (message: string) => void
}

export interface AreaServer {
  /** host:port of the node serving the area. */
  host: string
  /** The area's name on that node. */
  area: string
  /** True if this call started the node. */
  started: boolean
  registration: ServerRegistration
  /** The node's log file, when this call started it. */
  log?: string
}

/** Megatest's default server idle timeout (tt-server-timeout-param). */
export const DEFAULT_IDLE_TIMEOUT_SECONDS = 600
/** A starting node must register within this (node start plus isolate warm-up). */
const REGISTER_WAIT_MS = 20_000
const START_LOCK = '.server-start.lock'

const DEFAULT_CLI = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..', '..', 'cli', 'bin', 'evalmesh.js')

/** When this process last started a server, per area signature (tt's per-client memory). */
const lastStarts = new Map<string, number>()

const sleep = async (ms: number): Promise<void> => await new Promise(resolve => setTimeout(resolve, ms))

function hostOf (r: ServerRegistration): string {
  return formatHost(r.host, r.port)
}

const LOCAL_HOSTS = new Set(['127.0.0.1', '::1', 'localhost', '0.0.0.0', '::'])

/** A registration of a process that no longer exists on this machine is stale whatever its mtime. */
function deadLocalProcess (r: ServerRegistration): boolean {
  if (!LOCAL_HOSTS.has(r.host) && !r.host.startsWith('127.')) return false
  try {
    process.kill(r.pid, 0)
    return false
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'ESRCH'
  }
}

/**
 * Ask a registered node whether it serves this area: ping answers with the area
 * signature. A node may serve the area under another name, so an UNKNOWN_AREA
 * answer makes us try the names it lists.
 */
async function probe (client: Client, r: ServerRegistration, preferred: string): Promise<string | undefined> {
  const host = hostOf(r)
  const ping = async (name: string): Promise<boolean> => {
    const reply = await client.remoteApply('megatest', [name, 'ping'], host, { timeoutMs: 5000 }) as { status: string, result: unknown, meta?: { sstate?: string } }
    return reply.status === 'ok' && reply.result === r.serverId
  }
  if (await ping(preferred)) return preferred
  const d = await client.describe(host)
  for (const name of d.megatestAreas ?? []) if (name !== preferred && await ping(name)) return name
  return undefined
}

/** Take the cross-process start lock (O_EXCL); a lock older than the register wait is stale. */
function takeStartLock (logs: string, now: number): boolean {
  const file = join(logs, START_LOCK)
  try {
    const st = statSync(file)
    if (now - st.mtimeMs < REGISTER_WAIT_MS) return false
    rmSync(file, { force: true })
  } catch { /* no lock */ }
  try {
    const fd = openSync(file, 'wx')
    writeFileSync(fd, `${process.pid} ${now}\n`)
    closeSync(fd)
    return true
  } catch {
    return false
  }
}

function startNode (areaDir: string, area: string, opts: AreaServerOptions, logs: string): { pid: number, log: string, exited: () => number | null } {
  const cli = opts.cli ?? DEFAULT_CLI
  if (!existsSync(cli)) throw new EvalMeshError('MEGATEST_ERROR', `cannot start a node for ${areaDir}: no evalmesh CLI at ${cli}`)
  const pending = join(logs, `server-starting-${process.pid}-${Date.now()}.log`)
  const fd = openSync(pending, 'a')
  const args = [
    '--no-node-snapshot', cli, 'serve', '--area', `${area}=${areaDir}`, '--port', '0',
    '--idle-timeout', String(opts.idleTimeoutSeconds ?? DEFAULT_IDLE_TIMEOUT_SECONDS),
    // --temp-name: the state dir is the user's, and so is the name it remembers.
    '--state-dir', opts.stateDir, '--temp-name', opts.name ?? `area-${area}`
  ]
  // A new area needs its run keys; Megatest's usual single key is the default.
  if (opts.keys !== undefined && opts.keys.length > 0) args.push('--keys', opts.keys.join(','))
  else if (!existsSync(join(areaDir, 'megatest.config'))) args.push('--keys', 'TARGET')
  let exitCode: number | null = null
  // Detached with its own log, as tt:server-process-run does (`... >> logs/server-*.log 2>&1 &`):
  // the node outlives this client and stops by itself when idle.
  const child = spawn(process.execPath, args, { detached: true, stdio: ['ignore', fd, fd] })
  closeSync(fd)
  child.once('exit', (code, signal) => { exitCode = code ?? (signal !== null ? 128 : 1) })
  child.once('error', () => { exitCode = 127 })
  child.unref()
  const pid = child.pid ?? 0
  const log = join(logs, `server-${pid}.log`)
  try { renameSync(pending, log) } catch { return { pid, log: pending, exited: () => exitCode } }
  return { pid, log, exited: () => exitCode }
}

function tail (file: string, lines = 15): string {
  try {
    return readFileSync(file, 'utf8').trimEnd().split('\n').slice(-lines).join('\n')
  } catch {
    return '(no log)'
  }
}

/**
 * Find the node serving `areaDir`, starting one if none does (Megatest's tt
 * connect-and-start). Resolves with its host:port; rejects with a clear error
 * when no node could be found or started within `timeoutMs`.
 */
export async function findOrStartAreaServer (areaDir: string, opts: AreaServerOptions): Promise<AreaServer> {
  const dir = resolve(areaDir)
  // A mistyped path must not quietly become a new, empty area: a new one is asked for with its keys.
  if (!existsSync(dir) && (opts.keys === undefined || opts.keys.length === 0)) {
    throw new EvalMeshError('UNKNOWN_AREA', `no Megatest area at ${dir}: no such directory (give its keys, --keys K1,K2, to start a new area there)`)
  }
  const area = opts.area ?? basename(dir)
  const sig = areaSignature(dir)
  const deadline = Date.now() + (opts.timeoutMs ?? 30_000)
  const logs = join(dir, 'logs')
  const say = opts.onEvent ?? (() => {})
  const client = opts.client ?? new Client({ stateDir: opts.stateDir })
  let ours: { pid: number, log: string, exited: () => number | null } | undefined
  let lastReason = ''
  try {
    while (Date.now() < deadline) {
      const removed = cleanStaleServers(dir)
      for (const f of removed) say(`removed stale registration ${basename(f)}`)
      const live: ServerRegistration[] = []
      for (const r of listServers(dir)) {
        if (deadLocalProcess(r)) {
          rmSync(r.file, { force: true })
          say(`removed registration of dead process ${r.pid} (${basename(r.file)})`)
        } else {
          live.push(r)
        }
      }
      // Primary first (oldest start), as Megatest's servers agree on.
      for (const r of live) {
        try {
          const name = await probe(client, r, area)
          if (name !== undefined) {
            const found: AreaServer = { host: hostOf(r), area: name, started: ours !== undefined && r.pid === ours.pid, registration: r }
            if (found.started && ours !== undefined) found.log = ours.log
            return found
          }
          lastReason = `${hostOf(r)} is registered but does not serve ${dir}`
        } catch (err) {
          lastReason = `${hostOf(r)} is registered but did not answer: ${(err as Error).message}`
        }
        say(lastReason)
      }

      if (ours !== undefined) {
        // Our node is starting: wait for its registration (bounded by the deadline).
        const code = ours.exited()
        if (code !== null) {
          throw new EvalMeshError('MEGATEST_ERROR', `the node started for area ${area} (pid ${ours.pid}) exited with code ${code} before registering; its log ${ours.log}:\n${tail(ours.log)}`, { area, dir, log: ours.log })
        }
        await sleep(100)
        continue
      }

      const now = Date.now()
      const decision = explainStartDecision(dir, { now, lastStartAt: lastStarts.get(sig) ?? null, maxServers: opts.maxServers ?? 1, servers: live, ...(opts.maxLoad !== undefined ? { maxLoad: opts.maxLoad } : {}) })
      if (decision.start) {
        mkdirSync(logs, { recursive: true })
        if (takeStartLock(logs, now)) {
          lastStarts.set(sig, now)
          ours = startNode(dir, area, opts, logs)
          say(`started a node for area ${area} (pid ${ours.pid}, log ${ours.log})`)
          continue
        }
        lastReason = 'another client is starting a node for this area'
      } else {
        lastReason = decision.reason
      }
      say(`not starting a node: ${lastReason}; waiting`)
      await sleep(500)
    }
  } finally {
    if (ours !== undefined) rmSync(join(logs, START_LOCK), { force: true })
    if (opts.client === undefined) client.close()
  }
  const hint = ours !== undefined ? `; the node started for it (pid ${ours.pid}) did not register, its log ${ours.log}:\n${tail(ours.log)}` : ''
  throw new EvalMeshError('NO_WILLING_SERVER', `no node serves Megatest area ${area} (${dir}) after ${opts.timeoutMs ?? 30_000} ms: ${lastReason}${hint}`, { area, dir })
}

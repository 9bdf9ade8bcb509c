import { spawn, type ChildProcess } from 'node:child_process'
import { createHash } from 'node:crypto'
import { appendFileSync, closeSync, mkdirSync, openSync, readFileSync, readSync, statSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { CONTROL_SOCKET, Client, controlRequest, formatHost } from '@evalmesh/client'
import { addTrustedKey, loadIdentity } from '@evalmesh/trust'
import { serveArgs, type NodeSpec } from './config.js'
import { checkPid, processGone, type RunDir } from './run-dir.js'

/** The evalmesh command a node runs as: this repository's, or $EVALMESH_BIN. */
export function evalmeshBin (): string {
  const env = process.env.EVALMESH_BIN
  if (env !== undefined && env !== '') return env
  // apps/fleet/dist/src/nodes.js -> apps/cli/bin/evalmesh.js
  return join(dirname(fileURLToPath(import.meta.url)), '..', '..', '..', 'cli', 'bin', 'evalmesh.js')
}

/** The node's locator (node.json in its state dir), when it names `pid`. */
export function locatorOf (spec: NodeSpec, pid?: number): { host: string, port: number, pid: number, id: string, startedAt: number } | undefined {
  try {
    const n = JSON.parse(readFileSync(join(spec.stateDir, 'node.json'), 'utf8')) as { host: string, port: number, pid: number, id: string, startedAt: number }
    if (pid !== undefined && n.pid !== pid) return undefined
    return n
  } catch {
    return undefined
  }
}

/**
 * The node's running pid from its pid file, or undefined. A stale pid file (the process
 * is gone, is another user's, or is some other program now) is removed, and `onStale`
 * told why.
 */
export function livePid (run: RunDir, spec: NodeSpec, onStale?: (message: string) => void): number | undefined {
  const pid = run.readPid(spec.name)
  if (pid === undefined) return undefined
  const c = checkPid(pid, spec.stateDir)
  if (c.live) return pid
  run.clearPid(spec.name)
  onStale?.(`${spec.name}: stale pid file ${run.pidFile(spec.name)} cleared (${c.why})`)
  return undefined
}

/** The last lines of a log file, for an error message. */
export function logTail (file: string, lines = 12): string {
  try {
    const size = statSync(file).size
    const fd = openSync(file, 'r')
    try {
      const len = Math.min(size, 8192)
      const buf = Buffer.alloc(len)
      readSync(fd, buf, 0, len, size - len)
      return buf.toString('utf8').split('\n').slice(-lines - 1).join('\n').trim()
    } finally {
      closeSync(fd)
    }
  } catch {
    return ''
  }
}

/** A digest of the functions module's file (null: none, or unreadable): reload loads it again when it changes. */
export function functionsDigest (path: string | null): string | null {
  if (path === null) return null
  try { return createHash('sha256').update(readFileSync(path)).digest('hex') } catch { return null }
}

/**
 * Spawn the node's process, detached, its output appended to its log; writes the pid file.
 * `restarts`: how often the supervisor has restarted it, told to the node (EVALMESH_RESTARTS),
 * which reports it in describe (the status window shows it).
 */
export function spawnNode (spec: NodeSpec, run: RunDir, restarts = 0): ChildProcess {
  mkdirSync(dirname(spec.log), { recursive: true })
  mkdirSync(spec.stateDir, { recursive: true, mode: 0o700 })
  appendFileSync(spec.log, `--- evalmesh fleet: starting ${spec.name} at ${new Date().toISOString()}\n`)
  const fd = openSync(spec.log, 'a')
  let child: ChildProcess
  try {
    child = spawn(process.execPath, ['--no-node-snapshot', evalmeshBin(), ...serveArgs(spec)], {
      detached: true,
      stdio: ['ignore', fd, fd],
      env: { ...process.env, EVALMESH_STATE_DIR: spec.stateDir, EVALMESH_RESTARTS: String(restarts) }
    })
  } finally {
    closeSync(fd)
  }
  if (child.pid === undefined) throw new Error(`${spec.name}: could not start ${process.execPath}`)
  run.writePid(spec.name, child.pid)
  return child
}

/**
 * Wait until the node with `pid` has written its locator (it listens and serves), or
 * throw when it exits first or `timeoutMs` passes.
 */
export async function waitReady (spec: NodeSpec, pid: number, timeoutMs: number): Promise<void> {
  const until = Date.now() + timeoutMs
  while (Date.now() < until) {
    if (locatorOf(spec, pid) !== undefined) return
    if (processGone(pid)) {
      const tail = logTail(spec.log)
      const last = tail.split('\n').filter(l => l.trim() !== '' && !l.startsWith('--- evalmesh fleet')).pop()
      throw new Error(`${spec.name}: exited while starting${last !== undefined ? ` (${last.slice(0, 200)})` : ''}\n${tail}`)
    }
    await sleep(50)
  }
  throw new Error(`${spec.name}: not serving after ${Math.round(timeoutMs / 1000)} s (see ${spec.log})\n${logTail(spec.log)}`)
}

/**
 * Write the keys the node trusts into its trusted-keys file (the node re-reads it on the
 * next handshake: live). With trustFleet, every other node of `fleet` too, labelled with
 * its name. Only adds and updates; resolves with how many lines changed.
 */
export function applyTrust (spec: NodeSpec, fleet: readonly NodeSpec[] = []): number {
  let changed = 0
  const lines = spec.trust.map(t => ({ line: t.key, operator: t.operator }))
  if (spec.trustFleet) {
    for (const other of fleet) {
      if (other.name === spec.name) continue
      mkdirSync(other.stateDir, { recursive: true, mode: 0o700 })
      const id = loadIdentity(other.stateDir, { create: true })
      lines.push({ line: `${Buffer.from(id.publicKey).toString('base64')} ${other.name}`, operator: false })
    }
  }
  if (lines.length > 0) mkdirSync(spec.stateDir, { recursive: true, mode: 0o700 })
  for (const l of lines) {
    if (addTrustedKey(spec.stateDir, l.line, l.operator ? { operator: true } : {}).change !== 'unchanged') changed++
  }
  return changed
}

export interface StartOptions {
  /** The whole fleet, for trustFleet. */
  fleet?: readonly NodeSpec[]
  /** How long the node has to start serving (default 30 s). */
  timeoutMs?: number
  /** Extra state to record (the supervisor's pid, restarts). */
  supervisor?: number | null
  /** Restarts to tell the node (default: what its state file counts). */
  restarts?: number
}

/** Start a node that is not running; resolves with its pid once it serves. */
export async function startNode (spec: NodeSpec, run: RunDir, options: StartOptions = {}): Promise<{ pid: number, child: ChildProcess }> {
  applyTrust(spec, options.fleet)
  const child = spawnNode(spec, run, options.restarts ?? run.readState(spec.name)?.restarts ?? 0)
  const pid = child.pid!
  run.updateState(spec, { status: 'starting', pid, startedAt: Date.now(), reason: null, spec, functionsDigest: functionsDigest(spec.functions), ...(options.supervisor !== undefined ? { supervisor: options.supervisor } : {}) })
  try {
    await waitReady(spec, pid, options.timeoutMs ?? 30_000)
  } catch (err) {
    if (!processGone(pid)) { try { process.kill(pid, 'SIGKILL') } catch { } }
    run.clearPid(spec.name)
    run.updateState(spec, { status: 'stopped', pid: null, startedAt: null, reason: (err as Error).message.split('\n')[0]! })
    throw err
  }
  run.updateState(spec, { status: 'running' })
  return { pid, child }
}

export interface StopOptions {
  /** SIGKILL at once (m2sh's -murder). */
  murder?: boolean
  /** Seconds to finish running work after SIGTERM, then SIGKILL (default: the node's restart.graceSeconds). */
  graceSeconds?: number
  /** What the draining node tells clients (default: stopping, no address). */
  drain?: DrainTarget
}

/** Where a draining node sends new work (the control port's `drain`). */
export interface DrainTarget {
  /** The node's own address after its restart, when it restarts. */
  retryAt?: string
  /** When it expects to serve again. */
  retryAfterMs?: number
  /** Other running nodes of the fleet, `name@host:port`. */
  elsewhere?: string[]
  reason: string
}

/** `host:port` of a node as clients write it (`[v6]:port`). */
export function addressOf (spec: Pick<NodeSpec, 'listen' | 'port'>): string {
  return formatHost(spec.listen, spec.port)
}

/** The control port's drain command for `target`. */
export function drainCommand (target: DrainTarget): string {
  const words = ['drain']
  if (target.retryAt !== undefined) words.push(`retry=${target.retryAt}`)
  if (target.retryAfterMs !== undefined) words.push(`after=${Math.round(target.retryAfterMs)}`)
  if (target.elsewhere !== undefined && target.elsewhere.length > 0) words.push(`elsewhere=${target.elsewhere.join(',')}`)
  words.push(target.reason)
  return words.join(' ')
}

/**
 * Drain the node: new evals and applies are refused with DRAINING, naming where to retry
 * (`target`), while its running and queued work goes on; wait until that is done, or
 * `until`. Resolves with what was still there at the end (0: drained; -1: no control port).
 */
export async function drainNode (spec: NodeSpec, until: number, target: DrainTarget = { reason: 'stopping' }): Promise<number> {
  try {
    await controlCommand(spec.stateDir, drainCommand(target))
  } catch {
    return -1 // no control port: SIGTERM alone
  }
  let left = -1
  while (Date.now() < until) {
    try {
      left = Number((await controlCommand(spec.stateDir, 'status tasks')).total)
    } catch {
      return -1
    }
    if (left === 0) return 0
    await sleep(100)
  }
  return left
}

/**
 * Stop the node with `pid`: drain it (new work refused, running work finished) within the
 * grace, SIGTERM, SIGKILL when the grace is over. -murder: SIGKILL at once. Says how it went.
 */
export async function stopPid (spec: NodeSpec, pid: number, options: StopOptions = {}): Promise<string> {
  const grace = (options.graceSeconds ?? spec.restart.graceSeconds) * 1000
  const until = Date.now() + grace
  let drained = ''
  if (options.murder !== true) {
    const left = await drainNode(spec, until, options.drain)
    drained = left === 0 ? 'drained, ' : left > 0 ? `${left} txn(s) still running at the end of the grace, ` : ''
  }
  const signal = options.murder === true ? 'SIGKILL' : 'SIGTERM'
  try { process.kill(pid, signal) } catch { return 'already gone' }
  // A drain that took the whole grace still leaves SIGTERM a moment to stop the node cleanly.
  const termUntil = options.murder === true ? until : Math.max(until, Date.now() + 5000)
  while (Date.now() < termUntil) {
    if (processGone(pid)) return options.murder === true ? 'killed (SIGKILL)' : `${drained}stopped (SIGTERM)`
    await sleep(50)
  }
  if (!processGone(pid)) {
    try { process.kill(pid, 'SIGKILL') } catch { }
    const hard = Date.now() + 10_000
    while (!processGone(pid) && Date.now() < hard) await sleep(50)
  }
  return `${drained}killed (SIGKILL after a ${grace / 1000} s grace)`
}

/**
 * One command to the node's control port (`<stateDir>/control.sock`): resolves with its
 * JSON reply when it is ok, else rejects with its error (and `needsRestart` when a change
 * takes a restart).
 */
export async function controlCommand (stateDir: string, line: string, timeoutMs = 5000): Promise<Record<string, unknown>> {
  const reply = await controlRequest(join(stateDir, CONTROL_SOCKET), line, timeoutMs)
  if (reply.ok !== true) throw Object.assign(new Error(`control port: ${String(reply.error)}`), { needsRestart: reply.needsRestart === true })
  return reply
}

export interface NodeLoad {
  running: number
  input: number
  done: number
  uptimeSeconds: number
  id: string
  /** Restarts as the node itself reports them (what the supervisor told it). */
  restarts: number
}

/** The node's load, asked with its own key (an operator of itself): describe's lists and uptime. */
export async function describeNode (spec: NodeSpec, timeoutMs = 3000): Promise<NodeLoad> {
  const client = new Client({ stateDir: spec.stateDir })
  let timer: NodeJS.Timeout | undefined
  try {
    const host = addressOf(spec)
    const d = await Promise.race([
      client.describe(host),
      new Promise<never>((_resolve, reject) => { timer = setTimeout(() => reject(new Error(`no describe reply within ${timeoutMs} ms`)), timeoutMs) })
    ])
    return { ...d.lists, uptimeSeconds: d.uptimeSeconds, id: d.id, restarts: d.restarts ?? 0 }
  } finally {
    if (timer !== undefined) clearTimeout(timer)
    client.close()
  }
}

export async function sleep (ms: number): Promise<void> {
  await new Promise(resolve => setTimeout(resolve, ms))
}

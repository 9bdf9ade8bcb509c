import { fork, type ChildProcess } from 'node:child_process'
import { EventEmitter } from 'node:events'
import { fileURLToPath } from 'node:url'
import { serialize } from 'node:v8'
import { EvalMeshError, scrubPaths, type EvalLimits, type WireError } from '@evalmesh/protocol'
import { wireError } from './errors.js'
import { checkGrant, RUN_STREAM, RUN_TRANSIENT, type ChildInit, type ParentBatch, type ResultMsg, type ToChild, type ToParent } from './ipc.js'
import { clampLimits } from './limits.js'
import { tierUpFlags } from './tier-up.js'
import type { Sandbox, SandboxInit, SandboxJob, SandboxResult, SandboxStats } from './index.js'

const CHILD_PATH = fileURLToPath(new URL('./child.js', import.meta.url))
const DEFAULT_MAX_SESSIONS = 256
const DEFAULT_SESSION_IDLE_MS = 30 * 60_000
const DEFAULT_GRACE_MS = 2000
const TICK_MS = 250
const PING_EVERY_MS = 500
const STOP_KILL_MS = 3000
/** Session names remembered per process for lost-context notices; far above any process's live sessions. */
const MAX_TRACKED_SESSIONS = 8192

interface Pending {
  id: number
  job: SandboxJob
  sentAt: number
  resolve: (r: SandboxResult) => void
}

/** Runs the parent has handed to the child for one session, oldest first. */
interface SessionTrack {
  ids: number[]
  /** When the head run can have started at the latest: its send, or the previous settle. */
  headSince: number
}

export class ChildSandbox extends EventEmitter implements Sandbox {
  readonly #init: SandboxInit
  readonly #graceMs: number
  #grants: string[]
  #child: ChildProcess | undefined
  #ready = false
  #readyWaiters: Array<{ resolve: () => void, reject: (e: Error) => void }> = []
  #outbox: ToChild[] = []
  #flushScheduled = false
  #runs = new Map<number, Pending>()
  #byTxn = new Map<string, number>()
  #tracks = new Map<string, SessionTrack>()
  #resets = new Map<number, () => void>()
  #nextId = 1
  #killReason: string | undefined
  #fatalReason: string | undefined
  #lastPong = 0
  #lastPing = 0
  #pingSeq = 0
  #timer: NodeJS.Timeout | undefined
  #started = false
  #stopping: Promise<void> | undefined
  #failedStarts = 0
  #restartTimer: NodeJS.Timeout | undefined
  #restarts = 0
  #sessions = 0
  #batched = 0
  #heapBytes = 0
  #culprit: number | undefined
  /** Sessions that have had a run in the current child. */
  #live = new Set<string>()
  /** Sessions whose child died, and why: their next run is told its globals are gone. */
  #lost = new Map<string, string>()

  constructor (init: SandboxInit) {
    super()
    validateLimits(init.limits)
    for (const g of init.grants ?? []) {
      const problem = checkGrant(g)
      if (problem !== undefined) throw new TypeError(problem)
    }
    this.#init = init
    this.#grants = [...(init.grants ?? [])]
    this.#graceMs = init.watchdogGraceMs ?? DEFAULT_GRACE_MS
  }

  get stats (): SandboxStats {
    return { restarts: this.#restarts, sessions: this.#sessions, running: this.#runs.size, pid: this.#child?.pid, batched: this.#batched, heapBytes: this.#heapBytes }
  }

  /** True if this session has had a run in the current sandbox process (so it holds a context). */
  hasSession (session: string): boolean {
    return this.#live.has(session)
  }

  /** True if this session holds a context here, or is owed the notice that its context was lost. */
  holdsState (session: string): boolean {
    return this.#live.has(session) || this.#lost.has(session)
  }

  async start (): Promise<void> {
    if (this.#stopping !== undefined) throw new EvalMeshError('SHUTTING_DOWN', 'sandbox has been stopped')
    if (!this.#started) {
      this.#started = true
      this.#timer = setInterval(() => this.#tick(), TICK_MS)
      this.#timer.unref()
      this.#spawn()
    }
    if (this.#ready) return
    await new Promise<void>((resolve, reject) => this.#readyWaiters.push({ resolve, reject }))
  }

  run (job: SandboxJob): Promise<SandboxResult> {
    return new Promise<SandboxResult>(resolve => {
      if (this.#stopping !== undefined || !this.#started) {
        const why = this.#started ? 'the sandbox is shutting down' : 'the sandbox has not been started'
        resolve(failure('SHUTTING_DOWN', why))
        return
      }
      if (typeof job?.form !== 'string' || typeof job.session !== 'string' || typeof job.txn !== 'string') {
        resolve(failure('BAD_MESSAGE', 'a sandbox job needs string txn, session and form'))
        return
      }
      const id = this.#nextId++
      const limits = clampLimits(job.limits, this.#init.limits)
      const pending: Pending = { id, job, sentAt: Date.now(), resolve }
      this.#runs.set(id, pending)
      this.#byTxn.set(job.txn, id)
      let track = this.#tracks.get(job.session)
      if (track === undefined) {
        track = { ids: [], headSince: pending.sentAt }
        this.#tracks.set(job.session, track)
      }
      if (track.ids.length === 0) track.headSince = pending.sentAt
      track.ids.push(id)
      if (job.transient !== true) {
        if (this.#live.size >= MAX_TRACKED_SESSIONS) this.#live.delete(this.#live.values().next().value as string)
        this.#live.add(job.session)
      }
      const flags = (job.transient === true ? RUN_TRANSIENT : 0) | (job.onOutput !== undefined ? RUN_STREAM : 0)
      if (flags === 0) this.#send([id, job.session, job.form, limits.timeoutMs, limits.memoryMb, limits.resultBytes, limits.outputBytes])
      else this.#send([id, job.session, job.form, limits.timeoutMs, limits.memoryMb, limits.resultBytes, limits.outputBytes, flags])
    })
  }

  abort (txn: string): boolean {
    const id = this.#byTxn.get(txn)
    if (id === undefined || !this.#runs.has(id)) return false
    this.#send({ t: 'abort', id })
    return true
  }

  resetSession (session: string): Promise<void> {
    this.#lost.delete(session)
    this.#live.delete(session)
    if (!this.#started || this.#stopping !== undefined) return Promise.resolve()
    const rid = this.#nextId++
    return new Promise<void>(resolve => {
      this.#resets.set(rid, resolve)
      this.#send({ t: 'reset', rid, session })
    })
  }

  setGrants (grants: string[]): void {
    if (!Array.isArray(grants)) throw new TypeError('grants must be an array of dotted names')
    for (const g of grants) {
      const problem = checkGrant(g)
      if (problem !== undefined) throw new TypeError(problem)
    }
    this.#grants = [...grants]
    this.#send({ t: 'grants', grants: this.#grants })
  }

  stop (): Promise<void> {
    this.#stopping ??= this.#stop()
    return this.#stopping
  }

  async #stop (): Promise<void> {
    clearInterval(this.#timer)
    clearTimeout(this.#restartTimer)
    for (const w of this.#readyWaiters.splice(0)) w.reject(new EvalMeshError('SHUTTING_DOWN', 'sandbox was stopped before it started'))
    const child = this.#child
    if (child !== undefined && child.exitCode === null && child.signalCode === null) {
      const exited = new Promise<void>(resolve => child.once('exit', () => resolve()))
      this.#outbox.push({ t: 'stop' })
      this.#flush(true)
      const killer = setTimeout(() => child.kill('SIGKILL'), STOP_KILL_MS)
      await exited
      clearTimeout(killer)
    }
    this.#settleAll('SHUTTING_DOWN', 'the sandbox was stopped during the evaluation')
  }

  // ---- child lifecycle ----------------------------------------------------------

  #spawn (): void {
    const init: ChildInit = {
      limits: this.#init.limits,
      maxSessions: this.#init.maxSessions ?? DEFAULT_MAX_SESSIONS,
      sessionIdleMs: this.#init.sessionIdleMs ?? DEFAULT_SESSION_IDLE_MS,
      grants: this.#grants
    }
    if (this.#init.maxSessionsPerClient !== undefined) init.maxSessionsPerClient = this.#init.maxSessionsPerClient
    if (this.#init.clientMemoryMb !== undefined) init.clientMemoryMb = this.#init.clientMemoryMb
    this.#ready = false
    this.#killReason = undefined
    this.#fatalReason = undefined
    this.#culprit = undefined
    const child = fork(CHILD_PATH, [], {
      execArgv: ['--no-node-snapshot', ...tierUpFlags()],
      serialization: 'advanced',
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
      env: { ...process.env, EVALMESH_SANDBOX_INIT: JSON.stringify(init) }
    })
    this.#child = child
    child.on('message', (batch: ParentBatch) => { if (this.#child === child) this.#onBatch(batch) })
    child.on('error', () => { /* reported through 'exit' */ })
    child.once('exit', (code, signal) => { if (this.#child === child) this.#onExit(code, signal) })
  }

  #onExit (code: number | null, signal: NodeJS.Signals | null): void {
    const wasReady = this.#ready
    this.#ready = false
    this.#child = undefined
    const how = signal !== null ? `signal ${signal}` : `code ${String(code)}`
    const reason = this.#killReason ?? this.#fatalReason ?? `the sandbox process exited (${how})`
    // The run whose isolate blew up gets the memory error it earned; the others were
    // only in the same process. Every session of the process lost its globals.
    const culprit = this.#culprit === undefined ? undefined : this.#runs.get(this.#culprit)
    const culpritSession = culprit?.job.session
    if (culprit !== undefined) {
      this.#runs.delete(culprit.id)
      culprit.resolve(failure('MEMORY_LIMIT', `evaluation exhausted its isolate's memory (${reason}); its sandbox process was replaced and the session's globals are gone`))
    }
    for (const session of this.#live) this.#lost.set(session, `the sandbox process serving this session was replaced (${reason})`)
    this.#live.clear()
    this.#settleAll('SANDBOX_LOST', `${reason}; the evaluation was lost and the sandbox restarted, so every session of that sandbox process starts with fresh globals`)
    this.#outbox = this.#outbox.filter(m => !Array.isArray(m) && m.t === 'grants')
    if (this.#stopping !== undefined) return
    this.#restarts++
    this.emit('restart', culpritSession === undefined ? { reason } : { reason, culpritSession })
    this.#failedStarts = wasReady ? 0 : this.#failedStarts + 1
    if (this.#failedStarts >= 5) {
      const err = new EvalMeshError('SANDBOX_LOST', `sandbox process failed to start 5 times (last: ${reason})`)
      for (const w of this.#readyWaiters.splice(0)) w.reject(err)
    }
    // Back off if the child dies before it is ready, so a broken install cannot spin.
    const delay = this.#failedStarts === 0 ? 0 : Math.min(5000, 100 * 2 ** this.#failedStarts)
    this.#restartTimer = setTimeout(() => this.#spawn(), delay)
  }

  #kill (reason: string): void {
    const child = this.#child
    if (child === undefined || this.#killReason !== undefined) return
    this.#killReason = reason
    child.kill('SIGKILL')
  }

  #settleAll (code: 'SANDBOX_LOST' | 'SHUTTING_DOWN', message: string): void {
    const runs = [...this.#runs.values()]
    this.#runs.clear()
    this.#byTxn.clear()
    this.#tracks.clear()
    for (const p of runs) p.resolve(failure(code, message))
    for (const resolve of this.#resets.values()) resolve()
    this.#resets.clear()
  }

  #tick (): void {
    const child = this.#child
    if (child === undefined || !this.#ready) return
    const now = Date.now()
    if (now - this.#lastPong > this.#graceMs + 1000 + PING_EVERY_MS) {
      this.#kill(`the sandbox process stopped answering for more than ${this.#graceMs + 1000} ms`)
      return
    }
    if (now - this.#lastPing >= PING_EVERY_MS) {
      this.#lastPing = now
      this.#send({ t: 'ping', n: ++this.#pingSeq })
    }
    for (const [session, track] of this.#tracks) {
      const head = this.#runs.get(track.ids[0] ?? -1)
      if (head === undefined) continue
      const limit = clampLimits(head.job.limits, this.#init.limits).timeoutMs
      if (now - track.headSince > limit + this.#graceMs) {
        this.#kill(`run ${head.job.txn} in session ${session} outlived its ${limit} ms wall-time limit by more than ${this.#graceMs} ms`)
        return
      }
    }
  }

  // ---- IPC ------------------------------------------------------------------------

  #send (msg: ToChild): void {
    this.#outbox.push(msg)
    if (!this.#flushScheduled) {
      this.#flushScheduled = true
      setImmediate(() => this.#flush(false))
    }
  }

  #flush (force: boolean): void {
    if (!force) this.#flushScheduled = false
    const child = this.#child
    if (child === undefined || (!this.#ready && !force) || this.#outbox.length === 0) return
    const batch = this.#outbox
    this.#outbox = []
    try {
      child.send(batch)
    } catch {
      // The channel closed under us; 'exit' settles what was in flight.
    }
  }

  #onBatch (batch: ParentBatch): void {
    if (typeof batch !== 'object' || batch === null || !Array.isArray(batch.msgs)) return
    this.#sessions = batch.sessions
    this.#batched = batch.batched
    if (typeof batch.heapBytes === 'number' && batch.heapBytes > 0) this.#heapBytes = batch.heapBytes
    this.#lastPong = Date.now()
    for (const m of batch.msgs) this.#onMessage(m)
  }

  #onMessage (m: ToParent): void {
    if (Array.isArray(m)) { this.#onResult(m); return }
    switch (m.t) {
      case 'ready':
        this.#ready = true
        this.#lastPong = this.#lastPing = Date.now()
        // Grants may have changed while the child was starting.
        this.#outbox.unshift({ t: 'grants', grants: this.#grants })
        this.#flush(true)
        for (const w of this.#readyWaiters.splice(0)) w.resolve()
        break
      case 'host-call': void this.#onHostCall(m.cid, m.id, m.name, m.args); break
      case 'output': this.#onOutput(m.id, m.text); break
      case 'reset-done': {
        const resolve = this.#resets.get(m.rid)
        this.#resets.delete(m.rid)
        resolve?.()
        break
      }
      case 'pong': break
      case 'fatal':
        this.#fatalReason = m.reason
        this.#culprit = m.culprit
        break
    }
  }

  #onResult (r: ResultMsg): void {
    const id = r[0]
    const p = this.#runs.get(id)
    if (p === undefined) return
    this.#runs.delete(id)
    if (this.#byTxn.get(p.job.txn) === id) this.#byTxn.delete(p.job.txn)
    const track = this.#tracks.get(p.job.session)
    if (track !== undefined) {
      const at = track.ids.indexOf(id)
      if (at >= 0) track.ids.splice(at, 1)
      if (at === 0) track.headSince = Date.now()
      if (track.ids.length === 0) this.#tracks.delete(p.job.session)
    }
    let result: SandboxResult
    if (r.length === 3) result = { ok: true, value: r[1], output: '', outputTruncated: false, seconds: r[2] }
    else if (r[3]) result = { ok: true, value: r[1], output: r[4], outputTruncated: r[5], seconds: r[2] }
    else result = { ok: false, error: r[1] as WireError, output: r[4], outputTruncated: r[5], seconds: r[2] }
    const lost = r.length === 7 ? r[6] : this.#lost.get(p.job.session)
    if (this.#lost.size > 0) this.#lost.delete(p.job.session)
    if (lost !== undefined && p.job.transient !== true) result.contextLost = lost
    p.resolve(result)
  }

  #onOutput (id: number, text: string): void {
    const onOutput = this.#runs.get(id)?.job.onOutput
    if (onOutput === undefined) return
    try {
      onOutput(text)
    } catch { /* a listener's failure is its own; the run goes on */ }
  }

  async #onHostCall (cid: number, id: number, name: string, args: unknown[]): Promise<void> {
    const p = this.#runs.get(id)
    const child = this.#child
    let reply: ToChild
    if (p === undefined) {
      reply = { t: 'host-result', cid, ok: false, message: 'the evaluation that made this call has finished' }
    } else if (!this.#grants.includes(name)) {
      reply = { t: 'host-result', cid, ok: false, message: `${name} is not granted on this node` }
    } else {
      try {
        const value = await this.#init.hostCall(name, args, { txn: p.job.txn, session: p.job.session })
        // A value IPC cannot carry would break the whole batch: check it alone (primitives always travel).
        if ((typeof value === 'object' && value !== null) || typeof value === 'function' || typeof value === 'symbol') serialize(value)
        reply = { t: 'host-result', cid, ok: true, value }
      } catch (err) {
        reply = hostFailure(cid, name, err)
      }
    }
    if (this.#child === child) this.#send(reply)
  }
}

function hostFailure (cid: number, name: string, err: unknown): ToChild {
  if (err instanceof Error) {
    const code = (err as { code?: unknown }).code
    const message = /could not be cloned/.test(err.message)
      ? `${name} returned a value that cannot be passed into the sandbox`
      : scrubPaths(err.message)
    return typeof code === 'string'
      ? { t: 'host-result', cid, ok: false, message, code }
      : { t: 'host-result', cid, ok: false, message }
  }
  return { t: 'host-result', cid, ok: false, message: typeof err === 'string' ? err : `${name} failed` }
}

function failure (code: 'SANDBOX_LOST' | 'SHUTTING_DOWN' | 'BAD_MESSAGE' | 'MEMORY_LIMIT', message: string): SandboxResult {
  return { ok: false, error: wireError(code, message, 'EvalMeshError'), output: '', outputTruncated: false, seconds: 0 }
}

function validateLimits (l: EvalLimits): void {
  for (const k of ['timeoutMs', 'memoryMb', 'resultBytes', 'outputBytes'] as const) {
    const v = l?.[k]
    if (typeof v !== 'number' || !Number.isFinite(v) || v <= 0) {
      throw new EvalMeshError('BAD_LIMITS', `sandbox limits.${k} must be a positive number, got ${String(v)}`)
    }
  }
}

/**
 * The sandbox child process: the only process that loads isolated-vm. Forked by
 * the parent with --no-node-snapshot and advanced serialization; it owns one
 * isolate + context per session and runs each session's jobs in order.
 */
import { createRequire } from 'node:module'
import { serialize } from 'node:v8'
import { performance } from 'node:perf_hooks'
import type IVM from 'isolated-vm'
import type { EvalLimits, WireError } from '@evalmesh/protocol'
import { BOARD, BOOTSTRAP_SOURCE, KIND, SLOT, boardBytes } from './bootstrap.js'
import { batchForm, MAY_DECLARE_LEXICALS, type BatchForm } from './batch-forms.js'
import { evalError, isCloneFailure, wireError } from './errors.js'
import type { ChildInit, ParentBatch, RunMsg, ToChild, ToParent } from './ipc.js'
import { clampLimits } from './limits.js'
import { ownerOf } from './session-key.js'

const SNAPSHOT_FLAG = '--no-node-snapshot'
if (!process.execArgv.includes(SNAPSHOT_FLAG) && !(process.env.NODE_OPTIONS ?? '').includes(SNAPSHOT_FLAG)) {
  // isolated-vm crashes V8's shared heap when isolates start from different snapshots.
  process.stderr.write(`evalmesh sandbox: refusing to start without ${SNAPSHOT_FLAG}\n`)
  process.exit(78)
}
if (process.send === undefined) {
  process.stderr.write('evalmesh sandbox: this module is forked by @evalmesh/sandbox, not run directly\n')
  process.exit(64)
}

const ivm: typeof IVM = createRequire(import.meta.url)('isolated-vm')

const init = JSON.parse(process.env.EVALMESH_SANDBOX_INIT ?? '{}') as ChildInit
const FORM_FILE = 'form.js'
const PROBE_MS = 250
const TIMER_SLACK_MS = 25
const SCRIPT_CACHE_ENTRIES = 128
const SCRIPT_CACHE_FORM_CHARS = 2048
/** A batch stops starting forms after this long, so each form gets nearly all of its time limit. */
const BATCH_SLACK_MS = 1
/** Forms with shorter limits run alone: the slack would be a noticeable share of them. */
const BATCH_MIN_TIMEOUT_MS = 50
const BATCH_FORM_IDS = 1024
const PLAN_CACHE_ENTRIES = 4096
const SOURCE_URL = '\n//# sourceURL=' + FORM_FILE

// ---- batched IPC -------------------------------------------------------------

let outbox: ToParent[] = []
let flushScheduled = false
function post (msg: ToParent): void {
  outbox.push(msg)
  if (!flushScheduled) {
    flushScheduled = true
    setImmediate(flush)
  }
}
function flush (): void {
  flushScheduled = false
  if (outbox.length === 0 || process.connected !== true) return
  const batch: ParentBatch = { sessions: sessions.size, batched: batchedRuns, heapBytes: heapTotal(), msgs: outbox }
  outbox = []
  process.send!(batch)
}

// ---- jobs and sessions -------------------------------------------------------

interface Job {
  id: number
  session: string
  /** Run in a fresh context of its own, dropped afterwards (a no-session request while the default session is busy). */
  transient: boolean
  form: string
  limits: EvalLimits
  /** Set once a result has been posted; later outcomes are ignored. */
  done: boolean
  start: number
  output: string[]
  outputBytes: number
  outputTruncated: boolean
  /** Settles the race inside execute() early (abort, host-side timeout). */
  interrupt?: (outcome: Outcome) => void
  /** Its slot on the board while it is part of a running batch. */
  slot?: number
  /** The batch runner declined it (a name it touches is not a plain global): run it alone. */
  slowOnly?: boolean
  /** The strict (synchronous) runner declined it (a name it touches holds a string or bigint): batch it asynchronously. */
  asyncBatch?: boolean
  /** Set when this run found its session's globals gone for a reason other than a reset. */
  contextLost?: string
}

type Outcome =
  | { kind: 'value', value: unknown }
  | { kind: 'error', error: unknown }
  | { kind: 'timeout' }
  | { kind: 'aborted' }

type Task = { kind: 'job', job: Job } | { kind: 'reset', rid: number }

let grants: string[] = init.grants ?? []
let grantsVersion = 0
let grantSet = new Set(grants)

const jobs = new Map<number, Job>()
/** Insertion order is recency order: a use deletes and re-inserts. */
const sessions = new Map<string, Session>()
/**
 * Sessions whose context was dropped (evicted, idle, memory, abort) and why, so that
 * the next run there says its globals are gone instead of quietly starting afresh.
 */
const forgotten = new Map<string, string>()
const FORGOTTEN_ENTRIES = 4096
const maxSessionsPerClient = init.maxSessionsPerClient ?? 32
const clientMemoryBytes = (init.clientMemoryMb ?? 512) * 1024 * 1024
const hostCalls = new Map<number, { session: Session, generation: number, job: Job }>()
let nextCallId = 1
let stopping = false
/** Runs served by the batch path, reported to the parent for its stats. */
let batchedRuns = 0

class Session {
  readonly name: string
  /** The client that owns it: the session key up to its first '/'. */
  readonly owner: string
  /** Heap the isolate held after its last run, for the client's memory quota. */
  heapBytes = 0
  /** Why the previous isolate went away, if not by a reset: told to the next run. */
  lostReason: string | undefined
  isolate: IVM.Isolate | undefined
  context: IVM.Context | undefined
  dispatch: IVM.Reference<(op: number, a: unknown, b?: unknown, c?: unknown, d?: unknown) => void> | undefined
  memoryMb = 0
  installedGrants = -1
  /** Bumped whenever the isolate is replaced, so late host results are dropped. */
  generation = 0
  /** Why we disposed the isolate ourselves; unset means V8 did (memory limit). */
  disposedBy: string | undefined
  queue: Task[] = []
  current: Job | undefined
  busy = false
  lastUsed = Date.now()
  /** Compiled small forms, oldest first; they belong to the current isolate. */
  scripts = new Map<string, IVM.Script>()
  /** Promises of evaluations still owned by a disposed isolate, awaited on shutdown. */
  inflight = new Set<Promise<unknown>>()
  /** Shared with the isolate's batch runner: one slot per form of the running batch. */
  readonly board = new SharedArrayBuffer(boardBytes())
  readonly ints = new Int32Array(this.board, 0, BOARD.slots * BOARD.int32Regions)
  readonly nums = new Float64Array(this.board, BOARD.slots * 4 * BOARD.int32Regions, BOARD.slots)
  readonly pool = new Uint16Array(this.board, BOARD.slots * 4 * BOARD.int32Regions + BOARD.slots * 8, BOARD.poolUnits)
  /** Forms registered with the current isolate's batch runner, by text. */
  formIds = new Map<string, number>()
  /** A form that may have declared script-level let/const/class ran in this context. */
  lexicals = false
  /** The jobs of the batch in the isolate right now, by slot. */
  batch: Job[] | undefined

  constructor (name: string) {
    this.name = name
    this.owner = ownerOf(name)
  }

  /** A live isolate and context with the current grants installed; true if it was created now. */
  async ensure (memoryMb: number): Promise<boolean> {
    let created = false
    if (this.isolate === undefined || this.isolate.isDisposed) {
      // An isolate V8 disposed under us (its memory limit) took the globals with it.
      this.drop(this.isolate === undefined ? 'reset' : 'lost')
      const generation = this.generation
      const isolate = new ivm.Isolate({
        memoryLimit: memoryMb,
        // V8 cannot recover from this (typically a heap that grew past the limit inside
        // one allocation, e.g. a Map rehash): the process must go. Name the run that did it.
        onCatastrophicError: (message: string) => fatal(`catastrophic isolate error: ${message}`, this.current?.id ?? this.batch?.[0]?.id)
      })
      const context = await isolate.createContext()
      const sink = new ivm.Callback((text: unknown) => { this.write(text) })
      const start = new ivm.Callback((name: unknown, args: unknown) => this.startHostCall(name, args))
      const board = new ivm.ExternalCopy(this.board).copyInto({ release: true })
      const dispatch = await context.evalClosure(BOOTSTRAP_SOURCE, [sink, start, board], {
        filename: 'evalmesh:bootstrap',
        result: { reference: true }
      }) as IVM.Reference<(op: number, a: unknown, b?: unknown, c?: unknown, d?: unknown) => void>
      if (generation !== this.generation) {
        isolate.dispose()
        throw new Error('session was reset while starting')
      }
      this.isolate = isolate
      this.context = context
      this.dispatch = dispatch
      this.memoryMb = memoryMb
      this.installedGrants = -1
      this.disposedBy = undefined
      created = true
    }
    if (this.installedGrants !== grantsVersion) {
      const version = grantsVersion
      await this.dispatch!.apply(undefined, [2, grants], { arguments: { copy: true }, timeout: 1000 })
      this.installedGrants = version
    }
    return created
  }

  /** Forget the isolate (disposing it if still alive). */
  drop (reason = 'reset'): void {
    this.generation++
    this.scripts.clear()
    this.formIds.clear()
    this.lexicals = false
    const isolate = this.isolate
    this.isolate = undefined
    this.context = undefined
    this.dispatch = undefined
    this.heapBytes = 0
    if (isolate !== undefined) this.lostReason = reason === 'reset' ? undefined : LOST_BECAUSE[reason] ?? reason
    if (isolate !== undefined && !isolate.isDisposed) {
      this.disposedBy = reason
      try { isolate.dispose() } catch { /* already gone */ }
    }
  }

  /** Measure the heap after a run, for the owner's memory quota. */
  sampleHeap (): void {
    const isolate = this.isolate
    if (isolate === undefined || isolate.isDisposed) { this.heapBytes = 0; return }
    try {
      const h = isolate.getHeapStatisticsSync()
      this.heapBytes = h.used_heap_size + (h.externally_allocated_size ?? 0)
    } catch { this.heapBytes = 0 }
  }

  write (text: unknown): void {
    const job = this.current
    if (job === undefined || job.done || job.outputTruncated) return
    const s = (typeof text === 'string' ? text : String(text)) + '\n'
    const room = job.limits.outputBytes - job.outputBytes
    const bytes = Buffer.byteLength(s)
    if (bytes <= room) {
      job.output.push(s)
      job.outputBytes += bytes
      return
    }
    // Cut on a character boundary: decoding a truncated buffer drops a partial char.
    let cut = Buffer.from(s).subarray(0, room).toString('utf8')
    if (cut.endsWith('\uFFFD')) cut = cut.slice(0, -1)
    job.output.push(cut)
    job.outputBytes += Buffer.byteLength(cut)
    job.outputTruncated = true
  }

  /** Called synchronously from inside the isolate: returns a call id, or an error message. */
  startHostCall (name: unknown, args: unknown): number | string {
    const job = this.current
    if (job === undefined || job.done) return 'host functions can only be called while an evaluation is running in this session'
    if (typeof name !== 'string' || !grantSet.has(name)) return `${String(name)} is not granted on this node`
    if (!Array.isArray(args)) return 'host call arguments must be an array'
    let size: number
    try {
      size = serialize(args).length
    } catch {
      return `arguments to ${name} cannot be cloned`
    }
    if (size > job.limits.resultBytes) return `arguments to ${name} are ${size} bytes, over the limit of ${job.limits.resultBytes} bytes`
    const cid = nextCallId++
    hostCalls.set(cid, { session: this, generation: this.generation, job })
    post({ t: 'host-call', cid, id: job.id, name, args })
    return cid
  }

  settleHostCall (cid: number, ok: boolean, payload: unknown, generation: number, job: Job): void {
    if (generation !== this.generation || this.dispatch === undefined) return
    const remaining = job.done ? job.limits.timeoutMs : Math.max(1, job.start + job.limits.timeoutMs - performance.now())
    const p = this.dispatch.apply(undefined, [1, cid, ok, payload], { arguments: { copy: true }, timeout: Math.ceil(remaining) })
    p.catch((err: unknown) => {
      // The continuation ran past the limit (or the isolate died): the job it belongs to is over.
      if (!job.done && job.interrupt !== undefined) {
        if (isTimeout(err)) job.interrupt({ kind: 'timeout' })
        else job.interrupt({ kind: 'error', error: err })
      }
    })
  }
}

function isTimeout (err: unknown): boolean {
  return err instanceof Error && err.message === 'Script execution timed out.'
}

/** Why a session's globals went away, as the next run in it is told. */
const LOST_BECAUSE: Record<string, string> = {
  evicted: 'the session was evicted to make room for a newer one of the same client (its session quota)',
  memory: 'the session\'s isolate was disposed after it exceeded its memory limit',
  quota: 'the session was evicted to keep the client within its memory quota',
  idle: 'the session was idle longer than the node keeps sessions',
  abort: 'the session\'s isolate was disposed to abort a running evaluation',
  wedged: 'the session\'s isolate stopped responding and was disposed',
  lost: 'the session\'s isolate was disposed during an evaluation'
}

function idle (s: Session): boolean {
  return !s.busy && s.queue.length === 0
}

/**
 * The session a run goes to, made if need be. Quotas are per client: a client that
 * opens too many sessions, or holds too much heap in them, loses its own least
 * recently used idle sessions, never another client's. A string is a refusal.
 */
function sessionFor (name: string): Session | QuotaRefusal {
  let s = sessions.get(name)
  if (s !== undefined) {
    sessions.delete(name)
    sessions.set(name, s)
    s.lastUsed = Date.now()
    return s
  }
  const owner = ownerOf(name)
  let count = 0
  let heap = 0
  for (const o of sessions.values()) if (o.owner === owner) { count++; heap += o.heapBytes }
  while (count >= maxSessionsPerClient || heap >= clientMemoryBytes) {
    const victim = oldestIdle(o => o.owner === owner)
    if (victim === undefined) {
      return count >= maxSessionsPerClient
        ? { quota: 'sessionsPerClient', message: `client session quota: ${count} sessions are busy, the most a client may hold is ${maxSessionsPerClient}` }
        : { quota: 'memoryPerClientMb', message: `client memory quota: this client's sessions hold ${mib(heap)} MiB, the most a client may hold is ${mib(clientMemoryBytes)} MiB` }
    }
    count--
    heap -= victim.heapBytes
    forget(victim, count + 1 >= maxSessionsPerClient ? 'evicted' : 'quota')
  }
  // The process-wide cap is a backstop for many clients sharing this process: the
  // client holding the most sessions gives one up first.
  if (sessions.size >= init.maxSessions) {
    const heaviest = heaviestOwner()
    const victim = oldestIdle(o => o.owner === heaviest) ?? oldestIdle(() => true)
    if (victim === undefined) return { quota: 'sandboxSessions', message: `sandbox session capacity: all ${sessions.size} sessions of this sandbox process are busy` }
    forget(victim, 'evicted')
  }
  s = new Session(name)
  const lost = forgotten.get(name)
  if (lost !== undefined) { forgotten.delete(name); s.lostReason = lost }
  sessions.set(name, s)
  return s
}

/** Why a run could not have a session: the quota named, and a message saying so. */
interface QuotaRefusal { quota: string, message: string }

function oldestIdle (match: (s: Session) => boolean): Session | undefined {
  for (const s of sessions.values()) if (idle(s) && match(s)) return s // insertion order = recency
  return undefined
}

function heaviestOwner (): string | undefined {
  const counts = new Map<string, number>()
  let best: string | undefined
  for (const s of sessions.values()) {
    const n = (counts.get(s.owner) ?? 0) + 1
    counts.set(s.owner, n)
    if (best === undefined || n > counts.get(best)!) best = s.owner
  }
  return best
}

/** Drop an idle session, remembering why for its next run. */
function forget (s: Session, reason: string): void {
  s.drop(reason)
  sessions.delete(s.name)
  if (s.lostReason === undefined) return // it never had a context: nothing was lost
  forgotten.delete(s.name)
  forgotten.set(s.name, s.lostReason)
  if (forgotten.size > FORGOTTEN_ENTRIES) forgotten.delete(forgotten.keys().next().value as string)
}

function sweepIdle (): void {
  const cutoff = Date.now() - init.sessionIdleMs
  for (const s of [...sessions.values()]) {
    if (s.lastUsed < cutoff && idle(s)) forget(s, 'idle')
  }
}

function heapTotal (): number {
  let n = 0
  for (const s of sessions.values()) n += s.heapBytes
  return n
}

function mib (bytes: number): number {
  return Math.round(bytes / (1024 * 1024))
}

function finish (job: Job, ok: boolean, valueOrError: unknown): void {
  if (job.done) return
  job.done = true
  jobs.delete(job.id)
  const seconds = (performance.now() - job.start) / 1000
  if (ok && job.output.length === 0 && !job.outputTruncated && job.contextLost === undefined) post([job.id, valueOrError, seconds])
  else if (job.contextLost === undefined) post([job.id, valueOrError, seconds, ok, job.output.join(''), job.outputTruncated])
  else post([job.id, valueOrError, seconds, ok, job.output.join(''), job.outputTruncated, job.contextLost])
}

async function pump (s: Session): Promise<void> {
  if (s.busy) return
  s.busy = true
  try {
    while (s.queue.length > 0 && !stopping) {
      const batch = takeBatch(s)
      if (batch !== undefined) {
        try {
          await runBatch(s, batch)
        } catch (err) {
          for (const job of batch) finish(job, false, wireError('EVAL_ERROR', `sandbox failed to run the form: ${(err as Error)?.message ?? String(err)}`, 'Error'))
        } finally {
          s.batch = undefined
          s.current = undefined
          s.lastUsed = Date.now()
        }
        continue
      }
      const task = s.queue.shift()!
      if (task.kind === 'reset') {
        s.drop()
        post({ t: 'reset-done', rid: task.rid })
        continue
      }
      if (task.job.done) continue
      s.current = task.job
      try {
        await execute(s, task.job)
      } catch (err) {
        finish(task.job, false, wireError('EVAL_ERROR', `sandbox failed to run the form: ${(err as Error)?.message ?? String(err)}`, 'Error'))
      } finally {
        s.current = undefined
        s.lastUsed = Date.now()
        if (task.job.transient) {
          // A transient context serves one run: its globals are not kept.
          s.drop('reset')
          sessions.delete(s.name)
        } else {
          s.sampleHeap()
        }
      }
    }
  } finally {
    s.busy = false
  }
}

/**
 * Run one job alone. `evaluate`, when given, replaces compiling and running the
 * form: the batch path uses it to hand over a value or error its runner kept.
 */
async function execute (s: Session, job: Job, evaluate?: (timeout: number) => Promise<unknown>): Promise<void> {
  if (evaluate === undefined) job.start = performance.now()
  const { timeoutMs, memoryMb, resultBytes } = job.limits
  let timer: NodeJS.Timeout | undefined
  const interrupted = new Promise<Outcome>(resolve => {
    job.interrupt = resolve
    // A little after the isolate's own timeout, which reports more precisely.
    timer = setTimeout(resolve, timeoutMs + TIMER_SLACK_MS, { kind: 'timeout' })
  })
  try {
    const work = (async (): Promise<Outcome> => {
      if (s.isolate === undefined || s.isolate.isDisposed || s.installedGrants !== grantsVersion) noteFresh(s, job, await s.ensure(memoryMb))
      const generation = s.generation
      // Script-level bindings would shadow the globals the batch runner checks: this context is done with batches.
      if (evaluate === undefined && !s.lexicals && !AWAIT.test(job.form) && MAY_DECLARE_LEXICALS.test(job.form)) s.lexicals = true
      const remaining = Math.max(1, Math.ceil(job.start + timeoutMs - performance.now()))
      const running = evaluate !== undefined ? evaluate(remaining) : startEval(s, job.form, remaining)
      s.inflight.add(running)
      running.then(() => s.inflight.delete(running), () => s.inflight.delete(running))
      try {
        return { kind: 'value', value: await running }
      } catch (error) {
        if (generation !== s.generation && s.disposedBy === 'abort') return { kind: 'aborted' }
        return { kind: 'error', error }
      }
    })().catch((error: unknown): Outcome => ({ kind: 'error', error }))
    const outcome: Outcome = await Promise.race([work, interrupted])
    if (job.done) return

    if (outcome.kind === 'value') {
      let size: number
      try {
        size = serialize(outcome.value).length
      } catch {
        finish(job, false, wireError('NOT_CLONEABLE', 'result cannot be cloned out of the sandbox', 'Error'))
        return
      }
      if (size > resultBytes) {
        finish(job, false, wireError('RESULT_LIMIT', `result is ${size} bytes, over the result limit of ${resultBytes} bytes`, 'Error'))
        return
      }
      finish(job, true, outcome.value)
      return
    }
    if (outcome.kind === 'aborted') {
      finish(job, false, abortedRunning())
      return
    }
    if (outcome.kind === 'timeout') {
      // Our timer fired first: the form's promise never settled, or something kept
      // the isolate from honouring its own timeout. Keep the isolate only if it answers.
      const alive = await probe(s)
      if (job.done) return
      finish(job, false, wireError('TIME_LIMIT', `evaluation exceeded its wall-time limit of ${timeoutMs} ms` +
        (alive ? '' : '; the isolate did not respond, so it was disposed and the session starts fresh'), 'Error'))
      return
    }
    finish(job, false, classify(s, outcome.error, job.limits, job.start))
  } finally {
    clearTimeout(timer)
    job.interrupt = undefined
  }
}

// ---- the batch path ------------------------------------------------------------

const plans = new Map<string, BatchForm | null>()

function planOf (form: string): BatchForm | undefined {
  let plan = plans.get(form)
  if (plan === undefined) {
    plan = batchForm(form) ?? null
    if (form.length > SCRIPT_CACHE_FORM_CHARS) return plan ?? undefined
    if (plans.size >= PLAN_CACHE_ENTRIES) plans.clear()
    plans.set(form, plan)
  }
  return plan ?? undefined
}

function batchable (job: Job, timeoutMs: number): boolean {
  return !job.done && job.slowOnly !== true && job.limits.timeoutMs === timeoutMs && planOf(job.form) !== undefined
}

/** The queued jobs at the head of the session's queue that can run as one batch, taken off it. */
function takeBatch (s: Session): Job[] | undefined {
  const head = s.queue[0]
  if (head === undefined || head.kind !== 'job' || s.lexicals || head.job.transient) return undefined
  const timeoutMs = head.job.limits.timeoutMs
  if (timeoutMs < BATCH_MIN_TIMEOUT_MS || !batchable(head.job, timeoutMs)) return undefined
  let n = 1
  while (n < s.queue.length && n < BOARD.slots) {
    const t = s.queue[n]!
    if (t.kind !== 'job' || !batchable(t.job, timeoutMs)) break
    n++
  }
  return s.queue.splice(0, n).map(t => (t as { kind: 'job', job: Job }).job)
}

type TripEnd = { kind: 'returned' } | { kind: 'threw', error: unknown } | { kind: 'timer', settled: Promise<unknown> }

/** The batch as an async call into the isolate, with a timer behind the isolate's own timeout. */
async function asyncTrip (s: Session, n: number, fresh: unknown, timeoutMs: number): Promise<TripEnd> {
  const trip = s.dispatch!.apply(undefined, [3, n, BATCH_SLACK_MS, fresh], { arguments: { copy: true }, timeout: timeoutMs }) as Promise<unknown>
  s.inflight.add(trip)
  const settled = trip.then((): TripEnd => ({ kind: 'returned' }), (error: unknown): TripEnd => ({ kind: 'threw', error }))
  void settled.then(() => s.inflight.delete(trip))
  let timer: NodeJS.Timeout | undefined
  const end = await Promise.race([settled, new Promise<TripEnd>(resolve => { timer = setTimeout(resolve, timeoutMs + TIMER_SLACK_MS, { kind: 'timer', settled }) })])
  clearTimeout(timer)
  return end
}

/**
 * One trip into the isolate for the batch, then each job gets the outcome its slot
 * on the board shows: a value, an error or value to hand over, the timeout or
 * disposal that stopped it, or (not started) another turn.
 */
async function runBatch (s: Session, jobs: Job[]): Promise<void> {
  const first = jobs[0]!
  const { timeoutMs } = first.limits
  if (s.isolate === undefined || s.isolate.isDisposed || s.installedGrants !== grantsVersion) {
    try {
      noteFresh(s, first, await s.ensure(first.limits.memoryMb))
    } catch {
      // Let the slow path start the isolate and report what goes wrong.
      first.slowOnly = true
      requeue(s, jobs)
      return
    }
  }
  if (s.lexicals) { requeue(s, jobs); return }
  const ints = s.ints
  let fresh: { clear: boolean, forms: unknown[] } | undefined
  for (let i = 0; i < jobs.length; i++) {
    const job = jobs[i]!
    let id = s.formIds.get(job.form)
    if (id === undefined) {
      fresh ??= { clear: false, forms: [] }
      if (s.formIds.size >= BATCH_FORM_IDS) {
        s.formIds.clear()
        fresh.clear = true
        fresh.forms = []
        for (let j = 0; j < i; j++) {
          const f = jobs[j]!.form
          if (s.formIds.has(f)) continue
          const plan = planOf(f)!
          s.formIds.set(f, s.formIds.size)
          fresh.forms.push([s.formIds.size - 1, f + SOURCE_URL, plan.names, plan.usesGlobalThis])
        }
      }
      id = s.formIds.size
      const plan = planOf(job.form)!
      s.formIds.set(job.form, id)
      fresh.forms.push([id, job.form + SOURCE_URL, plan.names, plan.usesGlobalThis])
    }
    ints[BOARD.slots * BOARD.formId + i] = id
    ints[BOARD.slots * BOARD.kind + i] = 0
    Atomics.store(ints, BOARD.slots * BOARD.state + i, SLOT.pending)
    job.slot = i
  }
  const t0 = performance.now()
  for (const job of jobs) job.start = t0
  s.batch = jobs
  const generation = s.generation
  // Bounded forms (batch-forms.ts) on names holding no string or bigint run in time
  // proportional to their length, microseconds: one synchronous call into the isolate,
  // which saves the thread-pool hop of an async one and cannot hold this process's
  // event loop (other sessions, aborts, the parent's pings) for longer than that.
  const sync = jobs.every(j => j.asyncBatch !== true && planOf(j.form)!.bounded)
  let end: TripEnd
  if (sync) {
    try {
      s.dispatch!.applySync(undefined, [3, jobs.length, BATCH_SLACK_MS, fresh, true], { arguments: { copy: true }, timeout: timeoutMs })
      end = { kind: 'returned' }
    } catch (error) {
      end = { kind: 'threw', error }
    }
  } else end = await asyncTrip(s, jobs.length, fresh, timeoutMs)
  let alive = true
  if (end.kind === 'timer') {
    // The isolate did not honour its own timeout: keep it only if it answers.
    alive = await probe(s)
    let wait: NodeJS.Timeout | undefined
    await Promise.race([end.settled, new Promise(resolve => { wait = setTimeout(resolve, PROBE_MS * 4) })])
    clearTimeout(wait)
  }
  s.batch = undefined

  const state = BOARD.slots * BOARD.state
  const kinds = BOARD.slots * BOARD.kind
  let kept: Job | undefined
  let progressed = false
  const later: Job[] = []
  for (let i = 0; i < jobs.length; i++) {
    const job = jobs[i]!
    job.slot = undefined
    if (job.done) continue
    const st = Atomics.load(ints, state + i)
    if (st === SLOT.done) {
      const kind = ints[kinds + i]!
      if (kind === KIND.kept || kind === KIND.threw) { kept = job; continue }
      progressed = true
      batchedRuns++
      finishBatched(s, job, kind, i)
    } else if (st === SLOT.running) {
      progressed = true
      if (end.kind === 'timer') {
        finish(job, false, wireError('TIME_LIMIT', `evaluation exceeded its wall-time limit of ${timeoutMs} ms` +
          (alive ? '' : '; the isolate did not respond, so it was disposed and the session starts fresh'), 'Error'))
      } else if (end.kind === 'threw') {
        const error = end.error
        if (generation !== s.generation && s.disposedBy === 'abort') finish(job, false, abortedRunning())
        else finish(job, false, classify(s, error, job.limits, job.start))
      }
    } else if (st === SLOT.pending) {
      if (ints[kinds + i] === KIND.declined) {
        if (sync) job.asyncBatch = true
        else job.slowOnly = true
      }
      later.push(job)
    }
  }
  if (!progressed && kept === undefined && end.kind !== 'returned' && later.length > 0) {
    // Nothing ran: let the slow path run the first form and report what it meets.
    later[0]!.slowOnly = true
  }
  requeue(s, later)
  if (kept !== undefined) {
    batchedRuns++
    s.current = kept
    try {
      await execute(s, kept, timeout => s.dispatch!.apply(undefined, [4, 0], { result: { promise: true, copy: true }, timeout }) as Promise<unknown>)
    } finally {
      s.current = undefined
    }
  }
}

/** A run that starts a new context where one was lost says so in its reply. */
function noteFresh (s: Session, job: Job, fresh: boolean): void {
  if (!fresh || s.lostReason === undefined) return
  job.contextLost = s.lostReason
  s.lostReason = undefined
}

function requeue (s: Session, jobs: Job[]): void {
  if (jobs.length === 0) return
  s.queue.unshift(...jobs.filter(j => !j.done).map(job => ({ kind: 'job' as const, job })))
}

function finishBatched (s: Session, job: Job, kind: number, slot: number): void {
  let value: unknown
  let bound: number
  switch (kind) {
    case KIND.number: value = s.nums[slot]; bound = 16; break
    case KIND.string: {
      const off = s.ints[BOARD.slots * BOARD.strOff + slot]!
      const len = s.ints[BOARD.slots * BOARD.strLen + slot]!
      value = String.fromCharCode.apply(null, s.pool.subarray(off, off + len) as unknown as number[])
      bound = 2 * len + 16
      break
    }
    case KIND.undefined: value = undefined; bound = 16; break
    case KIND.null: value = null; bound = 16; break
    case KIND.true: value = true; bound = 16; break
    case KIND.false: value = false; bound = 16; break
    default:
      finish(job, false, wireError('EVAL_ERROR', `sandbox failed to read a batched result (kind ${kind})`, 'Error'))
      return
  }
  const { resultBytes } = job.limits
  if (bound > resultBytes) {
    const size = serialize(value).length
    if (size > resultBytes) {
      finish(job, false, wireError('RESULT_LIMIT', `result is ${size} bytes, over the result limit of ${resultBytes} bytes`, 'Error'))
      return
    }
  }
  finish(job, true, value)
}

/**
 * Run the form as a script in the session's context so that its completion value
 * is the result and top-level let/const persist. Forms that mention `await` are
 * wrapped in an async function (see compileAwait).
 */
async function startEval (s: Session, form: string, timeout: number): Promise<unknown> {
  const context = s.context!
  const awaits = AWAIT.test(form)
  if (form.length > SCRIPT_CACHE_FORM_CHARS) {
    if (!awaits) return await context.eval(form, { filename: FORM_FILE, timeout, promise: true, copy: true })
    const script = await compileAwait(s.isolate!, form)
    try {
      return await script.run(context, { timeout, promise: true, copy: true })
    } finally {
      script.release()
    }
  }
  // Repeated small forms (the '1+1' hot path) skip compilation: a compiled script
  // runs in one thread hop and is about twice as fast as context.eval. Forms that
  // mention await are compiled in their async shape (compileAwait), kept apart: in a
  // sloppy script `await (x)` parses as a call of a function named await.
  const key = awaits ? '\0await\0' + form : form
  let script = s.scripts.get(key)
  if (script === undefined) {
    script = awaits ? await compileAwait(s.isolate!, form) : await s.isolate!.compileScript(form, { filename: FORM_FILE })
    if (s.scripts.size >= SCRIPT_CACHE_ENTRIES) {
      const oldest = s.scripts.keys().next().value as string
      s.scripts.get(oldest)?.release()
      s.scripts.delete(oldest)
    }
    s.scripts.set(key, script)
  }
  return await script.run(context, { timeout, promise: true, copy: true })
}

const AWAIT = /\bawait\b/

/**
 * Top-level await: a form that needs it becomes the body of an async arrow.
 * To keep its completion value, try `return (<last statement>)` at each top-level
 * `;` from the end; the first split that compiles is used (parentheses make a
 * wrong split a syntax error). A single expression is tried first, the plain body
 * (whose value is undefined) last. Declarations in such a form are local to it.
 */
async function compileAwait (isolate: IVM.Isolate, form: string): Promise<IVM.Script> {
  const body = form.replace(/[\s;]+$/, '')
  const candidates = [`(async () => (\n${body}\n))()`]
  let at = body.length
  for (let tries = 0; tries < 40; tries++) {
    at = body.lastIndexOf(';', at - 1)
    if (at < 0) break
    candidates.push(`(async () => {\n${body.slice(0, at)};\nreturn (\n${body.slice(at + 1)}\n);\n})()`)
  }
  candidates.push(`(async () => {\n${body}\n})()`)
  for (const src of candidates) {
    try {
      return await isolate.compileScript(src, { filename: FORM_FILE, lineOffset: -1 })
    } catch { /* try the next shape */ }
  }
  // Not valid as an async body either: compile as written, for the real SyntaxError.
  return await isolate.compileScript(form, { filename: FORM_FILE })
}

/** Does the isolate still run code? A wedged one is disposed. */
async function probe (s: Session): Promise<boolean> {
  const context = s.context
  if (context === undefined || s.isolate?.isDisposed !== false) return false
  let timer: NodeJS.Timeout | undefined
  const answered = await Promise.race([
    context.eval('0', { timeout: PROBE_MS }).then(() => true, () => false),
    new Promise<boolean>(resolve => { timer = setTimeout(resolve, PROBE_MS * 2, false) })
  ])
  clearTimeout(timer)
  if (!answered) s.drop('wedged')
  return answered
}

function abortedRunning (): WireError {
  return wireError('ABORTED', 'evaluation was aborted while running; its session\'s isolate was disposed, so the session starts fresh', 'Error')
}

function classify (s: Session, err: unknown, limits: EvalLimits, start: number): WireError {
  const msg = err instanceof Error ? err.message : ''
  if (msg.startsWith('Isolate was disposed during execution due to memory limit') ||
      (s.isolate !== undefined && s.isolate.isDisposed && s.disposedBy === undefined)) {
    s.drop('memory')
    return wireError('MEMORY_LIMIT', `evaluation exceeded its memory limit of ${limits.memoryMb} MiB; the session's isolate was disposed and its globals are gone (the next run starts a fresh context)`, 'Error')
  }
  if (isTimeout(err) && performance.now() - start >= limits.timeoutMs * 0.9) {
    return wireError('TIME_LIMIT', `evaluation exceeded its wall-time limit of ${limits.timeoutMs} ms`, 'Error')
  }
  if (isCloneFailure(err)) {
    return wireError('NOT_CLONEABLE', `result cannot be cloned out of the sandbox (${msg}); return plain data: functions and symbols do not cross`, 'Error')
  }
  if (msg === 'Isolate is disposed' || msg.startsWith('Isolate was disposed')) {
    s.drop('lost')
    return wireError('EVAL_ERROR', 'the session\'s isolate was disposed during the evaluation; the session starts fresh', 'Error')
  }
  return evalError(err)
}

// ---- messages from the parent -------------------------------------------------

/** Sessions given work by the message being handled; pumped once it is all queued, so a batch sees it all. */
const touched = new Set<Session>()

let lastLimits: EvalLimits | undefined
let lastLimitsOf: RunMsg | undefined

/** Runs of one batch mostly share their limits: reuse the clamped object. */
function limitsOf (m: RunMsg): EvalLimits {
  const prev = lastLimitsOf
  if (lastLimits !== undefined && prev !== undefined && prev[3] === m[3] && prev[4] === m[4] && prev[5] === m[5] && prev[6] === m[6]) return lastLimits
  lastLimitsOf = m
  lastLimits = clampLimits({ timeoutMs: m[3], memoryMb: m[4], resultBytes: m[5], outputBytes: m[6] }, init.limits)
  return lastLimits
}

function onRun (m: RunMsg): void {
  const job: Job = {
    id: m[0],
    session: m[1],
    transient: m[7] === 1,
    form: typeof m[2] === 'string' ? m[2] : String(m[2]),
    limits: limitsOf(m),
    done: false,
    start: performance.now(),
    output: [],
    outputBytes: 0,
    outputTruncated: false
  }
  jobs.set(job.id, job)
  if (stopping) {
    finish(job, false, wireError('SHUTTING_DOWN', 'the sandbox is shutting down', 'Error'))
    return
  }
  const s = sessionFor(job.session)
  if (!(s instanceof Session)) {
    finish(job, false, { ...wireError('QUOTA', s.message, 'EvalMeshError'), data: { quota: s.quota } })
    return
  }
  s.queue.push({ kind: 'job', job })
  touched.add(s)
}

function onAbort (id: number): void {
  const job = jobs.get(id)
  if (job === undefined || job.done) return
  const s = sessions.get(job.session)
  if (s !== undefined && job.slot !== undefined && s.batch?.[job.slot] === job) {
    const at = BOARD.slots * BOARD.state + job.slot
    // Not started yet: the runner will skip it, as a queued run is dropped.
    if (Atomics.compareExchange(s.ints, at, SLOT.pending, SLOT.cancelled) === SLOT.pending) {
      finish(job, false, wireError('ABORTED', 'evaluation was aborted before it started', 'Error'))
      return
    }
    if (Atomics.load(s.ints, at) === SLOT.running) {
      s.drop('abort')
      finish(job, false, abortedRunning())
    }
    // Done: its result is already on the board, as a run that has just finished.
    return
  }
  if (s !== undefined && s.current === job) {
    s.drop('abort')
    finish(job, false, abortedRunning())
    job.interrupt?.({ kind: 'aborted' })
    return
  }
  if (s !== undefined) s.queue = s.queue.filter(t => t.kind !== 'job' || t.job !== job)
  finish(job, false, wireError('ABORTED', 'evaluation was aborted before it started', 'Error'))
}

function onHostResult (m: Extract<ToChild, { t: 'host-result' }>): void {
  const call = hostCalls.get(m.cid)
  if (call === undefined) return
  hostCalls.delete(m.cid)
  const payload = m.ok ? m.value : { message: m.message, code: m.code }
  call.session.settleHostCall(m.cid, m.ok, payload, call.generation, call.job)
}

function onMessage (batch: unknown): void {
  if (!Array.isArray(batch)) return
  for (const m of batch as ToChild[]) {
    if (Array.isArray(m)) { onRun(m); continue }
    switch (m.t) {
      case 'abort': onAbort(m.id); break
      case 'host-result': onHostResult(m); break
      case 'grants':
        grants = m.grants
        grantSet = new Set(grants)
        grantsVersion++
        break
      case 'reset': {
        const s = sessions.get(m.session)
        if (s === undefined) post({ t: 'reset-done', rid: m.rid })
        else {
          s.queue.push({ kind: 'reset', rid: m.rid })
          void pump(s)
        }
        break
      }
      case 'ping': post({ t: 'pong', n: m.n }); break
      case 'stop': void shutdown(0); break
    }
  }
  for (const s of touched) void pump(s)
  touched.clear()
}

/**
 * Dispose every isolate, wait for their evaluations to reject, then exit:
 * exiting with an isolate still running hangs, and exiting right after dispose
 * can segfault (dependency notes §1).
 */
async function shutdown (code: number): Promise<void> {
  if (stopping) return
  stopping = true
  const waits: Promise<unknown>[] = []
  for (const s of sessions.values()) {
    for (const p of s.inflight) waits.push(p.catch(() => undefined))
    s.drop('shutdown')
  }
  for (const job of jobs.values()) finish(job, false, wireError('SHUTTING_DOWN', 'the sandbox is shutting down', 'Error'))
  sessions.clear()
  let timer: NodeJS.Timeout | undefined
  await Promise.race([Promise.allSettled(waits), new Promise(resolve => { timer = setTimeout(resolve, 1000) })])
  clearTimeout(timer)
  flush()
  setImmediate(() => process.exit(code))
}

function fatal (reason: string, culprit: number | undefined): void {
  // V8 has lost the isolate; its thread may never return, and process.exit could hang.
  try {
    const msg: ToParent = culprit === undefined ? { t: 'fatal', reason } : { t: 'fatal', reason, culprit }
    process.send!({ sessions: sessions.size, batched: batchedRuns, heapBytes: 0, msgs: [msg] } satisfies ParentBatch, () => process.kill(process.pid, 'SIGKILL'))
  } catch { /* channel gone */ }
  setTimeout(() => process.kill(process.pid, 'SIGKILL'), 200).unref()
}

process.on('message', onMessage)
process.on('disconnect', () => { void shutdown(0) })
setInterval(sweepIdle, Math.min(60_000, Math.max(1000, init.sessionIdleMs / 4))).unref()
post({ t: 'ready', pid: process.pid })

/**
 * Sessions: one isolate and context per session key, made on first use and kept between
 * runs; the per-client quotas (sessions, heap) and the evictions they cause, and the
 * lost-context notices those leave for the next run.
 */
import { serialize } from 'node:v8'
import { performance } from 'node:perf_hooks'
import type IVM from 'isolated-vm'
import { BOARD, BOOTSTRAP_SOURCE, boardBytes, OP } from '../bootstrap.js'
import { ownerOf } from '../session-key.js'
import { ivm, init, post, type Job, type Task, state, sessions, forgotten, FORGOTTEN_ENTRIES, maxSessionsPerClient, clientMemoryBytes, hostCalls, fatal, streamLater } from './context.js'
import { isTimeout } from './run.js'

let nextCallId = 1

export class Session {
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
    if (this.installedGrants !== state.grantsVersion) {
      const version = state.grantsVersion
      await this.dispatch!.apply(undefined, [OP.installGrants, state.grants], { arguments: { copy: true }, timeout: 1000 })
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
      if (job.stream) streamLater(job)
      return
    }
    // Cut on a character boundary: decoding a truncated buffer drops a partial char.
    let cut = Buffer.from(s).subarray(0, room).toString('utf8')
    if (cut.endsWith('\uFFFD')) cut = cut.slice(0, -1)
    job.output.push(cut)
    job.outputBytes += Buffer.byteLength(cut)
    job.outputTruncated = true
    if (job.stream) streamLater(job)
  }

  /** Called synchronously from inside the isolate: returns a call id, or an error message. */
  startHostCall (name: unknown, args: unknown): number | string {
    const job = this.current
    if (job === undefined || job.done) return 'host functions can only be called while an evaluation is running in this session'
    if (typeof name !== 'string' || !state.grantSet.has(name)) return `${String(name)} is not granted on this node`
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
    const p = this.dispatch.apply(undefined, [OP.settleHostCall, cid, ok, payload], { arguments: { copy: true }, timeout: Math.ceil(remaining) })
    p.catch((err: unknown) => {
      // The continuation ran past the limit (or the isolate died): the job it belongs to is over.
      if (!job.done && job.interrupt !== undefined) {
        if (isTimeout(err)) job.interrupt({ kind: 'timeout' })
        else job.interrupt({ kind: 'error', error: err })
      }
    })
  }
}

/** Why a session's globals went away, as the next run in it is told. */
export const LOST_BECAUSE: Record<string, string> = {
  evicted: 'the session was evicted to make room for a newer one of the same client (its session quota)',
  memory: 'the session\'s isolate was disposed after it exceeded its memory limit',
  quota: 'the session was evicted to keep the client within its memory quota',
  idle: 'the session was idle longer than the node keeps sessions',
  abort: 'the session\'s isolate was disposed to abort a running evaluation',
  wedged: 'the session\'s isolate stopped responding and was disposed',
  lost: 'the session\'s isolate was disposed during an evaluation'
}

export function idle (s: Session): boolean {
  return !s.busy && s.queue.length === 0
}

/**
 * The session a run goes to, made if need be. Quotas are per client: a client that
 * opens too many sessions, or holds too much heap in them, loses its own least
 * recently used idle sessions, never another client's. A string is a refusal.
 */
export function sessionFor (name: string): Session | QuotaRefusal {
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
export interface QuotaRefusal { quota: string, message: string }

export function oldestIdle (match: (s: Session) => boolean): Session | undefined {
  for (const s of sessions.values()) if (idle(s) && match(s)) return s // insertion order = recency
  return undefined
}

export function heaviestOwner (): string | undefined {
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
export function forget (s: Session, reason: string): void {
  s.drop(reason)
  sessions.delete(s.name)
  if (s.lostReason === undefined) return // it never had a context: nothing was lost
  forgotten.delete(s.name)
  forgotten.set(s.name, s.lostReason)
  if (forgotten.size > FORGOTTEN_ENTRIES) forgotten.delete(forgotten.keys().next().value as string)
}

export function sweepIdle (): void {
  const cutoff = Date.now() - init.sessionIdleMs
  for (const s of [...sessions.values()]) {
    if (s.lastUsed < cutoff && idle(s)) forget(s, 'idle')
  }
}

export function mib (bytes: number): number {
  return Math.round(bytes / (1024 * 1024))
}

/**
 * The batch path: queued quick forms of one session evaluated together in one trip into
 * the isolate (see batch-forms.ts and the board in bootstrap.ts), each with exactly the
 * outcome it would have alone.
 */
import { serialize } from 'node:v8'
import { performance } from 'node:perf_hooks'
import { BOARD, KIND, SLOT, OP } from '../bootstrap.js'
import { planOf } from '../batch-forms.js'
import { wireError } from '../errors.js'
import { PROBE_MS, TIMER_SLACK_MS, BATCH_SLACK_MS, BATCH_MIN_TIMEOUT_MS, BATCH_FORM_IDS, SOURCE_URL, type Job, state, finish } from './context.js'
import { Session } from './session.js'
import { execute, noteFresh, probe, abortedRunning, classify } from './run.js'

// ---- the batch path ------------------------------------------------------------

export function batchable (job: Job, timeoutMs: number): boolean {
  return !job.done && job.slowOnly !== true && job.limits.timeoutMs === timeoutMs && planOf(job.form) !== undefined
}

/** The queued jobs at the head of the session's queue that can run as one batch, taken off it. */
export function takeBatch (s: Session): Job[] | undefined {
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

export type TripEnd = { kind: 'returned' } | { kind: 'threw', error: unknown } | { kind: 'timer', settled: Promise<unknown> }

/** The batch as an async call into the isolate, with a timer behind the isolate's own timeout. */
export async function asyncTrip (s: Session, n: number, fresh: unknown, timeoutMs: number): Promise<TripEnd> {
  const trip = s.dispatch!.apply(undefined, [OP.runBatch, n, BATCH_SLACK_MS, fresh], { arguments: { copy: true }, timeout: timeoutMs }) as Promise<unknown>
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
export async function runBatch (s: Session, jobs: Job[]): Promise<void> {
  const first = jobs[0]!
  const { timeoutMs } = first.limits
  if (s.isolate === undefined || s.isolate.isDisposed || s.installedGrants !== state.grantsVersion) {
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
      s.dispatch!.applySync(undefined, [OP.runBatch, jobs.length, BATCH_SLACK_MS, fresh, true], { arguments: { copy: true }, timeout: timeoutMs })
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

  const stateAt = BOARD.slots * BOARD.state
  const kinds = BOARD.slots * BOARD.kind
  let kept: Job | undefined
  let progressed = false
  const later: Job[] = []
  for (let i = 0; i < jobs.length; i++) {
    const job = jobs[i]!
    job.slot = undefined
    if (job.done) continue
    const st = Atomics.load(ints, stateAt + i)
    if (st === SLOT.done) {
      const kind = ints[kinds + i]!
      if (kind === KIND.kept || kind === KIND.threw) { kept = job; continue }
      progressed = true
      state.batchedRuns++
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
    state.batchedRuns++
    s.current = kept
    try {
      await execute(s, kept, timeout => s.dispatch!.apply(undefined, [OP.takeKept, 0], { result: { promise: true, copy: true }, timeout }) as Promise<unknown>)
    } finally {
      s.current = undefined
    }
  }
}

export function requeue (s: Session, jobs: Job[]): void {
  if (jobs.length === 0) return
  s.queue.unshift(...jobs.filter(j => !j.done).map(job => ({ kind: 'job' as const, job })))
}

export function finishBatched (s: Session, job: Job, kind: number, slot: number): void {
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

/**
 * The sandbox child process: the only process that loads isolated-vm. Forked by the
 * parent with --no-node-snapshot and advanced serialization. This file is the process's
 * main: messages from the parent and shutdown. Its parts are in child/: the shared
 * ground (context.ts), sessions and quotas (session.ts), one run (run.ts) and the batch
 * path (batch-run.ts).
 */
import { performance } from 'node:perf_hooks'
import type { EvalLimits } from '@evalmesh/protocol'
import { BOARD, SLOT } from './bootstrap.js'
import { wireError } from './errors.js'
import { RUN_STREAM, RUN_TRANSIENT, type RunMsg, type ToChild } from './ipc.js'
import { clampLimits } from './limits.js'
import { init, post, flush, type Job, state, jobs, sessions, hostCalls, finish } from './child/context.js'
import { Session, sessionFor, sweepIdle } from './child/session.js'
import { pump, abortedRunning } from './child/run.js'

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
    transient: ((m[7] ?? 0) & RUN_TRANSIENT) !== 0,
    form: typeof m[2] === 'string' ? m[2] : String(m[2]),
    limits: limitsOf(m),
    done: false,
    start: performance.now(),
    output: [],
    outputBytes: 0,
    outputTruncated: false,
    stream: ((m[7] ?? 0) & RUN_STREAM) !== 0,
    streamed: 0
  }
  jobs.set(job.id, job)
  if (state.stopping) {
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
        state.grants = m.grants
        state.grantSet = new Set(state.grants)
        state.grantsVersion++
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
  if (state.stopping) return
  state.stopping = true
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

process.on('message', onMessage)
process.on('disconnect', () => { void shutdown(0) })
setInterval(sweepIdle, Math.min(60_000, Math.max(1000, init.sessionIdleMs / 4))).unref()
post({ t: 'ready', pid: process.pid })

/**
 * The sandbox process's shared ground: the start-up checks, isolated-vm, the init the
 * parent passed, the batched IPC back to the parent, the jobs and sessions tables, and
 * the few values the other parts change as the process runs (`state`).
 */
import { createRequire } from 'node:module'
import { performance } from 'node:perf_hooks'
import type IVM from 'isolated-vm'
import type { EvalLimits } from '@evalmesh/protocol'
import type { ChildInit, ParentBatch, ToParent } from '../ipc.js'
import type { Session } from './session.js'

export const SNAPSHOT_FLAG = '--no-node-snapshot'
if (!process.execArgv.includes(SNAPSHOT_FLAG) && !(process.env.NODE_OPTIONS ?? '').includes(SNAPSHOT_FLAG)) {
  // isolated-vm crashes V8's shared heap when isolates start from different snapshots.
  process.stderr.write(`evalmesh sandbox: refusing to start without ${SNAPSHOT_FLAG}\n`)
  process.exit(78)
}
if (process.send === undefined) {
  process.stderr.write('evalmesh sandbox: this module is forked by @evalmesh/sandbox, not run directly\n')
  process.exit(64)
}

export const ivm: typeof IVM = createRequire(import.meta.url)('isolated-vm')

export const init = JSON.parse(process.env.EVALMESH_SANDBOX_INIT ?? '{}') as ChildInit
export const FORM_FILE = 'form.js'
export const PROBE_MS = 250
export const TIMER_SLACK_MS = 25
export const SCRIPT_CACHE_ENTRIES = 128
export const SCRIPT_CACHE_FORM_CHARS = 2048
/** A batch stops starting forms after this long, so each form gets nearly all of its time limit. */
export const BATCH_SLACK_MS = 1
/** Forms with shorter limits run alone: the slack would be a noticeable share of them. */
export const BATCH_MIN_TIMEOUT_MS = 50
export const BATCH_FORM_IDS = 1024
export const SOURCE_URL = '\n//# sourceURL=' + FORM_FILE

// ---- batched IPC -------------------------------------------------------------

let outbox: ToParent[] = []
let flushScheduled = false
export function post (msg: ToParent): void {
  outbox.push(msg)
  if (!flushScheduled) {
    flushScheduled = true
    setImmediate(flush)
  }
}
export function flush (): void {
  flushScheduled = false
  if (outbox.length === 0 || process.connected !== true) return
  const batch: ParentBatch = { sessions: sessions.size, batched: state.batchedRuns, heapBytes: heapTotal(), msgs: outbox }
  outbox = []
  process.send!(batch)
}

// ---- jobs and sessions -------------------------------------------------------

export interface Job {
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
  /** Send output to the parent as it is written (the run asked for streaming). */
  stream: boolean
  /** How many entries of `output` were already sent as they happened. */
  streamed: number
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

export type Outcome =
  | { kind: 'value', value: unknown }
  | { kind: 'error', error: unknown }
  | { kind: 'timeout' }
  | { kind: 'aborted' }

export type Task = { kind: 'job', job: Job } | { kind: 'reset', rid: number }

/**
 * What the parts of the process change as it runs, in one object (a module's `let`
 * cannot be assigned from another module): the grants forms see, whether the process is
 * stopping, and how many runs the batch path served (reported to the parent).
 */
export const state = {
  grants: init.grants ?? [] as string[],
  grantsVersion: 0,
  grantSet: new Set<string>(init.grants ?? []),
  stopping: false,
  batchedRuns: 0
}

export const jobs = new Map<number, Job>()
/** Insertion order is recency order: a use deletes and re-inserts. */
export const sessions = new Map<string, Session>()
/**
 * Sessions whose context was dropped (evicted, idle, memory, abort) and why, so that
 * the next run there says its globals are gone instead of quietly starting afresh.
 */
export const forgotten = new Map<string, string>()
export const FORGOTTEN_ENTRIES = 4096
export const maxSessionsPerClient = init.maxSessionsPerClient ?? 32
export const clientMemoryBytes = (init.clientMemoryMb ?? 512) * 1024 * 1024
export const hostCalls = new Map<number, { session: Session, generation: number, job: Job }>()

export function heapTotal (): number {
  let n = 0
  for (const s of sessions.values()) n += s.heapBytes
  return n
}

// ---- streamed output ---------------------------------------------------------

/** Streamed output is sent at most this often: a form that logs in a tight loop costs 20 messages a second, not one per line. */
export const STREAM_FLUSH_MS = 50
const streaming = new Set<Job>()
let streamTimer: NodeJS.Timeout | undefined

/** A streaming job wrote output: send it within STREAM_FLUSH_MS. */
export function streamLater (job: Job): void {
  streaming.add(job)
  streamTimer ??= setTimeout(flushStreams, STREAM_FLUSH_MS)
}

function flushStreams (): void {
  streamTimer = undefined
  for (const job of streaming) streamNow(job)
  streaming.clear()
}

/** Send what the job wrote since its last output message. */
function streamNow (job: Job): void {
  if (job.streamed >= job.output.length) return
  post({ t: 'output', id: job.id, text: job.output.slice(job.streamed).join('') })
  job.streamed = job.output.length
}

export function finish (job: Job, ok: boolean, valueOrError: unknown): void {
  if (job.done) return
  job.done = true
  jobs.delete(job.id)
  // The last lines go out before the result, so the stream is whole when the outcome arrives.
  if (job.stream) { streamNow(job); streaming.delete(job) }
  const seconds = (performance.now() - job.start) / 1000
  if (ok && job.output.length === 0 && !job.outputTruncated && job.contextLost === undefined) post([job.id, valueOrError, seconds])
  else if (job.contextLost === undefined) post([job.id, valueOrError, seconds, ok, job.output.join(''), job.outputTruncated])
  else post([job.id, valueOrError, seconds, ok, job.output.join(''), job.outputTruncated, job.contextLost])
}

export function fatal (reason: string, culprit: number | undefined): void {
  // V8 has lost the isolate; its thread may never return, and process.exit could hang.
  try {
    const msg: ToParent = culprit === undefined ? { t: 'fatal', reason } : { t: 'fatal', reason, culprit }
    process.send!({ sessions: sessions.size, batched: state.batchedRuns, heapBytes: 0, msgs: [msg] } satisfies ParentBatch, () => process.kill(process.pid, 'SIGKILL'))
  } catch { /* channel gone */ }
  setTimeout(() => process.kill(process.pid, 'SIGKILL'), 200).unref()
}

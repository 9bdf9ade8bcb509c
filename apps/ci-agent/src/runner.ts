import { userInfo } from 'node:os'
import { EvalMeshError, RemoteEvalError, type BroadcastConfig, type Client } from '@evalmesh/client'
import { STATUS_RANK } from '@evalmesh/megatest'
import { Claimer } from './claim.js'
import { JobError, type JobSpec, type StepSpec, type TestSpec } from './job.js'
import { bestDisk, createWorkArea, type WorkDirs } from './work-area.js'

/**
 * The CI agent's runner: registers a run and its tests through the Megatest API
 * on the area node, claims a willing node per test (or item) by broadcast, runs
 * the test's steps there in order, and records every transition as it happens.
 */

export interface RunJobOptions {
  /** The client: its broadcast config says which nodes may run tests. */
  client: Client
  /** Where broadcasts go (the same targets/interface the client was built with). */
  broadcast: BroadcastConfig
  /** host:port (or peer name) of the node serving the job's area. */
  areaHost: string
  /** Tests or items running at once (default: the job's, else 4). */
  concurrency?: number
  /** Progress events, in order per test. */
  onEvent?: (e: CiEvent) => void
  /** Aborting it stops the run: running steps are aborted, waiting tests are killed. */
  signal?: AbortSignal
  /**
   * Called when the area's node stops answering (CONNECT_FAILED, LOST, CLIENT_TIMEOUT,
   * SHUTTING_DOWN, UNKNOWN_AREA): find or start another (findOrStartAreaServer) and
   * resolve with its host:port. The failed call is sent again there and the run goes on.
   * Without it, or when it fails, the run ends with AREA_LOST_CODE's error once the
   * steps it started have been aborted.
   */
  reconnect?: (failedHost: string, err: unknown) => Promise<string>
  /** How long reconnecting may take in all, per loss (default 60 000 ms). */
  reconnectTimeoutMs?: number
  /** Which tests already recorded in this run run again (Megatest's -rerun rules; default: none that COMPLETED). */
  rerun?: RerunPolicy
}

/**
 * Megatest's re-run flags. With none, a test that is COMPLETED (whatever its status),
 * or has a well-ended status, KILLED or still running, is not run again; NOT_STARTED,
 * INCOMPLETE and DELETED ones are, and so are FAIL and n/a ones not COMPLETED.
 */
export interface RerunPolicy {
  /** -rerun STATUS,...: also run tests with one of these statuses. */
  statuses?: string[]
  /** -rerun-clean: also run tests in KILLREQ KILLED UNKNOWN INCOMPLETE STUCK NOT_STARTED, or with FAIL INCOMPLETE ABORT CHECK. */
  clean?: boolean
  /** -rerun-all: run every test again. */
  all?: boolean
}

const CLEAN_RERUN_STATES = new Set(['KILLREQ', 'KILLED', 'UNKNOWN', 'INCOMPLETE', 'STUCK', 'NOT_STARTED'])
const CLEAN_RERUN_STATUSES = new Set(['FAIL', 'INCOMPLETE', 'ABORT', 'CHECK'])

/**
 * runs.scm's run:test decision for a test already in the run: null to run it, or why
 * it is not run. (megatest.scm's -rerun-clean and -rerun-all first set the tests they
 * pick to NOT_STARTED; that is the same as running them here.)
 */
export function rerunDecision (state: string, status: string, policy: RerunPolicy = {}): string | null {
  if (policy.all === true) return null
  if (policy.clean === true && (CLEAN_RERUN_STATES.has(state) || CLEAN_RERUN_STATUSES.has(status))) return null
  if (state === 'NOT_STARTED' || state === 'DELETED' || state === 'INCOMPLETE') return null
  if (state === 'KILLED') return 'it was KILLED (--rerun-clean or --rerun-all runs it again)'
  if (state !== 'COMPLETED') return `it is ${state} (--rerun-all runs it again)`
  // COMPLETED (Megatest's clause also names PASS WARN CHECK SKIP WAIVED, which only
  // COMPLETED tests have here): only a -rerun naming its status runs it again.
  const list = policy.statuses ?? []
  if (list.includes(status)) return null
  return list.length === 0 ? `it is ${state}/${status} (--rerun ${status} runs it again)` : `it is ${state}/${status}, not one of --rerun ${list.join(',')}`
}

/** Errors meaning the area's node is gone or no longer serves the area. */
const AREA_LOST_CODES = new Set(['CONNECT_FAILED', 'LOST', 'CLIENT_TIMEOUT', 'SHUTTING_DOWN', 'UNKNOWN_AREA'])
/** The code runJob rejects with when the area's node was lost and none could be found. */
export const AREA_LOST_CODE = 'LOST'
/** How often the area's node is pinged while steps run. */
const AREA_PING_MS = 2_000

export type CiEvent =
  | { kind: 'run', runId: number, runname: string, target: string, units: number }
  | { kind: 'launched', unit: UnitRef }
  | { kind: 'started', unit: UnitRef, node: string, host: string }
  | { kind: 'step', unit: UnitRef, step: string, phase: 'start', txn: string, host: string }
  | { kind: 'step', unit: UnitRef, step: string, phase: 'end', status: string, comment: string }
  | { kind: 'ended', unit: UnitRef, state: string, status: string, comment: string }
  | { kind: 'skipped', unit: UnitRef, state: string, status: string, reason: string }
  | { kind: 'run-ended', state: string, status: string }

export interface UnitRef { test: string, item: string, id: number }

export interface StepSummary { name: string, status: string, comment: string, seconds: number, txn?: string }

export interface UnitSummary extends UnitRef {
  state: string
  status: string
  comment: string
  node: string | null
  seconds: number
  steps: StepSummary[]
  /** Not run: recorded earlier and not picked by the re-run rules (why in comment). */
  skipped?: true
  /** Area jobs: the run directory (under the link tree) and the final log, relative to it. */
  rundir?: string
  logfile?: string
}

export interface RunSummary {
  runId: number
  runname: string
  target: string
  area: string
  areaHost: string
  state: string
  status: string
  /** True when the run COMPLETED with PASS, WARN, WAIVED or SKIP. */
  passed: boolean
  seconds: number
  units: UnitSummary[]
}

/** Statuses that count as a pass for the exit code (Megatest's well-ended set, less CHECK: it needs a person). */
export const PASSING_STATUSES = ['PASS', 'WARN', 'WAIVED', 'SKIP']
const STEP_STATUSES = new Set(['PASS', 'WARN', 'FAIL', 'CHECK', 'WAIVED', 'SKIP'])
/** Errors meaning the test's own code failed: COMPLETED/FAIL. */
const FAIL_CODES = new Set(['EVAL_ERROR', 'MEMORY_LIMIT', 'RESULT_LIMIT', 'NOT_CLONEABLE', 'UNKNOWN_FUNCTION', 'BAD_LIMITS'])
/** Errors meaning the test was stopped on purpose (an abort, its time limit): KILLED/ABORT. */
const KILL_CODES = new Set(['ABORTED', 'TIME_LIMIT'])
/** Time allowed beyond a step's own limit before the agent stops waiting for the node. */
const GRACE_MS = 30_000
const DEFAULT_STEP_TIMEOUT_MS = 30_000
const DEFAULT_CLAIM_TIMEOUT_MS = 120_000

const isAborted = (signal: AbortSignal | undefined): boolean => signal?.aborted === true
const rank = (status: string): number => (STATUS_RANK as Record<string, number>)[status] ?? 0
const worst = (a: string, b: string): string => rank(b) > rank(a) ? b : a

class Semaphore {
  #free: number
  readonly #waiting: Array<() => void> = []
  constructor (n: number) { this.#free = n }
  async acquire (): Promise<void> {
    if (this.#free > 0) { this.#free--; return }
    await new Promise<void>(resolve => this.#waiting.push(resolve))
  }

  release (): void {
    const next = this.#waiting.shift()
    if (next !== undefined) next()
    else this.#free++
  }
}

interface Outcome { state: string, status: string, comment: string }

/** A step's value as a verdict: false fails; `{status, comment, logfile, data}` says more. */
export function interpretStepValue (value: unknown): { status: string, comment: string, logfile: string, data: string | null } {
  if (value === false) return { status: 'FAIL', comment: 'step returned false', logfile: '', data: null }
  if (typeof value !== 'object' || value === null || value instanceof Date || Array.isArray(value)) {
    return { status: 'PASS', comment: '', logfile: '', data: null }
  }
  const v = value as Record<string, unknown>
  let status = 'PASS'
  let comment = typeof v.comment === 'string' ? v.comment : ''
  if (v.status !== undefined) {
    const s = String(v.status).toUpperCase()
    if (STEP_STATUSES.has(s)) status = s
    else { status = 'FAIL'; comment = `unknown step status ${JSON.stringify(v.status)} (use ${[...STEP_STATUSES].join(' ')})${comment === '' ? '' : '; ' + comment}` }
  }
  return { status, comment, logfile: typeof v.logfile === 'string' ? v.logfile : '', data: v.data === undefined ? null : dataToCsv(v.data) }
}

const DATA_FIELDS = ['category', 'variable', 'value', 'expected', 'tol', 'units', 'comment', 'status', 'type'] as const

function csvField (v: unknown): string {
  if (v === undefined || v === null) return ''
  const s = String(v)
  return /[",\n\r#]/.test(s) || s !== s.trim() ? `"${s.replace(/"/g, '""')}"` : s
}

/** Test data rows (a CSV string, or rows as arrays or objects) as csv->test-data's CSV. */
export function dataToCsv (data: unknown): string {
  if (typeof data === 'string') return data
  if (!Array.isArray(data)) throw new EvalMeshError('BAD_MESSAGE', 'step data must be a CSV string or an array of rows')
  return data.map((row, i) => {
    if (Array.isArray(row)) return row.map(csvField).join(',')
    if (typeof row === 'object' && row !== null) {
      const r = row as Record<string, unknown>
      if (typeof r.variable !== 'string' || r.variable === '') throw new EvalMeshError('BAD_MESSAGE', `step data row ${i} has no variable`)
      return DATA_FIELDS.map(f => csvField(r[f])).join(',')
    }
    throw new EvalMeshError('BAD_MESSAGE', `step data row ${i} must be an array or an object`)
  }).join('\n')
}

/** Expand {test} {item} {runname} {target} {run_id} {test_id} in operator-function string args. */
function expandArgs (args: unknown[], vars: Record<string, string>): unknown[] {
  return args.map(a => typeof a === 'string' ? a.replace(/\{(test|item|runname|target|run_id|test_id)\}/g, (_m, k: string) => vars[k] ?? '') : a)
}

function codeOf (err: unknown): string {
  return err instanceof EvalMeshError || err instanceof RemoteEvalError ? err.code : 'ERROR'
}

function oneLine (s: string, max = 200): string {
  const t = s.replace(/\s+/g, ' ').trim()
  return t.length > max ? t.slice(0, max - 3) + '...' : t
}

/** Run a job on the mesh; resolves with the summary once every test has ended. */
export async function runJob (job: JobSpec, opts: RunJobOptions): Promise<RunSummary> {
  const started = Date.now()
  const { client } = opts
  let areaHost = opts.areaHost
  const area = job.area
  const emit = (e: CiEvent): void => { try { opts.onEvent?.(e) } catch { /* a display problem must not stop the run */ } }
  // Set once the area's node is gone for good: nothing more can be recorded.
  let areaLost: EvalMeshError | undefined
  let reconnecting: Promise<void> | undefined
  const running = new Map<string, { txn: string, host: string }>()
  const abortRunning = (reason: string): void => {
    for (const r of running.values()) void client.remoteAbort(r.txn, r.host, { reason }).catch(() => {})
  }
  const loseArea = (failedHost: string, err: unknown, why: string): EvalMeshError => {
    areaLost ??= new EvalMeshError(AREA_LOST_CODE, `the node serving Megatest area ${area} at ${failedHost} was lost (${codeOf(err)}: ${oneLine((err as Error).message)})${why}; the steps this run started were aborted and nothing more is recorded`, { area, host: failedHost })
    abortRunning(`ci run: the area node at ${failedHost} was lost`)
    return areaLost
  }
  /** One reconnect at a time; every caller that saw the loss waits for it. */
  const recover = async (failedHost: string, err: unknown): Promise<void> => {
    if (areaHost !== failedHost) return // another call already moved to a new node
    reconnecting ??= (async () => {
      if (opts.reconnect === undefined) throw loseArea(failedHost, err, '')
      const ms = opts.reconnectTimeoutMs ?? 60_000
      let timer: NodeJS.Timeout | undefined
      try {
        const next = await Promise.race([
          opts.reconnect(failedHost, err),
          new Promise<never>((_resolve, reject) => { timer = setTimeout(() => reject(new EvalMeshError('CLIENT_TIMEOUT', `no node found within ${ms} ms`)), ms) })
        ])
        areaHost = next
      } catch (e) {
        throw loseArea(failedHost, err, `, and no other node could be found or started: ${oneLine((e as Error).message)}`)
      } finally {
        clearTimeout(timer)
      }
    })().finally(() => { reconnecting = undefined })
    await reconnecting
  }
  const mt = async (command: string, ...params: unknown[]): Promise<unknown> => {
    for (let attempt = 0; ; attempt++) {
      if (areaLost !== undefined) throw areaLost
      if (reconnecting !== undefined) await reconnecting
      const host = areaHost
      try {
        return await client.remoteApply(`megatest.${command}`, [area, ...params], host)
      } catch (err) {
        if (!AREA_LOST_CODES.has(codeOf(err)) || attempt >= 3) {
          if (AREA_LOST_CODES.has(codeOf(err))) throw loseArea(host, err, ' (still unreachable after reconnecting)')
          throw err
        }
        await recover(host, err)
      }
    }
  }

  // The runner's part of Megatest's workload (spec §5): keys, run, task, test meta.
  const keys = await mt('get-keys') as string[]
  const missing = keys.filter(k => job.target[k] === undefined)
  const extra = Object.keys(job.target).filter(k => !keys.includes(k))
  if (missing.length > 0 || extra.length > 0) {
    throw new JobError('BAD_JOB', `job target does not match area ${area}'s keys (${keys.join(', ')}):${missing.length > 0 ? ` missing ${missing.join(', ')}` : ''}${extra.length > 0 ? ` unknown ${extra.join(', ')}` : ''}`)
  }
  const target = keys.map(k => job.target[k]).join('/')
  const user = job.user ?? currentUser()
  const runId = await mt('register-run', keys.map(k => [k, job.target[k]]), job.runname, 'new', 'n/a', user, job.contour ?? '') as number
  await mt('set-state-status-and-roll-up-run', runId, 'RUNNING', 'n/a')
  const taskKey = `ci-${runId}-${process.pid}-${Date.now()}`
  await mt('tasks-add', 'run-tests', user, target, job.runname, job.tests.map(t => t.name).join(','), taskKey)
  await mt('tasks-set-state-given-param-key', taskKey, 'running')

  // Register every test and item up front, so `ci status` shows what is still to come.
  // A re-run of the same run name and target starts each test afresh.
  // A test already recorded in this run (a re-run) runs again only by Megatest's re-run rules.
  interface Unit { test: TestSpec, item: string, id: number, summary: UnitSummary, skip: string | null }
  interface Recorded { state: string, status: string, host: string, rundir: string, final_logf: string }
  const units: Unit[] = []
  const toplevels = new Map<string, number>()
  for (const t of job.tests) {
    await mt('testmeta-add-record', t.name)
    await mt('general-call', 'register-test', runId, runId, t.name, '')
    const topId = await mt('get-test-id', runId, t.name, '') as number
    toplevels.set(t.name, topId)
    let anyRuns = false
    for (const item of t.items ?? ['']) {
      if (item !== '') await mt('general-call', 'register-test', runId, runId, t.name, item)
      const id = item === '' ? topId : await mt('get-test-id', runId, t.name, item) as number
      const rec = await mt('get-test-info-by-id', runId, id) as Recorded | null
      const skip = rec === null ? null : rerunDecision(rec.state, rec.status, opts.rerun)
      if (skip !== null && rec !== null) {
        const summary: UnitSummary = { test: t.name, item, id, state: rec.state, status: rec.status, comment: `not run: ${skip}`, node: rec.host === 'n/a' ? null : rec.host, seconds: 0, steps: [], skipped: true }
        if (job.workArea !== undefined) { summary.rundir = rec.rundir; summary.logfile = rec.final_logf }
        units.push({ test: t, item, id, summary, skip })
        continue
      }
      anyRuns = true
      await mt('general-call', 'delete-test-step-records', runId, id)
      await mt('general-call', 'delete-test-data-records', runId, id)
      await mt('test-set-state-status', runId, id, 'NOT_STARTED', 'n/a', '')
      units.push({ test: t, item, id, skip: null, summary: { test: t.name, item, id, state: 'NOT_STARTED', status: 'n/a', comment: '', node: null, seconds: 0, steps: [] } })
    }
    if (t.items !== undefined && anyRuns) await mt('test-set-state-status', runId, topId, 'NOT_STARTED', 'n/a', '')
  }
  const disk = job.workArea === undefined ? undefined : bestDisk(job.workArea.disks)
  emit({ kind: 'run', runId, runname: job.runname, target, units: units.length })

  const sem = new Semaphore(Math.max(1, opts.concurrency ?? job.concurrency ?? 4))
  const claimer = new Claimer(client, opts.broadcast)
  const onAbort = (): void => abortRunning('ci run interrupted')
  // While steps run on the workers nothing is sent to the area's node: ping it, so a lost
  // node is noticed (and replaced, or the steps aborted) within seconds, not at the next write.
  const watch = setInterval(() => { if (running.size > 0 && areaLost === undefined) void mt('ping').catch(() => {}) }, AREA_PING_MS)
  watch.unref()
  opts.signal?.addEventListener('abort', onAbort, { once: true })

  const finish = async (u: Unit, o: Outcome): Promise<void> => {
    await mt('set-state-status-and-roll-up-items', runId, u.id, null, o.state, o.status, o.comment)
    u.summary.state = o.state
    u.summary.status = o.status
    u.summary.comment = o.comment
    emit({ kind: 'ended', unit: ref(u), state: o.state, status: o.status, comment: o.comment })
  }
  const ref = (u: Unit): UnitRef => ({ test: u.test.name, item: u.item, id: u.id })

  const runUnit = async (u: Unit): Promise<void> => {
    const t = u.test
    const unitKey = `${t.name}/${u.item}`
    const session = `ci-${runId}-${u.id}`
    const t0 = Date.now()
    if (areaLost !== undefined) return
    await mt('set-state-status-and-roll-up-items', runId, u.id, null, 'LAUNCHED', 'n/a', null)
    u.summary.state = 'LAUNCHED'
    emit({ kind: 'launched', unit: ref(u) })

    // create-work-area, before the test is launched, as Megatest's runner does it.
    let dirs: WorkDirs | undefined
    if (job.workArea !== undefined && disk !== undefined) {
      try {
        dirs = createWorkArea(job.workArea, disk, target, job.runname, t.name, u.item, t.source)
      } catch (err) {
        return await finish(u, { state: 'COMPLETED', status: 'FAIL', comment: oneLine(`cannot create the run directory: ${(err as Error).message}`) })
      }
      await mt('general-call', 'test-set-rundir-shortdir', runId, dirs.rundir, dirs.testPath, t.name, u.item, runId)
      if (u.item !== '') await mt('general-call', 'test-set-rundir-shortdir', runId, dirs.lnkpath, dirs.lnkpath, t.name, '', runId)
      u.summary.rundir = dirs.rundir
    }

    const ctx = { area, run: job.runname, run_id: runId, target, keys: job.target, test: t.name, item: u.item, test_id: u.id }
    let claimed
    try {
      claimed = await claimer.claim(`globalThis.ci = Object.freeze(${JSON.stringify(ctx)}); true`, session,
        Date.now() + (job.claimTimeoutMs ?? DEFAULT_CLAIM_TIMEOUT_MS), opts.signal)
    } catch (err) {
      const code = codeOf(err)
      if (code === 'ABORTED') return await finish(u, { state: 'KILLED', status: 'ABORT', comment: 'run interrupted before the test started' })
      // Launched but never reached a live test process: Megatest's mark-incomplete gives COMPLETED/DEAD.
      return await finish(u, { state: 'COMPLETED', status: 'DEAD', comment: oneLine(`${code}: ${(err as Error).message}`) })
    }
    const host = claimed.host
    u.summary.node = claimed.node.name
    await mt('test-set-state-status', runId, u.id, 'REMOTEHOSTSTART', 'n/a', null)
    await mt('general-call', 'update-uname-host', runId, 'evalmesh', claimed.node.name, u.id)
    await mt('general-call', 'set-test-start-time', runId, u.id)
    await mt('set-state-status-and-roll-up-items', runId, u.id, null, 'RUNNING', 'n/a', null)
    u.summary.state = 'RUNNING'
    emit({ kind: 'started', unit: ref(u), node: claimed.node.name, host })

    let status = 'PASS'
    let outcome: Outcome | undefined
    let hadData = false
    const work: UnitWork = {}
    if (dirs !== undefined) {
      work.rundir = dirs.testPath
      work.env = {
        ...job.env, ...t.env, ...t.itemVars?.[u.item],
        MT_TEST_RUN_DIR: dirs.testPath, MT_TEST_NAME: t.name, MT_ITEMPATH: u.item, MT_RUNNAME: job.runname, MT_TARGET: target, MT_RUN_ID: String(runId), MT_TEST_ID: String(u.id)
      }
    }
    const runtimeEnd = t.runtimeLimitMs === undefined ? undefined : t0 + t.runtimeLimitMs
    try {
      for (const step of t.steps) {
        const s0 = Date.now()
        if (runtimeEnd !== undefined) {
          work.runtimeLeftMs = runtimeEnd - s0
          if (work.runtimeLeftMs <= 0) { outcome = runtimeKill(t); break }
        }
        await mt('teststep-set-status!', runId, u.id, step.name, 'start', '-', '', '')
        const r = await runStep(client, step, t, job, host, session, work, { test: t.name, item: u.item, runname: job.runname, target, run_id: String(runId), test_id: String(u.id) }, (txn) => {
          running.set(unitKey, { txn, host })
          emit({ kind: 'step', unit: ref(u), step: step.name, phase: 'start', txn, host })
          if (opts.signal?.aborted === true) onAbort()
        })
        running.delete(unitKey)
        if (r.data !== null) {
          try {
            await mt('csv->test-data', runId, u.id, r.data)
            hadData = true
          } catch (err) {
            if (codeOf(err) !== 'MEGATEST_ERROR' && codeOf(err) !== 'BAD_MESSAGE') throw err
            r.status = 'FAIL'
            r.comment = oneLine(`test data refused: ${(err as Error).message}`)
          }
        }
        // An ezstep's end row has its exit code as the status, as Megatest records it.
        await mt('teststep-set-status!', runId, u.id, step.name, 'end', r.exitCode !== undefined ? String(r.exitCode) : r.status, r.comment, r.logfile)
        if (dirs !== undefined && r.logfile !== '') {
          // The last step's log is the test's log (Megatest sets final_logf per step's log).
          await mt('general-call', 'test-set-log', runId, r.logfile, u.id)
          u.summary.logfile = r.logfile
        }
        u.summary.steps.push({ name: step.name, status: r.status, comment: r.comment, seconds: (Date.now() - s0) / 1000, ...(r.txn !== undefined ? { txn: r.txn } : {}) })
        emit({ kind: 'step', unit: ref(u), step: step.name, phase: 'end', status: r.status, comment: r.comment })
        if (r.kill !== undefined) { outcome = r.kill; break }
        status = worst(status, r.status)
        if (r.status === 'FAIL') { outcome = { state: 'COMPLETED', status: 'FAIL', comment: `step ${step.name} failed${r.comment === '' ? '' : ': ' + r.comment}` }; break }
        await mt('set-state-status-and-roll-up-items', runId, u.id, null, 'RUNNING', status, null)
      }
      if (hadData) {
        // Test data can fail a test whose steps passed (Megatest's test-data-rollup).
        const verdict = await mt('test-data-rollup', runId, u.id, status) as { status: string }
        if (verdict.status === 'FAIL' && outcome === undefined) outcome = { state: 'COMPLETED', status: 'FAIL', comment: 'test data out of tolerance' }
      }
      outcome ??= { state: 'COMPLETED', status, comment: '' }
      await mt('general-call', 'update-run-duration', runId, Math.round((Date.now() - t0) / 1000), u.id)
      u.summary.seconds = (Date.now() - t0) / 1000
      await finish(u, outcome)
    } finally {
      running.delete(unitKey)
      void client.reset(host, session).catch(() => {})
    }
  }

  const ended = new Map<string, Promise<void>>()
  const unitsOf = (name: string): Unit[] => units.filter(u => u.test.name === name)
  const unitEnded = new Map<Unit, { promise: Promise<void>, resolve: () => void }>()
  for (const u of units) {
    let resolve!: () => void
    const promise = new Promise<void>(res => { resolve = res })
    unitEnded.set(u, { promise, resolve })
  }
  /** The tests (or, with itemwait/itemmatch, the same items of them) that u waits on have ended. */
  const waitFor = async (t: TestSpec, u: Unit): Promise<void> => {
    await Promise.all((t.waiton ?? []).map(async w => {
      const byItem = (t.mode === 'itemwait' || t.mode === 'itemmatch') && u.item !== ''
      const same = byItem ? units.find(x => x.test.name === w && x.item === u.item) : undefined
      await (same !== undefined ? unitEnded.get(same)!.promise : ended.get(w))
    }))
  }
  const runTest = async (t: TestSpec): Promise<void> => {
    await Promise.all(unitsOf(t.name).map(async u => {
      try { await runOne(t, u) } finally { unitEnded.get(u)!.resolve() }
    }))
  }
  const runOne = async (t: TestSpec, u: Unit): Promise<void> => {
    if (u.skip !== null) {
      emit({ kind: 'skipped', unit: ref(u), state: u.summary.state, status: u.summary.status, reason: u.skip })
      return
    }
    await waitFor(t, u)
    if (opts.signal?.aborted === true) return await finish(u, { state: 'KILLED', status: 'ABORT', comment: 'run interrupted before the test started' })
    if ((t.waiton ?? []).length > 0) {
      // Megatest decides this through the database (get-prereqs-not-met), so a
      // prerequisite recorded by an earlier run or another agent counts the same way.
      const unmet = await mt('get-prereqs-not-met', runId, t.waiton, t.name, u.item, t.mode ?? 'normal', null) as Array<string | { testname: string, item_path: string, state: string, status: string }>
      if (unmet.length > 0) {
        const names = [...new Set(unmet.map(x => typeof x === 'string' ? x : x.testname))]
        return await finish(u, { state: 'NOT_STARTED', status: 'PREQ_FAIL', comment: `prerequisite ${names.join(', ')} did not pass` })
      }
    }
    await sem.acquire()
    try {
      // The signal may have fired while this test waited for a slot.
      if (isAborted(opts.signal)) return await finish(u, { state: 'KILLED', status: 'ABORT', comment: 'run interrupted before the test started' })
      await runUnit(u)
    } finally {
      sem.release()
    }
    await mt('update-run-stats', runId, await mt('get-raw-run-stats', runId))
  }
  try {
    // Declared in job order; a test only awaits tests it waits on, so order does not matter.
    for (const t of job.tests) {
      let resolve!: () => void
      let reject!: (err: unknown) => void
      ended.set(t.name, new Promise<void>((res, rej) => { resolve = res; reject = rej }))
      ended.get(t.name)!.catch(() => {})
      queueMicrotask(() => { runTest(t).then(resolve, reject) })
    }
    // Every test settles (a lost area ends them all quickly), so no step is left running.
    const settled = await Promise.allSettled([...ended.values()])
    if (areaLost !== undefined) throw areaLost
    const failed = settled.find((r): r is PromiseRejectedResult => r.status === 'rejected')
    if (failed !== undefined) throw failed.reason
  } finally {
    clearInterval(watch)
    opts.signal?.removeEventListener('abort', onAbort)
    claimer.close()
  }

  const run = await mt('set-state-status-and-roll-up-run', runId, null, null) as { state: string, status: string }
  await mt('tasks-set-state-given-param-key', taskKey, 'done')
  emit({ kind: 'run-ended', state: run.state, status: run.status })
  return {
    runId,
    runname: job.runname,
    target,
    area,
    areaHost,
    state: run.state,
    status: run.status,
    passed: run.state === 'COMPLETED' && PASSING_STATUSES.includes(run.status),
    seconds: (Date.now() - started) / 1000,
    units: units.map(u => u.summary)
  }
}

interface StepResult { status: string, comment: string, logfile: string, data: string | null, txn?: string, kill?: Outcome, exitCode?: number }

/** What a test from a Megatest area has for its steps: its run directory, variables and what is left of its runtimelim. */
interface UnitWork { rundir?: string, env?: Record<string, string>, runtimeLeftMs?: number }

/** launch.scm's monitor: past runtimelim the test is killed, KILLED/KILLED. */
function runtimeKill (t: TestSpec): Outcome {
  return { state: 'KILLED', status: 'KILLED', comment: `Run time limit exceeded: runtimelim ${Math.round((t.runtimeLimitMs ?? 0) / 1000)} s` }
}

/**
 * One step on the claiming node, as a directed request in the test's session:
 * sent with wait false (so the txn is known at once, for progress and aborts),
 * then its result fetched. Errors map to Megatest outcomes.
 */
async function runStep (client: Client, step: StepSpec, t: TestSpec, job: JobSpec, host: string, session: string,
  work: UnitWork, vars: Record<string, string>, onTxn: (txn: string) => void): Promise<StepResult> {
  const stepLimit = step.timeoutMs ?? t.timeoutMs ?? job.timeoutMs ?? DEFAULT_STEP_TIMEOUT_MS
  const byRuntime = work.runtimeLeftMs !== undefined && work.runtimeLeftMs <= stepLimit
  const timeoutMs = byRuntime ? Math.max(1, Math.ceil(work.runtimeLeftMs!)) : stepLimit
  let txn: string | undefined
  try {
    const ack = 'form' in step
      ? await client.evalDetailed(step.form, host, { wait: false, session, limits: { timeoutMs } })
      : 'shell' in step
        ? await client.applyDetailed('ezstep', [{ rundir: work.rundir, step: step.name, command: step.shell, env: work.env ?? {} }], host, { wait: false, limits: { timeoutMs } })
        : await client.applyDetailed(step.fn, expandArgs(step.args ?? [], vars), host, { wait: false, limits: { timeoutMs } })
    txn = ack.txn
    onTxn(txn)
    const out = 'value' in ack ? ack : await client.fetchResult(txn, host, { wait: true, timeoutMs: timeoutMs + GRACE_MS })
    try {
      const r: StepResult = { ...interpretStepValue(out.value), txn }
      if ('shell' in step) {
        const v = out.value as { exitCode?: unknown } | null
        r.exitCode = typeof v?.exitCode === 'number' ? v.exitCode : (r.status === 'PASS' ? 0 : 1)
      }
      return r
    } catch (err) {
      return { status: 'FAIL', comment: oneLine((err as Error).message), logfile: '', data: null, txn }
    }
  } catch (err) {
    const code = codeOf(err)
    const message = oneLine((err as Error).message)
    const base = txn === undefined ? {} : { txn }
    if (FAIL_CODES.has(code)) {
      const name = err instanceof RemoteEvalError && code === 'EVAL_ERROR' ? `${err.remoteName}: ` : `${code}: `
      return { ...base, status: 'FAIL', comment: oneLine(name + message), logfile: '', data: null }
    }
    if (code === 'TIME_LIMIT' && byRuntime) {
      const kill = runtimeKill(t)
      return { ...base, status: 'KILLED', comment: kill.comment, logfile: 'shell' in step ? `${step.name}.log` : '', data: null, kill }
    }
    if (KILL_CODES.has(code)) {
      const why = code === 'TIME_LIMIT' ? `step ${step.name} exceeded its time limit of ${timeoutMs} ms` : `step ${step.name} was aborted: ${message}`
      return { ...base, status: 'ABORT', comment: oneLine(why), logfile: '', data: null, kill: { state: 'KILLED', status: 'ABORT', comment: oneLine(why) } }
    }
    // The node died or became unreachable mid-test: the test process is gone without a
    // verdict, which is what Megatest's DEAD means (mark-incomplete: COMPLETED/DEAD).
    const why = `${code} during step ${step.name}: ${message}`
    return { ...base, status: 'DEAD', comment: oneLine(why), logfile: '', data: null, kill: { state: 'COMPLETED', status: 'DEAD', comment: oneLine(why) } }
  }
}

/** Who runs the job, as Megatest records a run's owner: $USER, else the login name. */
function currentUser (): string {
  if (process.env.USER !== undefined && process.env.USER !== '') return process.env.USER
  try { return userInfo().username } catch { return 'ci' }
}

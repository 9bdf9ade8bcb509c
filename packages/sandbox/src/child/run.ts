/**
 * Running one form alone: a session's queue (pump), compiling and running in the
 * session's context (REPL-like completion values, top-level await), and turning what
 * happened into an outcome (value, TIME_LIMIT, MEMORY_LIMIT, ABORTED...).
 */
import { serialize } from 'node:v8'
import { performance } from 'node:perf_hooks'
import type IVM from 'isolated-vm'
import type { EvalLimits, WireError } from '@evalmesh/protocol'
import { MAY_DECLARE_LEXICALS } from '../batch-forms.js'
import { evalError, isCloneFailure, wireError } from '../errors.js'
import { FORM_FILE, PROBE_MS, TIMER_SLACK_MS, SCRIPT_CACHE_ENTRIES, SCRIPT_CACHE_FORM_CHARS, post, type Job, type Outcome, state, sessions, finish } from './context.js'
import { Session } from './session.js'
import { takeBatch, runBatch } from './batch-run.js'

export function isTimeout (err: unknown): boolean {
  return err instanceof Error && err.message === 'Script execution timed out.'
}

export async function pump (s: Session): Promise<void> {
  if (s.busy) return
  s.busy = true
  try {
    while (s.queue.length > 0 && !state.stopping) {
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
export async function execute (s: Session, job: Job, evaluate?: (timeout: number) => Promise<unknown>): Promise<void> {
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
      if (s.isolate === undefined || s.isolate.isDisposed || s.installedGrants !== state.grantsVersion) noteFresh(s, job, await s.ensure(memoryMb))
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

/** A run that starts a new context where one was lost says so in its reply. */
export function noteFresh (s: Session, job: Job, fresh: boolean): void {
  if (!fresh || s.lostReason === undefined) return
  job.contextLost = s.lostReason
  s.lostReason = undefined
}

/**
 * Run the form as a script in the session's context so that its completion value
 * is the result and top-level let/const persist. Forms that mention `await` are
 * wrapped in an async function (see compileAwait).
 */
export async function startEval (s: Session, form: string, timeout: number): Promise<unknown> {
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

export const AWAIT = /\bawait\b/

/**
 * Top-level await: a form that needs it becomes the body of an async arrow.
 * To keep its completion value, try `return (<last statement>)` at each top-level
 * `;` from the end; the first split that compiles is used (parentheses make a
 * wrong split a syntax error). A single expression is tried first, the plain body
 * (whose value is undefined) last. Declarations in such a form are local to it.
 */
export async function compileAwait (isolate: IVM.Isolate, form: string): Promise<IVM.Script> {
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
export async function probe (s: Session): Promise<boolean> {
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

export function abortedRunning (): WireError {
  return wireError('ABORTED', 'evaluation was aborted while running; its session\'s isolate was disposed, so the session starts fresh', 'Error')
}

export function classify (s: Session, err: unknown, limits: EvalLimits, start: number): WireError {
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

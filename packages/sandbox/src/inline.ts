/**
 * Pure forms evaluated in the node's own process, skipping the trip to a sandbox process.
 *
 * A pure form is a bounded batch form (batch-forms.ts) that names no variable at all:
 * literals and operators only, such as `1+1` or `[2**10, 7 % 3, !0]`. It reads and writes
 * nothing of its session, runs no code but its own, makes only numbers, booleans, null,
 * undefined and literals of its own ≤2,048 characters, and so finishes in microseconds
 * within a few KiB of heap. Its outcome is therefore the same in any context. That is what
 * makes it safe here: it cannot exhaust memory, loop, or call anything, so it cannot do to
 * this process what the sandbox processes exist to contain.
 *
 * The evaluation is still V8's, in an isolate of its own (never the node's heap), by one
 * synchronous call: a few µs instead of two IPC messages and two process wake-ups. The
 * pool takes this lane only where it is unobservable: for a session that holds no context
 * in its sandbox process (so no notice of a lost context can be due on this reply).
 * Anything unexpected (a throw, a result over the run's limit, an isolate that could not
 * be made) returns undefined and the form takes the ordinary path, which then reports what
 * it meets exactly as always.
 */
import { createRequire } from 'node:module'
import { performance } from 'node:perf_hooks'
import { serialize } from 'node:v8'
import type IVM from 'isolated-vm'
import { isPureForm } from './batch-forms.js'
import type { SandboxJob, SandboxResult } from './index.js'

const SNAPSHOT_FLAG = '--no-node-snapshot'
/** isolated-vm's smallest heap; a pure form needs a few KiB of it. */
const ISOLATE_MB = 8
const SCRIPT_ENTRIES = 256
/** Results that cannot exceed any result limit the node accepts (a primitive serializes to ≤ 10 bytes). */
const PRIMITIVE_BYTES = 16

export class InlineEvaluator {
  readonly #ivm: typeof IVM | undefined
  #isolate: IVM.Isolate | undefined
  #context: IVM.Context | undefined
  readonly #scripts = new Map<string, IVM.Script>()
  #runs = 0

  constructor () {
    this.#ivm = loadIvm()
  }

  /** False when this process cannot host an isolate (started without --no-node-snapshot): every form then takes the ordinary path. */
  get available (): boolean { return this.#ivm !== undefined }

  /** Runs served here since the node started. */
  get runs (): number { return this.#runs }

  /** The outcome of a pure form, or undefined to send it the ordinary way. */
  run (job: SandboxJob): SandboxResult | undefined {
    if (this.#ivm === undefined || !isPureForm(job.form)) return undefined
    const start = performance.now()
    let value: unknown
    try {
      const context = this.#contextNow()
      value = this.#script(job.form).runSync(context, { copy: true, timeout: job.limits.timeoutMs })
    } catch {
      // A pure form does not throw; if something did, the ordinary path says what it was.
      this.#reset()
      return undefined
    }
    // Over the run's result limit: the ordinary path gives the RESULT_LIMIT error in its own words.
    const { resultBytes } = job.limits
    if ((resultBytes < PRIMITIVE_BYTES || (typeof value === 'object' && value !== null)) && serialize(value).length > resultBytes) return undefined
    this.#runs++
    return { ok: true, value, output: '', outputTruncated: false, seconds: (performance.now() - start) / 1000 }
  }

  dispose (): void {
    this.#reset()
  }

  #contextNow (): IVM.Context {
    if (this.#context !== undefined && this.#isolate?.isDisposed === false) return this.#context
    this.#reset()
    this.#isolate = new this.#ivm!.Isolate({ memoryLimit: ISOLATE_MB })
    // No globals are installed: a pure form reads none.
    this.#context = this.#isolate.createContextSync()
    return this.#context
  }

  #script (form: string): IVM.Script {
    let script = this.#scripts.get(form)
    if (script === undefined) {
      script = this.#isolate!.compileScriptSync(form)
      if (this.#scripts.size >= SCRIPT_ENTRIES) {
        const oldest = this.#scripts.keys().next().value as string
        this.#scripts.get(oldest)?.release()
        this.#scripts.delete(oldest)
      }
      this.#scripts.set(form, script)
    }
    return script
  }

  #reset (): void {
    for (const s of this.#scripts.values()) s.release()
    this.#scripts.clear()
    this.#context = undefined
    const isolate = this.#isolate
    this.#isolate = undefined
    if (isolate !== undefined && !isolate.isDisposed) isolate.dispose()
  }
}

function loadIvm (): typeof IVM | undefined {
  // isolated-vm crashes V8's shared heap when isolates start from different snapshots.
  if (!process.execArgv.includes(SNAPSHOT_FLAG) && !(process.env.NODE_OPTIONS ?? '').includes(SNAPSHOT_FLAG)) return undefined
  try {
    return createRequire(import.meta.url)('isolated-vm') as typeof IVM
  } catch {
    return undefined
  }
}

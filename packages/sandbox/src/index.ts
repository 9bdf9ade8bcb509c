/**
 * @packageDocumentation
 * The isolated-vm executor that runs untrusted JavaScript forms for a node.
 *
 * Isolates that run users' code live only in child processes (forked with
 * `--no-node-snapshot` and advanced serialization) that the parent can kill and
 * restart. The one exception is a pure form (literals and operators, `1+1`) in a
 * session that holds nothing in a child: it cannot loop, call or allocate beyond its
 * own text, so it is evaluated in a small isolate in the node's process (inline.ts).
 * Each session has its own isolate and context, kept between runs; a session's runs
 * execute in order, sessions run concurrently.
 *
 * ```ts
 * const sandbox = createSandbox({ limits, grants: ['evalserver.status'], hostCall })
 * await sandbox.start()
 * await sandbox.run({ txn: 'n1/1', session: 'n1/default', form: 'x = 20; x * 2 + 2', limits })
 * // { ok: true, value: 42, output: '', outputTruncated: false, seconds: 0.0001 }
 * ```
 *
 * A form is evaluated like a REPL line: it runs as a script in the session's
 * context, so its completion value is the result and top-level `var`, `let`,
 * `const`, `function` and plain assignments persist. A promise result is awaited.
 * A form that mentions `await` is run as the body of an async function, with
 * `return` put before its last top-level statement when that parses (so
 * `const a = await f(); a.n` gives a.n); declarations in such a form are local to
 * it (assign `x = await f()` to keep x), and a last statement that is not an
 * expression (`if`, `for`, `try`) gives undefined.
 * Queued forms of one session that provably run no code of their own (literals,
 * operators and plain global variables holding primitives: `1+1`, `n = n + 1`)
 * are evaluated together in one trip into the isolate, each with exactly the
 * outcome it would have alone; every other form runs alone (see batch-forms.ts).
 * Every failure comes back as `ok: false` with a catalogue code (EVAL_ERROR,
 * TIME_LIMIT, MEMORY_LIMIT, RESULT_LIMIT, NOT_CLONEABLE, ABORTED, SANDBOX_LOST).
 */
import type { EvalLimits, WireError } from '@evalmesh/protocol'
import { SandboxPool } from './pool.js'

export interface SandboxInit {
  /** The node's ceilings; every job's limits are clamped to them. */
  limits: EvalLimits
  /** Live session contexts one sandbox process keeps; beyond it the busiest client's oldest idle one goes (default 256). */
  maxSessions?: number
  /** Sessions one client may hold; beyond it that client's least recently used idle session goes (default 32). */
  maxSessionsPerClient?: number
  /** Heap one client's sessions may hold, in MiB (default 512). */
  clientMemoryMb?: number
  /** Heap all sessions of the node may hold, in MiB; a run needing a new session beyond it is refused QUOTA (default 2048). */
  maxMemoryMb?: number
  /**
   * Sandbox processes shared by clients (default 4). Each client is served by one;
   * a client whose form crashed its process gets a process of its own afterwards.
   */
  processes?: number
  /** Idle sessions are dropped after this (default 30 min). */
  sessionIdleMs?: number
  /** Runs in the parent process when a form calls a granted function. */
  hostCall: (name: string, args: unknown[], ctx: { txn: string, session: string }) => Promise<unknown>
  /** Dotted names of host functions visible inside, e.g. 'evalserver.status', 'megatest.get-keys'. */
  grants: string[]
  /** How long past its wall-time limit a run may go before the child is killed (default 2000 ms). */
  watchdogGraceMs?: number
}

/** One evaluation; `limits` are already clamped by the server. */
export interface SandboxJob {
  txn: string
  /** `<client id>/<name>`: the part before the first '/' says whose quotas it counts against. */
  session: string
  form: string
  limits: EvalLimits
  /** Run in a fresh context that is dropped afterwards (its globals are not kept). */
  transient?: boolean
  /**
   * Console output as the form writes it, in chunks at most every 50 ms; the last chunk
   * arrives before the result. The result's `output` still holds all of it.
   */
  onOutput?: (text: string) => void
}

/**
 * How a run ended. `contextLost` says why the session's globals were gone when
 * this run started (evicted, memory, its process replaced): the form ran in a fresh
 * context. It is absent when the session simply kept its globals or was new.
 */
export type SandboxResult =
  | { ok: true, value: unknown, output: string, outputTruncated: boolean, seconds: number, contextLost?: string }
  | { ok: false, error: WireError, output: string, outputTruncated: boolean, seconds: number, contextLost?: string }

export interface SandboxStats {
  restarts: number
  sessions: number
  running: number
  pid: number | undefined
  /** Runs the current child served on the batch path (several queued forms in one trip into the isolate). */
  batched: number
  /** Heap held by the sessions, as last measured. */
  heapBytes: number
  /** Runs of pure forms (literals and operators only, e.g. `1+1`) the node evaluated in its own isolate, not a sandbox process. */
  inline?: number
  /** Every sandbox process, with the clients it serves. */
  processes?: Array<{ pid: number | undefined, clients: number, dedicated: boolean, sessions: number, running: number, heapBytes: number }>
}

export interface Sandbox {
  start (): Promise<void>
  /** Never rejects for evaluation problems: they come back as ok:false with a catalogue code. */
  run (job: SandboxJob): Promise<SandboxResult>
  /** True if the txn was queued or running here; its run() then settles with code ABORTED. */
  abort (txn: string): boolean
  /** Forget that session's globals (after the runs already queued in it). */
  resetSession (session: string): Promise<void>
  /** Takes effect for the next run. */
  setGrants (grants: string[]): void
  /** Clean shutdown; safe to call twice. */
  stop (): Promise<void>
  readonly stats: SandboxStats
  /** A sandbox process was replaced; `culpritSession` names the session whose form crashed it, when known. */
  on (event: 'restart', listener: (info: { reason: string, culpritSession?: string }) => void): this
}

export function createSandbox (init: SandboxInit): Sandbox {
  return new SandboxPool(init)
}

export { clampLimits, MIN_MEMORY_MB } from './limits.js'
export { isQuickForm } from './batch-forms.js'
export { tierUpEarly, tierUpFlags, EARLY_TIER_UP_FLAGS } from './tier-up.js'
export { sessionKey, ownerOf } from './session-key.js'

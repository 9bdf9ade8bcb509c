import { readFileSync } from 'node:fs'

/**
 * The run description `evalmesh ci run` reads (docs/ci-agent.md): JSON, validated
 * here so that a bad file is refused before anything is registered.
 */

/**
 * One step: a JavaScript form run in the test's session on the claiming node, or an
 * operator function; or (jobs read from a Megatest area, never from a job file) a
 * Megatest ezstep: a shell command the claiming node's `ezstep` function runs in the
 * test's run directory.
 */
export type StepSpec = { name: string, timeoutMs?: number } & ({ form: string } | { fn: string, args?: unknown[] } | { shell: string })

/** Where a Megatest area's run directories go ([setup] linktree, [disks]). */
export interface WorkAreaSpec {
  /** The area's top directory (MT_RUN_AREA_HOME). */
  toppath: string
  linktree: string
  /** Candidate disks, absolute; the one with most free space is used. */
  disks: string[]
}

export interface TestSpec {
  name: string
  /** Item paths: each item runs the steps separately (and may land on another node). */
  items?: string[]
  steps: StepSpec[]
  /** Names of tests that must end well (PASS WARN CHECK WAIVED SKIP) before this one starts. */
  waiton?: string[]
  /** Default per-step wall-time limit for this test's steps. */
  timeoutMs?: number
  // The fields below come from a Megatest area's testconfig (area-job.ts), not from job files.
  /** Each item's variables (item path -> VAR -> value), exported to its steps. */
  itemVars?: Record<string, Record<string, string>>
  /** get-prereqs-not-met's mode ([requirements] mode): normal, toplevel, itemwait, itemmatch. */
  mode?: string
  /** [requirements] runtimelim: the whole test's wall time (ms); past it the test is KILLED/KILLED. */
  runtimeLimitMs?: number
  /** The test's own variables ([pre-launch-env-vars]). */
  env?: Record<string, string>
  /** The test's directory (tests/NAME), copied into each of its run directories. */
  source?: string
}

export interface JobSpec {
  /** The Megatest area's name on the area node. */
  area: string
  /** Target key values, by key name: `{ "RELEASE": "v1", "PLATFORM": "x86" }`. */
  target: Record<string, string>
  runname: string
  user?: string
  contour?: string
  /** Tests (or items) running at once (default 4). */
  concurrency?: number
  /** Default per-step wall-time limit (ms). */
  timeoutMs?: number
  /** How long a test may wait for a willing node before it is given up (ms, default 120 000). */
  claimTimeoutMs?: number
  tests: TestSpec[]
  /** Jobs read from a Megatest area: where run directories go. */
  workArea?: WorkAreaSpec
  /** Jobs read from a Megatest area: variables every test gets (target keys, runconfigs, [env-override]). */
  env?: Record<string, string>
}

const NAME = /^[A-Za-z0-9_][A-Za-z0-9_.+-]*$/

/**
 * A job that cannot be read (NO_JOB_FILE) or is not a valid job (BAD_JOB). Not a wire
 * error: nothing was sent to a node. The CLI prints the code with --json.
 */
export class JobError extends Error {
  override name = 'JobError'
  readonly code: 'NO_JOB_FILE' | 'BAD_JOB'
  constructor (code: JobError['code'], message: string) {
    super(message)
    this.code = code
  }
}

function bad (where: string, why: string): never {
  throw new JobError('BAD_JOB', `job ${where}: ${why}`)
}

function isObject (v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v)
}

function posInt (v: unknown, where: string, max = 86_400_000): number | undefined {
  if (v === undefined) return undefined
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 1 || v > max) bad(where, `must be an integer from 1 to ${max}, got ${JSON.stringify(v)}`)
  return v
}

function str (v: unknown, where: string, optional = false): string | undefined {
  if (v === undefined && optional) return undefined
  if (typeof v !== 'string' || v === '') bad(where, `must be a non-empty string, got ${JSON.stringify(v)}`)
  return v
}

function onlyKeys (o: Record<string, unknown>, allowed: string[], where: string): void {
  for (const k of Object.keys(o)) if (!allowed.includes(k)) bad(where, `unknown field "${k}" (allowed: ${allowed.join(', ')})`)
}

function parseStep (v: unknown, where: string): StepSpec {
  if (!isObject(v)) bad(where, 'must be an object with name and form (or fn and args)')
  onlyKeys(v, ['name', 'form', 'fn', 'args', 'timeoutMs'], where)
  const name = str(v.name, `${where}.name`)!
  if (!NAME.test(name)) bad(`${where}.name`, `"${name}" must be letters, digits, _ . + - (no spaces or commas)`)
  const timeoutMs = posInt(v.timeoutMs, `${where}.timeoutMs`)
  const base = timeoutMs === undefined ? { name } : { name, timeoutMs }
  if (v.form !== undefined && v.fn !== undefined) bad(where, 'has both form and fn; give one')
  if (v.form !== undefined) {
    if (v.args !== undefined) bad(where, 'args go with fn, not with form')
    return { ...base, form: str(v.form, `${where}.form`)! }
  }
  if (v.fn !== undefined) {
    const fn = str(v.fn, `${where}.fn`)!
    if (v.args !== undefined && !Array.isArray(v.args)) bad(`${where}.args`, 'must be an array')
    return { ...base, fn, args: (v.args as unknown[] | undefined) ?? [] }
  }
  return bad(where, 'needs a form (JavaScript) or a fn (operator function name)')
}

function parseTest (v: unknown, where: string): TestSpec {
  if (!isObject(v)) bad(where, 'must be an object with name and steps')
  onlyKeys(v, ['name', 'items', 'steps', 'waiton', 'timeoutMs'], where)
  const name = str(v.name, `${where}.name`)!
  if (!NAME.test(name)) bad(`${where}.name`, `"${name}" must be letters, digits, _ . + - (no spaces, commas or /)`)
  if (!Array.isArray(v.steps) || v.steps.length === 0) bad(`${where}.steps`, 'must be a non-empty array')
  const steps = v.steps.map((s, i) => parseStep(s, `${where}.steps[${i}]`))
  const dup = steps.find((s, i) => steps.findIndex(t => t.name === s.name) !== i)
  if (dup !== undefined) bad(`${where}.steps`, `step name "${dup.name}" appears twice`)
  const t: TestSpec = { name, steps }
  if (v.items !== undefined) {
    if (!Array.isArray(v.items) || v.items.length === 0) bad(`${where}.items`, 'must be a non-empty array of item paths')
    const items = v.items.map((it, i) => str(it, `${where}.items[${i}]`)!)
    if (new Set(items).size !== items.length) bad(`${where}.items`, 'item paths must be unique')
    for (const it of items) if (/[,\s]/.test(it)) bad(`${where}.items`, `item path "${it}" must not contain commas or spaces`)
    t.items = items
  }
  if (v.waiton !== undefined) {
    if (!Array.isArray(v.waiton)) bad(`${where}.waiton`, 'must be an array of test names')
    t.waiton = v.waiton.map((w, i) => str(w, `${where}.waiton[${i}]`)!)
  }
  const timeoutMs = posInt(v.timeoutMs, `${where}.timeoutMs`); if (timeoutMs !== undefined) t.timeoutMs = timeoutMs
  return t
}

/** Validate a parsed job; throws BAD_MESSAGE naming the first problem. */
export function parseJob (value: unknown): JobSpec {
  if (!isObject(value)) bad('file', 'must be a JSON object')
  onlyKeys(value, ['area', 'target', 'runname', 'user', 'contour', 'concurrency', 'timeoutMs', 'claimTimeoutMs', 'tests'], 'file')
  const area = str(value.area, 'area')!
  const runname = str(value.runname, 'runname')!
  if (!isObject(value.target) || Object.keys(value.target).length === 0) bad('target', 'must be an object of key values, e.g. {"RELEASE": "v1"}')
  const target: Record<string, string> = {}
  for (const [k, v] of Object.entries(value.target)) {
    if (typeof v !== 'string' && typeof v !== 'number') bad(`target.${k}`, 'must be a string')
    target[k] = String(v)
  }
  if (!Array.isArray(value.tests) || value.tests.length === 0) bad('tests', 'must be a non-empty array')
  const tests = value.tests.map((t, i) => parseTest(t, `tests[${i}]`))
  const names = new Set<string>()
  for (const t of tests) {
    if (names.has(t.name)) bad('tests', `test name "${t.name}" appears twice`)
    names.add(t.name)
  }
  for (const t of tests) {
    for (const w of t.waiton ?? []) {
      if (!names.has(w)) bad(`test ${t.name}`, `waits on "${w}", which is not a test of this job`)
      if (w === t.name) bad(`test ${t.name}`, 'waits on itself')
    }
  }
  const cycle = findCycle(tests)
  if (cycle !== undefined) bad('tests', `waiton dependencies form a cycle: ${cycle.join(' -> ')}`)
  const job: JobSpec = { area, target, runname, tests }
  const user = str(value.user, 'user', true); if (user !== undefined) job.user = user
  if (value.contour !== undefined) { if (typeof value.contour !== 'string') bad('contour', 'must be a string'); job.contour = value.contour }
  const c = posInt(value.concurrency, 'concurrency', 1024); if (c !== undefined) job.concurrency = c
  const to = posInt(value.timeoutMs, 'timeoutMs'); if (to !== undefined) job.timeoutMs = to
  const ct = posInt(value.claimTimeoutMs, 'claimTimeoutMs'); if (ct !== undefined) job.claimTimeoutMs = ct
  return job
}

/** Read and validate a job file. */
export function readJobFile (path: string): JobSpec {
  let text: string
  try {
    text = readFileSync(path, 'utf8')
  } catch (err) {
    throw new JobError((err as NodeJS.ErrnoException).code === 'ENOENT' ? 'NO_JOB_FILE' : 'BAD_JOB', `cannot read job file ${path}: ${(err as Error).message}`)
  }
  let value: unknown
  try {
    value = JSON.parse(text)
  } catch (err) {
    throw new JobError('BAD_JOB', `job file ${path} is not JSON: ${(err as Error).message}`)
  }
  return parseJob(value)
}

/** A waiton cycle as test names (first repeated at the end), or undefined. */
export function findCycle (tests: TestSpec[]): string[] | undefined {
  const by = new Map(tests.map(t => [t.name, t]))
  const state = new Map<string, 'visiting' | 'done'>()
  const path: string[] = []
  const visit = (name: string): string[] | undefined => {
    if (state.get(name) === 'done') return undefined
    if (state.get(name) === 'visiting') return [...path.slice(path.indexOf(name)), name]
    state.set(name, 'visiting')
    path.push(name)
    for (const w of by.get(name)?.waiton ?? []) {
      const c = visit(w)
      if (c !== undefined) return c
    }
    path.pop()
    state.set(name, 'done')
    return undefined
  }
  for (const t of tests) {
    const c = visit(t.name)
    if (c !== undefined) return c
  }
  return undefined
}

import { existsSync, readdirSync, realpathSync, statSync } from 'node:fs'
import { basename, join } from 'node:path'
import { configLookup, configSection, globLikeMatch, readConfig, testPattMatch, type ConfigData } from '@evalmesh/megatest'
import { JobError, findCycle, type JobSpec, type StepSpec, type TestSpec } from './job.js'

/**
 * A Megatest area's own files as a job: megatest.config ([fields], [setup],
 * [disks], [env-override]), runconfigs.config ([default] and the target's sections)
 * and tests/<name>/testconfig ([ezsteps], [requirements], [items], [itemstable],
 * [pre-launch-env-vars], [setup] runscript), selected as `megatest -run` selects:
 * -target, -runname, -testpatt. docs/ci-agent.md lists what is supported.
 */

export interface AreaSelection {
  /** The target, its key values joined by "/" (megatest -target). */
  target: string
  /** megatest -runname. */
  runname: string
  /** megatest -testpatt (default: runconfigs' TESTPATT, else "%"). */
  testpatt?: string
  /** The environment `#{getenv}` and `$VAR` see (default process.env). */
  env?: Record<string, string | undefined>
}

export interface AreaJob {
  job: JobSpec
  /** The area's top directory (real path). */
  toppath: string
  /** The testpatt used. */
  testpatt: string
  /** Things worth telling the user (a target without a runconfigs section...). */
  notes: string[]
}

const NAME = /^[A-Za-z0-9_][A-Za-z0-9_.+-]*$/
const DEFAULT_AREA_STEP_TIMEOUT_MS = 3_600_000
const MODES = new Set(['normal', 'toplevel', 'itemwait', 'itemmatch'])

function bad (why: string): never {
  throw new JobError('BAD_JOB', why)
}

/** common:hms-string->seconds: "1h 30m", "90s", "2d"; bare numbers are seconds (Megatest ignores them: 0). */
export function hmsToSeconds (text: string): number {
  let secs = 0
  for (const part of text.trim().split(/\s+/)) {
    const m = /^(\d+)([smhd])?$/.exec(part)
    if (m === null) continue
    secs += Number(m[1]) * ({ s: 1, m: 60, h: 3600, d: 86400 }[m[2] ?? 's'] ?? 0)
  }
  return secs
}

/** A runconfigs section applies to the target: [default], the target itself, or a pattern with % that matches it. */
function sectionApplies (section: string, target: string): boolean {
  return section === 'default' || section === target || (section.includes('%') && globLikeMatch(section, target))
}

/** items:get-items-from-config: the [items] cross product, then the [itemstable] rows. */
export function itemsOf (tconfig: ConfigData): Array<Array<[string, string]>> {
  const items = configSection(tconfig, 'items').map(([k, v]) => [k, v.split(/\s+/).filter(x => x !== '')] as const)
  const out: Array<Array<[string, string]>> = []
  if (items.length > 0 && items.every(([, vals]) => vals.length > 0)) {
    let acc: Array<Array<[string, string]>> = [[]]
    for (const [k, vals] of items) acc = acc.flatMap(prefix => vals.map(v => [...prefix, [k, v] as [string, string]]))
    out.push(...acc)
  }
  const table = configSection(tconfig, 'itemstable').map(([k, v]) => [k, v.split(/\s+/).filter(x => x !== '')] as const)
  const rows = Math.max(0, ...table.map(([, vals]) => vals.length))
  for (let i = 0; i < rows; i++) out.push(table.map(([k, vals]) => [k, vals[i] ?? '-']))
  return out
}

/** Read an area's files as a job. */
export function readAreaJob (dir: string, sel: AreaSelection): AreaJob {
  if (!existsSync(join(dir, 'megatest.config'))) bad(`${dir} is not a Megatest area: it has no megatest.config`)
  const toppath = realpathSync(dir)
  const notes: string[] = []
  const env: Record<string, string | undefined> = { ...(sel.env ?? process.env), MT_RUN_AREA_HOME: toppath, MT_TARGET: sel.target, MT_RUNNAME: sel.runname }
  const mtconf = readConfig(join(toppath, 'megatest.config'), { env, toppath, envSections: { test: s => s === 'env-override' } })
  const keys = configSection(mtconf, 'fields').map(([k]) => k)
  if (keys.length === 0) bad(`${toppath}/megatest.config has no [fields]`)
  const parts = sel.target.split('/')
  if (parts.length !== keys.length || parts.some(p => p === '')) {
    bad(`target "${sel.target}" must give ${keys.length} value(s) joined by "/", for the area's keys ${keys.join('/')}`)
  }
  if (!NAME.test(sel.runname)) bad(`runname "${sel.runname}" must be letters, digits, _ . + - (it names a directory)`)
  const keyvals = Object.fromEntries(keys.map((k, i) => [k, parts[i]!]))
  // keys:target-set-args: each key is a variable too.
  Object.assign(env, keyvals)
  for (const [k, v] of configSection(mtconf, 'env-override')) env[k] = v

  // runconfigs.config: [default] and the target's sections are the run's variables.
  const runVars: Record<string, string> = {}
  const runconfigsFile = join(toppath, 'runconfigs.config')
  if (existsSync(runconfigsFile)) {
    const rc = readConfig(runconfigsFile, { env, toppath, envSections: { test: s => sectionApplies(s, sel.target) } })
    let matched = false
    for (const [section, vars] of rc) {
      if (!sectionApplies(section, sel.target)) continue
      if (section !== 'default') matched = true
      for (const [k, v] of vars) runVars[k] = v
    }
    if (!matched) notes.push(`runconfigs.config has no section for target ${sel.target}; only [default] applies`)
  } else {
    notes.push('the area has no runconfigs.config')
  }
  Object.assign(env, runVars)

  const linktree = env.MT_LINKTREE ?? configLookup(mtconf, 'setup', 'linktree') ?? join(toppath, 'lt')
  const disks = configSection(mtconf, 'disks').map(([, v]) => v.trim())
  if (disks.length === 0) bad(`${toppath}/megatest.config has no [disks] section: add one ("disk0 /path/to/runs") for the run directories`)
  const setupLim = configLookup(mtconf, 'setup', 'runtimelim')
  const maxJobs = Number(configLookup(mtconf, 'setup', 'max_concurrent_jobs') ?? '')
  const testpatt = sel.testpatt ?? runVars.TESTPATT ?? '%'

  // tests/<name>/testconfig
  const testsDir = join(toppath, 'tests')
  const names = existsSync(testsDir)
    ? readdirSync(testsDir).filter(n => existsSync(join(testsDir, n, 'testconfig')) && statSync(join(testsDir, n)).isDirectory()).sort()
    : []
  if (names.length === 0) bad(`${toppath} has no tests (tests/<name>/testconfig)`)
  const all = new Map<string, TestSpec>()
  for (const name of names) all.set(name, readTest(join(testsDir, name), name, env, toppath, setupLim))
  for (const t of all.values()) {
    for (const w of t.waiton ?? []) if (!all.has(w)) bad(`tests/${t.name}/testconfig: waiton ${w}, which is not a test of this area`)
  }
  const cycle = findCycle([...all.values()])
  if (cycle !== undefined) bad(`the tests' waitons form a cycle: ${cycle.join(' -> ')}`)

  // -testpatt: the tests and items it selects, and (as Megatest does) the tests they wait on.
  const selected = new Map<string, TestSpec>()
  const want = (t: TestSpec, items: string[] | undefined): void => {
    if (selected.has(t.name)) return
    selected.set(t.name, items === undefined ? t : { ...t, items })
    for (const w of t.waiton ?? []) want(all.get(w)!, all.get(w)!.items)
  }
  for (const t of all.values()) {
    if (t.items === undefined) { if (testPattMatch(testpatt, t.name, '')) want(t, undefined); continue }
    const items = t.items.filter(i => testPattMatch(testpatt, t.name, i))
    if (items.length > 0) want(t, items)
  }
  if (selected.size === 0) bad(`testpatt "${testpatt}" selects no test of ${toppath} (tests: ${names.join(', ')})`)

  const jobEnv: Record<string, string> = { ...keyvals, ...runVars, MT_RUN_AREA_HOME: toppath, MT_LINKTREE: linktree, MT_TARGET: sel.target, MT_RUNNAME: sel.runname }
  for (const [k, v] of configSection(mtconf, 'env-override')) jobEnv[k] = v
  const job: JobSpec = {
    area: basename(toppath),
    target: keyvals,
    runname: sel.runname,
    timeoutMs: DEFAULT_AREA_STEP_TIMEOUT_MS,
    tests: [...all.keys()].filter(n => selected.has(n)).map(n => selected.get(n)!),
    workArea: { toppath, linktree, disks },
    env: jobEnv
  }
  if (Number.isSafeInteger(maxJobs) && maxJobs > 0) job.concurrency = maxJobs
  return { job, toppath, testpatt, notes }
}

function readTest (dir: string, name: string, areaEnv: Record<string, string | undefined>, toppath: string, setupLim: string | undefined): TestSpec {
  const where = `tests/${name}/testconfig`
  if (!NAME.test(name)) bad(`tests/${name}: a test name must be letters, digits, _ . + -`)
  const env = { ...areaEnv, MT_TEST_NAME: name }
  const tc = readConfig(join(dir, 'testconfig'), { env, toppath, envSections: { test: s => s === 'pre-launch-env-vars' } })
  const steps: StepSpec[] = []
  for (const [step, value] of configSection(tc, 'ezsteps')) {
    if (!NAME.test(step)) bad(`${where}: ezstep "${step}" must be letters, digits, _ . + -`)
    // ezsteps.scm: a leading {VAR=...} is for future use; the rest is the command.
    const command = value.replace(/^\{[^}]*\}\s*/, '').trim()
    if (command === '') bad(`${where}: ezstep ${step} has no command`)
    steps.push({ name: step, shell: command })
  }
  const runscript = configLookup(tc, 'setup', 'runscript')
  if (steps.length === 0 && runscript !== undefined && runscript.trim() !== '') {
    const script = runscript.trim()
    steps.push({ name: script.replace(/[^A-Za-z0-9_.+-]/g, '_'), shell: script.includes('/') ? script : `./${script}` })
  }
  if (steps.length === 0) bad(`${where}: no [ezsteps] and no [setup] runscript: nothing to run`)

  const t: TestSpec = { name, steps, source: dir }
  const waiton = (configLookup(tc, 'requirements', 'waiton') ?? '').split(/\s+/).filter(w => w !== '')
  if (waiton.includes(name)) bad(`${where}: the test waits on itself`)
  if (waiton.length > 0) t.waiton = [...new Set(waiton)]
  const mode = (configLookup(tc, 'requirements', 'mode') ?? 'normal').split(/\s+/).filter(m => m !== '')
  const known = mode.filter(m => MODES.has(m))
  if (known.length !== mode.length) bad(`${where}: [requirements] mode ${mode.join(' ')}: evalmesh knows ${[...MODES].join(', ')}`)
  if (known.length > 1) bad(`${where}: [requirements] mode: give one of ${[...MODES].join(', ')}`)
  if (known[0] !== undefined && known[0] !== 'normal') t.mode = known[0]
  const lim = configLookup(tc, 'requirements', 'runtimelim') ?? setupLim
  if (lim !== undefined) {
    const secs = hmsToSeconds(lim)
    if (secs > 0) t.runtimeLimitMs = secs * 1000
  }
  const pre = configSection(tc, 'pre-launch-env-vars')
  if (pre.length > 0) t.env = Object.fromEntries(pre)

  const items = itemsOf(tc)
  if (items.length > 0) {
    const vars: Record<string, Record<string, string>> = {}
    for (const it of items) {
      // item-list->path: the values joined by "/".
      const path = it.map(([, v]) => v).join('/')
      if (/[,\s]/.test(path) || path.split('/').some(p => p === '' || p === '.' || p === '..')) bad(`${where}: item path "${path}" must not contain commas, spaces, empty parts, . or ..`)
      if (vars[path] !== undefined) bad(`${where}: item path "${path}" appears twice`)
      vars[path] = Object.fromEntries(it)
    }
    t.items = Object.keys(vars)
    t.itemVars = vars
  } else if (configSection(tc, 'items').length > 0 || configSection(tc, 'itemstable').length > 0) {
    bad(`${where}: [items] has a variable with no values`)
  }
  return t
}

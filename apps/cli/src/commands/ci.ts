import { join } from 'node:path'
import { findOrStartAreaServer, readAreaJob, readJobFile, readRuns, runJob, type CiEvent, type JobSpec, type RerunPolicy, type RunReport, type RunSummary } from '@evalmesh/ci-agent'
import type { BroadcastConfig, Client } from '@evalmesh/client'
import { printable } from '@evalmesh/protocol'
import { UsageError, int, list, str, type Command, type Parsed } from '../args.js'
import { broadcastConfigFor, clientFor, localNodeOf, stateDirOf } from '../context.js'
import { jsonOk, table, toJson } from '../output.js'
import { INTERRUPTED_EXIT } from '../interrupt.js'

/**
 * `evalmesh ci run|status` (the CI agent) and `evalmesh area-server` (Megatest's
 * connect-and-start): export names ciCmd and areaServerCmd.
 */

function addTarget (config: BroadcastConfig, host: string): void {
  const m = /^\[?([^\]]+?)\]?:(\d+)$/.exec(host)
  if (m === null) return
  const t = { address: m[1]!, port: Number(m[2]) }
  if (!config.targets!.some(x => x.address === t.address && x.port === t.port)) config.targets!.push(t)
}

interface AreaTarget {
  host: string
  area: string | undefined
  started: boolean
  /** With --area DIR: find or start another node for the area (Megatest's connect-and-start again). */
  reconnect?: (failedHost: string) => Promise<string>
}

/** --host H, or --area DIR (find or start its node), or the local node. */
async function areaTargetOf (p: Parsed, client: Client, areaName: string | undefined): Promise<AreaTarget> {
  const host = str(p, 'host')
  const dir = str(p, 'area')
  if (host !== undefined && dir !== undefined) throw new UsageError('give --host H or --area DIR, not both')
  if (dir !== undefined) {
    const opts: Parameters<typeof findOrStartAreaServer>[1] = { stateDir: stateDirOf(p), client }
    if (areaName !== undefined) opts.area = areaName
    const idle = int(p, 'idle-timeout'); if (idle !== undefined) opts.idleTimeoutSeconds = idle
    const found = await findOrStartAreaServer(dir, opts)
    if (found.started && p.values.json !== true) console.error(`started a node for area ${printable(found.area, 100)} at ${printable(found.host, 200)} (log ${printable(found.log ?? '-', 500)})`)
    const reconnect = async (failedHost: string): Promise<string> => {
      // The same area name, so the run's records go on under it.
      const again = await findOrStartAreaServer(dir, { ...opts, area: found.area })
      if (p.values.json !== true) console.error(`the node at ${printable(failedHost, 200)} was lost; area ${printable(again.area, 100)} is now served at ${printable(again.host, 200)}${again.started ? ' (started)' : ''}`)
      return again.host
    }
    return { host: found.host, area: found.area, started: found.started, reconnect }
  }
  return { host: host ?? localNodeOf(p), area: areaName, started: false }
}

async function areaNameOn (client: Client, host: string, given: string | undefined): Promise<string> {
  if (given !== undefined) return given
  const d = await client.describe(host)
  const areas = d.megatestAreas ?? []
  if (areas.length === 1) return areas[0]!
  throw new UsageError(areas.length === 0 ? `the node at ${host} serves no Megatest area` : `the node at ${host} serves several areas (${areas.map(a => printable(a, 100)).join(', ')}): pick one with --area-name`)
}

// ---- progress -----------------------------------------------------------------------

/*
 * Comments, statuses and names here come from the steps' results, the nodes and the
 * Megatest area, so every one is printed through printable() (table() escapes its cells).
 */
const pr = (s: unknown, max = 500): string => printable(String(s ?? ''), max)

function unitName (u: { test: string, item: string }): string {
  return pr(u.item === '' ? u.test : `${u.test}/${u.item}`, 200)
}

const commentOf = (comment: string): string => comment === '' ? '' : ` (${pr(comment)})`

/** A one-line progress bar redrawn on a terminal, or plain lines for logs and pipes. */
function progressPrinter (tty: boolean): { onEvent: (e: CiEvent) => void, done: () => void } {
  let total = 0
  let ended = 0
  let running = 0
  const bad = new Map<string, number>()
  let drawn = false
  const draw = (): void => {
    const width = 30
    const filled = total === 0 ? 0 : Math.round(width * ended / total)
    const badText = [...bad.entries()].map(([k, n]) => `${pr(k, 40)} ${n}`).join('  ')
    process.stdout.write(`\r\x1b[K[${'#'.repeat(filled)}${'.'.repeat(width - filled)}] ${ended}/${total} ended  ${running} running${badText === '' ? '' : '  ' + badText}`)
    drawn = true
  }
  const line = (text: string): void => {
    if (tty) { if (drawn) process.stdout.write('\r\x1b[K'); console.log(text); draw() } else console.log(text)
  }
  return {
    onEvent: (e) => {
      switch (e.kind) {
        case 'run':
          total = e.units
          line(`run ${pr(e.runname, 200)} (id ${e.runId}, target ${pr(e.target, 200)}): ${e.units} test(s)`)
          break
        case 'started':
          running++
          if (!tty) line(`RUNNING    ${unitName(e.unit)} on ${pr(e.node, 63)} (${pr(e.host, 200)})`)
          else draw()
          break
        case 'step':
          if (!tty && e.phase === 'end') line(`  step     ${unitName(e.unit)} ${pr(e.step, 200)}: ${pr(e.status, 40)}${commentOf(e.comment)}`)
          break
        case 'ended':
          ended++
          if (e.state !== 'NOT_STARTED' && !(e.state === 'KILLED' && /before the test started/.test(e.comment)) && !/^NO_WILLING_SERVER/.test(e.comment)) running = Math.max(0, running - 1)
          if (!['PASS', 'WARN', 'WAIVED', 'SKIP'].includes(e.status)) bad.set(e.status, (bad.get(e.status) ?? 0) + 1)
          line(`${pr(e.state, 40).padEnd(10)} ${unitName(e.unit)}: ${pr(e.status, 40)}${commentOf(e.comment)}`)
          break
        case 'skipped':
          ended++
          line(`${'not run'.padEnd(10)} ${unitName(e.unit)}: ${pr(e.reason)}`)
          break
        case 'run-ended':
          break
      }
    },
    done: () => { if (tty && drawn) process.stdout.write('\r\x1b[K') }
  }
}

function printSummary (s: RunSummary): void {
  console.log('')
  const logs = s.units.some(u => u.rundir !== undefined)
  console.log(table(['TEST', 'ITEM', 'STATE', 'STATUS', 'NODE', 'SECONDS', 'COMMENT', ...(logs ? ['LOG'] : [])], s.units.map(u => [
    u.test, u.item, u.state, u.status, u.node ?? '', u.seconds.toFixed(1), u.comment,
    ...(logs ? [u.rundir === undefined ? '' : u.logfile === undefined || u.logfile === '' ? u.rundir : join(u.rundir, u.logfile)] : [])
  ])))
  const counts = new Map<string, number>()
  for (const u of s.units) counts.set(u.status, (counts.get(u.status) ?? 0) + 1)
  console.log('')
  console.log(`run ${pr(s.runname, 200)} (id ${s.runId}, target ${pr(s.target, 200)}, area ${pr(s.area, 100)} on ${pr(s.areaHost, 200)}): ${pr(s.state, 40)}/${pr(s.status, 40)} in ${s.seconds.toFixed(1)} s; ${[...counts.entries()].map(([k, n]) => `${n} ${pr(k, 40)}`).join(', ')}`)
  console.log(s.passed ? 'PASSED' : 'NOT PASSED')
}

function printRun (r: RunReport): void {
  const started = new Date(r.event_time * 1000)
  console.log(`run ${pr(r.runname, 200)} (id ${pr(r.id, 40)}, target ${pr(r.target, 200)}, owner ${pr(r.owner, 100)}): ${pr(r.state, 40)}/${pr(r.status, 40)}, started ${Number.isNaN(started.getTime()) ? '?' : started.toISOString()}`)
  const rows: string[][] = []
  for (const t of r.tests) {
    rows.push([t.item_path === '' ? t.testname : `  ${t.testname}/${t.item_path}`, t.state, t.status, t.host === 'n/a' ? '' : t.host, String(t.run_duration), t.comment])
    for (const s of t.steps) rows.push([`    ${s.stepname} (${s.state})`, '', s.status, '', '', s.comment])
    for (const d of t.data) rows.push([`    data ${d.category === '' ? '' : d.category + '/'}${d.variable}`, '', d.status, '', '', `${String(d.value)}${d.units === '' ? '' : ' ' + d.units}${d.expected === null ? '' : ` (expected ${String(d.expected)}, tol ${String(d.tol)})`}`])
  }
  console.log(table(['TEST / STEP', 'STATE', 'STATUS', 'NODE', 'SECONDS', 'COMMENT'], rows))
}

// ---- commands ----------------------------------------------------------------------

/** --rerun LIST, --rerun-clean, --rerun-all: Megatest's -rerun flags. */
function rerunOf (p: Parsed): RerunPolicy {
  const policy: RerunPolicy = {}
  const statuses = list(p, 'rerun'); if (statuses !== undefined) policy.statuses = statuses
  if (p.values['rerun-clean'] === true) policy.clean = true
  if (p.values['rerun-all'] === true) policy.all = true
  return policy
}

/** A job file, or (no JOBFILE, --area DIR) the area's own Megatest files. */
function jobOf (p: Parsed, jobFile: string | undefined): { job: JobSpec, fromArea: boolean } {
  const areaOnly = ['target', 'runname', 'testpatt'].filter(o => str(p, o) !== undefined)
  if (jobFile !== undefined) {
    if (areaOnly.length > 0) throw new UsageError(`--${areaOnly[0]} selects from a Megatest area's files: give --area DIR without a JOBFILE`)
    return { job: readJobFile(jobFile), fromArea: false }
  }
  const dir = str(p, 'area')
  if (dir === undefined) throw new UsageError('give a JOBFILE, or --area DIR to run the Megatest area from its own files')
  const target = str(p, 'target')
  const runname = str(p, 'runname')
  if (target === undefined || runname === undefined) throw new UsageError('running a Megatest area needs --target (its key values joined by /) and --runname')
  const sel: Parameters<typeof readAreaJob>[1] = { target, runname }
  const testpatt = str(p, 'testpatt'); if (testpatt !== undefined) sel.testpatt = testpatt
  const read = readAreaJob(dir, sel)
  if (p.values.json !== true) for (const n of read.notes) console.error(`note: ${pr(n)}`)
  return { job: read.job, fromArea: true }
}

async function ciRun (p: Parsed, jobFile: string | undefined): Promise<number> {
  const { job, fromArea } = jobOf(p, jobFile)
  const concurrency = int(p, 'concurrency')
  if (concurrency !== undefined && concurrency < 1) throw new UsageError('--concurrency must be at least 1')
  const json = p.values.json === true
  const client = clientFor(p)
  const broadcast = broadcastConfigFor(p)
  const controller = new AbortController()
  let interrupts = 0
  const onSigint = (): void => {
    interrupts++
    if (interrupts > 1) process.exit(130)
    console.error('\ninterrupted: aborting running steps (Ctrl-C again to quit at once)')
    controller.abort()
  }
  process.on('SIGINT', onSigint)
  try {
    const target = await areaTargetOf(p, client, job.area)
    if (fromArea && target.area !== undefined) job.area = target.area
    else if (target.area !== undefined && target.area !== job.area) {
      console.error(`note: the node serves this area as "${pr(target.area, 100)}"; the job names it "${pr(job.area, 100)}"`)
      job.area = target.area
    }
    // A node found or started for the area is a node we know: it may take tests too
    // (not an area's ezsteps: those need worker nodes with the ezstep function).
    if (str(p, 'area') !== undefined && !fromArea) addTarget(broadcast, target.host)
    const printer = json ? undefined : progressPrinter(process.stdout.isTTY === true)
    const opts: Parameters<typeof runJob>[1] = { client, broadcast, areaHost: target.host, signal: controller.signal, rerun: rerunOf(p) }
    if (concurrency !== undefined) opts.concurrency = concurrency
    if (target.reconnect !== undefined) opts.reconnect = target.reconnect
    if (printer !== undefined) opts.onEvent = printer.onEvent
    let summary: RunSummary
    try {
      summary = await runJob(job, opts)
    } finally {
      printer?.done()
    }
    // A run whose tests did not all pass is ok: false (the exit status is 1), with the whole summary.
    if (json && summary.passed) console.log(jsonOk(summary))
    else if (json) console.log(toJson({ ok: false, error: { code: 'RUN_FAILED', message: `run ${summary.runname}: ${summary.state}/${summary.status}`, summary } }))
    else printSummary(summary)
    // Stopped by Ctrl-C: the steps were aborted and recorded; the shell's status for it.
    if (controller.signal.aborted) return INTERRUPTED_EXIT
    return summary.passed ? 0 : 1
  } finally {
    process.off('SIGINT', onSigint)
    client.close()
  }
}

async function ciStatus (p: Parsed, run: string | undefined): Promise<number> {
  if (run === undefined) throw new UsageError('RUN is required (a run id or a run name)')
  const client = clientFor(p)
  try {
    const target = await areaTargetOf(p, client, str(p, 'area-name'))
    const area = await areaNameOn(client, target.host, target.area)
    const reports = await readRuns(client, target.host, area, run)
    if (p.values.json === true) console.log(jsonOk(reports.length === 1 ? reports[0] : reports))
    else reports.forEach((r, i) => { if (i > 0) console.log(''); printRun(r) })
    return 0
  } finally {
    client.close()
  }
}

export const ciCmd: Command = {
  name: 'ci',
  summary: 'run a CI job on the mesh and record it in Megatest; show a recorded run',
  usage: `evalmesh ci run JOBFILE [--host H | --area DIR] [--concurrency N] [--rerun S,S | --rerun-clean | --rerun-all] [--json]
       evalmesh ci run --area DIR --target T --runname R [--testpatt P] [--rerun ...] [--json]
       evalmesh ci status RUN [--host H | --area DIR] [--area-name NAME] [--json]

  run JOBFILE     register the job's run and tests in its Megatest area, broadcast each
                  test (or item) to a willing node, run its steps there in order, record
                  every state, status, step and test-data row, roll up, print a summary.
                  Exit 0 when the run COMPLETED with PASS, WARN, WAIVED or SKIP; else 1.
  run --area DIR  (no JOBFILE) run the Megatest area DIR from its own files: megatest.config,
                  runconfigs.config, tests/*/testconfig (ezsteps, items, itemstable, waiton,
                  mode itemwait, runtimelim); each test gets a run directory under the
                  area's link tree. Workers need the ezstep function (docs/ci-agent.md).
  --target T      (area runs) the target: the area's key values joined by /
  --runname R     (area runs) the run name
  --testpatt P    (area runs) tests to run: test[/itempath],...; % is a wildcard (default:
                  runconfigs' TESTPATT, else %); the tests they wait on run too
  --rerun S,S     also run again tests already recorded with one of these statuses (by
                  default a test that COMPLETED, KILLED or is running is not run again)
  --rerun-clean   also run again KILLED, INCOMPLETE, STUCK... tests and FAIL, ABORT, CHECK ones
  --rerun-all     run every test again
  status RUN      the run's tests, items, states, statuses, steps and test data; RUN is a
                  run id or a run name (every target with that name is shown)
  --host H        the node serving the area (default: the local node)
  --area DIR      find the node serving area DIR, starting one if none does
  --area-name N   the area's name on the node (status; default: the node's only area)
  --concurrency N tests or items running at once (default: the job's, else 4)
  --idle-timeout S  with --area: a node started for the area stops after S idle seconds
  --lan ADDR      also broadcast on this LAN interface
  --json          machine-readable summary (no progress output)

  docs/ci-agent.md describes the job file.`,
  options: {
    host: { type: 'string', short: 'H' },
    area: { type: 'string' },
    'area-name': { type: 'string' },
    concurrency: { type: 'string' },
    'idle-timeout': { type: 'string' },
    lan: { type: 'string' },
    target: { type: 'string' },
    runname: { type: 'string' },
    testpatt: { type: 'string' },
    rerun: { type: 'string' },
    'rerun-clean': { type: 'boolean' },
    'rerun-all': { type: 'boolean' }
  },
  run: async (p) => {
    const [sub, arg, ...rest] = p.positionals
    if (rest.length > 0) throw new UsageError(`unexpected argument "${rest[0]}"`)
    if (sub === 'run') return await ciRun(p, arg)
    if (sub === 'status') return await ciStatus(p, arg)
    throw new UsageError(sub === undefined ? 'give a subcommand: run or status' : `unknown subcommand "${sub}" (run, status)`)
  }
}

export const areaServerCmd: Command = {
  name: 'area-server',
  summary: 'print host:port of the node serving a Megatest area, starting one if none does',
  usage: `evalmesh area-server DIR [--state-dir D] [--area-name N] [--idle-timeout S] [--max-servers N] [--keys K1,K2] [--json]

  Megatest's connect-and-start: use a live registered node of the area (stale
  registrations are removed), else start \`evalmesh serve --area DIR --port 0\` detached,
  logging to DIR/logs/server-<pid>.log, and wait for it to register. No new start
  within 5 s of this client's last one, or when --max-servers live nodes are registered.
  --idle-timeout S  a started node stops after S seconds without Megatest use (default 600)
  --verbose         say what was found, cleaned and started (on stderr)`,
  options: {
    'area-name': { type: 'string' },
    'idle-timeout': { type: 'string' },
    'max-servers': { type: 'string' },
    keys: { type: 'string' },
    timeout: { type: 'string' },
    verbose: { type: 'boolean' }
  },
  run: async (p) => {
    const [dir, ...rest] = p.positionals
    if (dir === undefined) throw new UsageError('DIR is required')
    if (rest.length > 0) throw new UsageError(`unexpected argument "${rest[0]}"`)
    const opts: Parameters<typeof findOrStartAreaServer>[1] = { stateDir: stateDirOf(p) }
    const name = str(p, 'area-name'); if (name !== undefined) opts.area = name
    const idle = int(p, 'idle-timeout'); if (idle !== undefined) opts.idleTimeoutSeconds = idle
    const max = int(p, 'max-servers'); if (max !== undefined) { if (max < 1) throw new UsageError('--max-servers must be at least 1'); opts.maxServers = max }
    const keys = list(p, 'keys'); if (keys !== undefined) opts.keys = keys
    const timeout = int(p, 'timeout'); if (timeout !== undefined) opts.timeoutMs = timeout
    if (p.values.verbose === true) opts.onEvent = (m) => console.error(printable(m, 2000))
    const found = await findOrStartAreaServer(dir, opts)
    if (p.values.json === true) {
      console.log(jsonOk({ host: found.host, area: found.area, started: found.started, pid: found.registration.pid, node: found.registration.node, log: found.log ?? null }))
    } else {
      console.log(printable(found.host, 200))
      if (found.started) console.error(`started node pid ${found.registration.pid} for area ${pr(found.area, 100)} (log ${pr(found.log ?? '-')})`)
    }
    return 0
  }
}

import { EvalMeshError, type Client } from '@evalmesh/client'

/** A recorded run as `evalmesh ci status` shows it, read through the Megatest API. */

export interface StepRecord { stepname: string, state: string, status: string, event_time: number, comment: string, logfile: string }
export interface DataRecord { category: string, variable: string, value: unknown, expected: unknown, tol: unknown, units: string, status: string }

export interface TestReport {
  id: number
  testname: string
  item_path: string
  state: string
  status: string
  host: string
  comment: string
  run_duration: number
  event_time: number
  /** Where the test ran (its run directory under the link tree; /tmp/badname until set) and its log, relative to it. */
  rundir: string
  final_logf: string
  steps: StepRecord[]
  data: DataRecord[]
}

export interface RunReport {
  id: number
  runname: string
  target: string
  keys: Record<string, unknown>
  state: string
  status: string
  owner: string
  event_time: number
  tests: TestReport[]
}

interface HeaderRows { header: string[], rows: unknown[][] }

function rowObject (h: HeaderRows, row: unknown[]): Record<string, unknown> {
  return Object.fromEntries(h.header.map((k, i) => [k, row[i]]))
}

/**
 * Read run(s) from the area: RUN is a run id, or a run name (a pattern, as
 * get-runs takes it) that may match the same name under several targets.
 */
export async function readRuns (client: Client, areaHost: string, area: string, run: string | number): Promise<RunReport[]> {
  const mt = async (command: string, ...params: unknown[]): Promise<unknown> =>
    await client.remoteApply(`megatest.${command}`, [area, ...params], areaHost)
  const keys = await mt('get-keys') as string[]
  let runs: Array<Record<string, unknown>>
  if (typeof run === 'number' || /^\d+$/.test(run)) {
    const info = await mt('get-run-info', Number(run)) as HeaderRows
    runs = info.rows.map(r => rowObject(info, r))
  } else {
    const found = await mt('get-runs', run, 0, 0, null) as HeaderRows
    runs = found.rows.map(r => rowObject(found, r))
  }
  if (runs.length === 0) throw new EvalMeshError('MEGATEST_ERROR', `area ${area} has no run ${typeof run === 'number' ? `with id ${run}` : `named ${JSON.stringify(run)}`}`, { area, run })
  const reports: RunReport[] = []
  for (const r of runs) {
    const id = Number(r.id)
    // Megatest's list is its query's order reversed: 'desc' gives the tests by name, ascending.
    const tests = await mt('get-tests-for-run', id, '%', [], [], 0, 0, false, 'testname', 'desc', null, null, null) as Array<Record<string, unknown>>
    const out: TestReport[] = []
    for (const t of tests) {
      const steps = await mt('get-steps-for-test', id, t.id) as StepRecord[]
      const data = await mt('read-test-data', id, t.id, '%') as DataRecord[]
      out.push({
        id: Number(t.id),
        testname: String(t.testname),
        item_path: String(t.item_path ?? ''),
        state: String(t.state),
        status: String(t.status),
        host: String(t.host ?? ''),
        comment: String(t.comment ?? ''),
        run_duration: Number(t.run_duration ?? 0),
        event_time: Number(t.event_time ?? 0),
        rundir: String(t.rundir ?? ''),
        final_logf: String(t.final_logf ?? ''),
        steps,
        data
      })
    }
    // Toplevel first, then its items, in name order.
    out.sort((a, b) => a.testname.localeCompare(b.testname) || (a.item_path === '' ? -1 : b.item_path === '' ? 1 : a.item_path.localeCompare(b.item_path)))
    reports.push({
      id,
      runname: String(r.runname),
      target: keys.map(k => String(r[k] ?? '')).join('/'),
      keys: Object.fromEntries(keys.map(k => [k, r[k]])),
      state: String(r.state),
      status: String(r.status),
      owner: String(r.owner ?? ''),
      event_time: Number(r.event_time ?? 0),
      tests: out
    })
  }
  return reports
}

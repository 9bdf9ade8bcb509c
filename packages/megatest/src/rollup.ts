import { EvalMeshError } from '@evalmesh/protocol'
import type { AreaContext } from './area.js'
import {
  DONT_ROLL_UP_STATES, NOT_STARTED_OK_STATUSES, RUNNING_STATES, stateRank, statusRank
} from './constants.js'

export interface StateStatus {
  state: string
  status: string
}

interface Group {
  state: string
  status: string
  count: number
}

/** Distinct values, best (or worst) first; ties keep first-seen order. */
function rankedDistinct (values: readonly string[], rank: (v: string) => number): string[] {
  return [...new Set(values)].map((v, i) => ({ v, i })).sort((x, y) => rank(y.v) - rank(x.v) || x.i - y.i).map(x => x.v)
}

/**
 * The roll-up of db:set-state-status-and-roll-up-items (db.scm:3576) over
 * (state, status, count) groups, exactly as Megatest computes it: `running`
 * and `bad` count groups, not tests.
 */
export function rollUpGroups (groups: readonly Group[]): StateStatus {
  const running = groups.filter(g => RUNNING_STATES.has(g.state)).length
  const bad = groups.filter(g => g.state === 'NOT_STARTED' && !NOT_STARTED_OK_STATUSES.has(g.status)).length
  const states = rankedDistinct(groups.map(g => g.state), stateRank)
  const statuses = rankedDistinct(groups.map(g => g.status), statusRank)
  const nonc = states.filter(s => s !== 'COMPLETED' && !DONT_ROLL_UP_STATES.has(s))
  const preqFail = statuses.includes('PREQ_FAIL')
  const state = running > 0
    ? 'RUNNING'
    : preqFail
      ? 'NOT_STARTED'
      : bad > 0
        ? 'COMPLETED'
        : nonc[0] ?? states[0] ?? 'NOT_STARTED'
  const status = preqFail
    ? 'PREQ_FAIL'
    : (bad > 0 || (state === 'NOT_STARTED' && nonc.length > 0))
      ? 'STARTED'
      : statuses[0] ?? 'n/a'
  return { state, status }
}

interface TestRow {
  id: number
  run_id: number
  testname: string
  item_path: string
  state: string
  status: string
}

export interface ItemRollUpResult {
  test: { id: number, state: string, status: string }
  toplevel: { id: number, state: string, status: string } | null
  run: { id: number, state: string, status: string } | null
}

export function findTest (ctx: AreaContext, runId: number | null, nameOrId: number | string, item: string | null): TestRow | undefined {
  if (typeof nameOrId === 'number') {
    return (runId === null
      ? ctx.stmt('SELECT id, run_id, testname, item_path, state, status FROM tests WHERE id=?').get(nameOrId)
      : ctx.stmt('SELECT id, run_id, testname, item_path, state, status FROM tests WHERE id=? AND run_id=?').get(nameOrId, runId)) as TestRow | undefined
  }
  return ctx.stmt('SELECT id, run_id, testname, item_path, state, status FROM tests WHERE run_id=? AND testname=? AND item_path=?')
    .get(runId, nameOrId, item ?? '') as TestRow | undefined
}

/**
 * set-state-status-and-roll-up-items (spec §2.3), then the run roll-up
 * (§2.3b). The caller holds the write transaction; SQLite's writer lock
 * replaces Megatest's global mutex.
 */
export function setStateStatusAndRollUpItems (
  ctx: AreaContext,
  runId: number | null,
  nameOrId: number | string,
  item: string | null,
  state: string | null,
  status: string | null,
  comment: string | null
): ItemRollUpResult {
  const test = findTest(ctx, runId, nameOrId, item)
  if (test === undefined) {
    const what = typeof nameOrId === 'number' ? `test id ${nameOrId}` : `test ${nameOrId}/${item ?? ''}`
    throw new EvalMeshError('MEGATEST_ERROR', `no ${what} in run ${runId ?? '(any)'} of area ${ctx.name}`)
  }
  const now = ctx.now()
  if (state === 'LAUNCHED' || state === 'REMOTEHOSTSTART') {
    ctx.stmt('UPDATE tests SET event_time=? WHERE id=?').run(now, test.id)
  }
  // AUTO means "let the test data decide": roll up the data first, then use its verdict.
  const auto = status === 'AUTO'
  ctx.stmt('UPDATE tests SET state=coalesce(?, state), status=coalesce(?, status), comment=coalesce(?, comment) WHERE id=?')
    .run(state, auto ? null : status, comment, test.id)
  if (auto) testDataRollup(ctx, test.id)
  const cur = ctx.stmt('SELECT state, status FROM tests WHERE id=?').get(test.id) as StateStatus
  let toplevel: ItemRollUpResult['toplevel'] = null
  if (test.item_path !== '') {
    const tl = ctx.stmt("SELECT id FROM tests WHERE run_id=? AND testname=? AND item_path=''").get(test.run_id, test.testname) as { id: number } | undefined
    if (tl !== undefined) {
      const groups = ctx.stmt(`SELECT state, status, count(id) AS count FROM tests
        WHERE run_id=? AND testname=? AND item_path!='' AND item_path!=? GROUP BY state, status`)
        .all(test.run_id, test.testname, test.item_path) as Group[]
      const mine = groups.find(g => g.state === cur.state && g.status === cur.status)
      if (mine !== undefined) mine.count++
      else groups.push({ state: cur.state, status: cur.status, count: 1 })
      const rolled = rollUpGroups(groups)
      ctx.stmt('UPDATE tests SET state=?, status=? WHERE id=?').run(rolled.state, rolled.status, tl.id)
      toplevel = { id: tl.id, ...rolled }
    }
  }
  const run = rollUpRun(ctx, test.run_id)
  return { test: { id: test.id, ...cur }, toplevel, run }
}

/**
 * Run roll-up: Megatest's item rule (rollUpGroups) applied to the run's toplevel tests,
 * as newer Megatest's db:set-state-status-and-roll-up-run does (spec §2.3b: "roll up
 * the run the same way over its toplevel tests"). Toplevels in DELETED, REMOVING,
 * CLEANING or ARCHIVE_REMOVING are left out. A run with no such toplevel has nothing
 * to roll up from: it takes the hint (the runner's state and status) where one is
 * given, else is left as it is. A locked run keeps state 'locked'; its status follows.
 */
export function rollUpRun (ctx: AreaContext, runId: number, hint: { state: string | null, status: string | null } = { state: null, status: null }): ItemRollUpResult['run'] {
  const run = ctx.stmt('SELECT id, state, status FROM runs WHERE id=?').get(runId) as { id: number, state: string, status: string } | undefined
  if (run === undefined || run.state === 'deleted') return null
  const groups = ctx.stmt(`SELECT state, status, count(id) AS count FROM tests
    WHERE run_id=? AND item_path='' GROUP BY state, status`).all(runId) as Group[]
  const live = groups.filter(g => !DONT_ROLL_UP_STATES.has(g.state))
  let next: StateStatus
  if (live.length === 0) next = { state: hint.state ?? run.state, status: hint.status ?? run.status }
  else next = rollUpGroups(live)
  if (run.state === 'locked') next.state = 'locked'
  if (next.state !== run.state || next.status !== run.status) {
    ctx.stmt('UPDATE runs SET state=?, status=? WHERE id=?').run(next.state, next.status, runId)
  }
  return { id: runId, ...next }
}

/**
 * test-data-rollup: count pass/fail rows of test_data into the test, then
 * FAIL if any failed, else PASS if any passed and the status is not WARN/FAIL.
 */
export function testDataRollup (ctx: AreaContext, testId: number): { fail_count: number, pass_count: number, status: string } {
  const counts = ctx.stmt(`SELECT
      (SELECT count(id) FROM test_data WHERE test_id=? AND status LIKE 'fail') AS fail_count,
      (SELECT count(id) FROM test_data WHERE test_id=? AND status LIKE 'pass') AS pass_count`).get(testId, testId) as { fail_count: number, pass_count: number }
  ctx.stmt('UPDATE tests SET fail_count=?, pass_count=? WHERE id=?').run(counts.fail_count, counts.pass_count, testId)
  ctx.stmt(`UPDATE tests SET status=CASE
      WHEN fail_count > 0 THEN 'FAIL'
      WHEN pass_count > 0 AND status NOT IN ('WARN','FAIL') THEN 'PASS'
      ELSE status END WHERE id=?`).run(testId)
  const row = ctx.stmt('SELECT status FROM tests WHERE id=?').get(testId) as { status: string } | undefined
  return { ...counts, status: row?.status ?? 'n/a' }
}

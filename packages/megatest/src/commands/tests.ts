import { EvalMeshError } from '@evalmesh/protocol'
import { Args, type SqlValue } from '../args.js'
import type { AreaContext } from '../area.js'
import {
  COUNTED_RUNNING_STATES, RUNNING_STATES, TEST_COLUMNS, TEST_RECORD_FIELDS, TEST_SHORTLIST_FIELDS, WELL_ENDED_STATUSES
} from '../constants.js'
import { andAll, inList, testPattClause, type Clause } from '../patterns.js'
import { setStateStatusAndRollUpItems, testDataRollup } from '../rollup.js'
import { ident } from '../schema.js'
import { requireRun, requireTest, TEST_RECORD_SQL, type TestRecord } from './common.js'
import { cmd, type CommandDef } from './define.js'

interface Statement {
  params: readonly string[]
  run: (ctx: AreaContext, runId: number | null, a: Args) => void
}

/** Check a test id against the general-call run-id, the filter Megatest forgot. */
function testIn (ctx: AreaContext, runId: number | null, a: Args, i: number): number {
  const id = a.int(i)
  requireTest(ctx, runId, id)
  return id
}

/**
 * The run a statement acts on. Megatest's callers repeat the run-id among the
 * statement's own values; it must agree with general-call's (either may be null).
 */
function sameRun (runId: number | null, a: Args, i: number, stmt: string): number {
  const inner = a.intOrNull(i)
  if (runId !== null && inner !== null && inner !== runId) a.fail(i, `is ${inner} but general-call's run-id is ${runId}`)
  const rid = runId ?? inner
  if (rid === null) throw new EvalMeshError('BAD_MESSAGE', `general-call ${stmt}: run-id is required (Megatest's version updated every run)`)
  return rid
}

/** db:queries statements used by CI (spec §2.4), all with bound parameters. */
const STATEMENTS: Record<string, Statement> = {
  'register-test': {
    params: ['run-id', 'testname', 'item-path'],
    run: (ctx, runId, a) => {
      const inner = a.int(0)
      if (runId !== null && inner !== runId) a.fail(0, `is ${inner} but general-call's run-id is ${runId}`)
      requireRun(ctx, inner)
      ctx.stmt(`INSERT OR IGNORE INTO tests (run_id, testname, event_time, item_path, state, status)
        VALUES (?, ?, ?, ?, 'NOT_STARTED', 'n/a')`).run(inner, a.str(1), ctx.now(), a.strOr(2, ''))
    }
  },
  'set-test-start-time': {
    params: ['test-id'],
    run: (ctx, runId, a) => { ctx.stmt('UPDATE tests SET event_time=? WHERE id=?').run(ctx.now(), testIn(ctx, runId, a, 0)) }
  },
  'test-set-log': {
    params: ['final-logf', 'test-id'],
    run: (ctx, runId, a) => { ctx.stmt('UPDATE tests SET final_logf=? WHERE id=?').run(a.str(0), testIn(ctx, runId, a, 1)) }
  },
  'test-set-rundir-shortdir': {
    // launch.scm: (rmt:general-call 'test-set-rundir-shortdir run-id lnkpathf test-path testname item-path run-id)
    params: ['rundir', 'shortdir', 'testname', 'item-path', 'run-id'],
    run: (ctx, runId, a) => {
      const rid = sameRun(runId, a, 4, 'test-set-rundir-shortdir')
      ctx.stmt('UPDATE tests SET rundir=?, shortdir=? WHERE testname=? AND item_path=? AND run_id=?')
        .run(a.str(0), a.str(1), a.str(2), a.strOr(3, ''), rid)
    }
  },
  'update-test-rundat': {
    // tests.scm: (rmt:general-call 'update-test-rundat run-id test-id (current-seconds) cpuload diskfree -1 minutes).
    // Five values is this project's earlier shape, without update-time (now is used).
    params: ['test-id', 'update-time', 'cpuload', 'diskfree', 'diskusage', 'run-duration'],
    run: (ctx, runId, a) => {
      const id = testIn(ctx, runId, a, 0)
      const legacy = a.values.length === 5
      const at = (i: number): number | null => a.numOrNull(legacy ? i - 1 : i)
      const time = legacy ? ctx.now() : a.intOr(1, ctx.now())
      ctx.stmt(`INSERT INTO test_rundat (test_id, update_time, cpuload, diskfree, diskusage, run_duration)
        VALUES (?, ?, ?, ?, ?, ?)`).run(id, time, at(2) ?? -1, at(3) ?? -1, at(4) ?? -1, at(5) ?? 0)
    }
  },
  'update-cpuload-diskfree': {
    params: ['cpuload', 'diskfree', 'test-id'],
    run: (ctx, runId, a) => { ctx.stmt('UPDATE tests SET cpuload=?, diskfree=? WHERE id=?').run(a.num(0), a.num(1), testIn(ctx, runId, a, 2)) }
  },
  'update-run-duration': {
    params: ['run-duration', 'test-id'],
    run: (ctx, runId, a) => { ctx.stmt('UPDATE tests SET run_duration=? WHERE id=?').run(a.num(0), testIn(ctx, runId, a, 1)) }
  },
  'update-uname-host': {
    params: ['uname', 'host', 'test-id'],
    run: (ctx, runId, a) => { ctx.stmt('UPDATE tests SET uname=?, host=? WHERE id=?').run(a.str(0), a.str(1), testIn(ctx, runId, a, 2)) }
  },
  'pass-fail-counts': {
    // db.scm: "UPDATE tests SET pass_count=?,fail_count=? WHERE id=?", sent by db:test-data-rollup.
    params: ['pass-count', 'fail-count', 'test-id'],
    run: (ctx, runId, a) => { ctx.stmt('UPDATE tests SET pass_count=?, fail_count=? WHERE id=?').run(a.int(0), a.int(1), testIn(ctx, runId, a, 2)) }
  },
  'set-test-comment': {
    // tests.scm: (rmt:general-call 'set-test-comment run-id cmt test-id)
    params: ['comment', 'test-id'],
    run: (ctx, runId, a) => { ctx.stmt('UPDATE tests SET comment=? WHERE id=?').run(a.strOr(0, ''), testIn(ctx, runId, a, 1)) }
  },
  'tests:test-set-toplog': {
    // tests.scm: (rmt:general-call 'tests:test-set-toplog run-id logf run-id test-name)
    params: ['final-logf', 'run-id', 'testname'],
    run: (ctx, runId, a) => {
      const rid = sameRun(runId, a, 1, 'tests:test-set-toplog')
      ctx.stmt("UPDATE tests SET final_logf=? WHERE run_id=? AND testname=? AND item_path=''").run(a.str(0), rid, a.str(2))
    }
  },
  'state-status': {
    params: ['state', 'status', 'test-id'],
    run: (ctx, runId, a) => { ctx.stmt('UPDATE tests SET state=?, status=? WHERE id=?').run(a.str(0), a.str(1), testIn(ctx, runId, a, 2)) }
  },
  'state-status-msg': {
    params: ['state', 'status', 'comment', 'test-id'],
    run: (ctx, runId, a) => { ctx.stmt('UPDATE tests SET state=?, status=?, comment=? WHERE id=?').run(a.str(0), a.str(1), a.strOr(2, ''), testIn(ctx, runId, a, 3)) }
  },
  'set-test-state': {
    params: ['state', 'test-id'],
    run: (ctx, runId, a) => { ctx.stmt('UPDATE tests SET state=? WHERE id=?').run(a.str(0), testIn(ctx, runId, a, 1)) }
  },
  'set-test-status': {
    // Megatest's statement sets state (a typo in db:queries); this one sets the status its name says.
    params: ['status', 'test-id'],
    run: (ctx, runId, a) => { ctx.stmt('UPDATE tests SET status=? WHERE id=?').run(a.str(0), testIn(ctx, runId, a, 1)) }
  },
  'top-test-set-running': {
    params: ['testname', 'run-id'],
    run: (ctx, runId, a) => {
      const rid = sameRun(runId, a, 1, 'top-test-set-running')
      ctx.stmt("UPDATE tests SET state='RUNNING' WHERE testname=? AND item_path='' AND run_id=?").run(a.str(0), rid)
    }
  },
  'test_data-pf-rollup': {
    // Megatest passes the test id four times; one is enough, repeats must agree.
    params: ['test-id', 'test-id', 'test-id', 'test-id'],
    run: (ctx, runId, a) => {
      const id = testIn(ctx, runId, a, 0)
      for (let i = 1; i < a.values.length; i++) if (!a.isNull(i) && a.int(i) !== id) a.fail(i, `must repeat test-id ${id}`)
      ctx.stmt(`UPDATE tests SET status=CASE
          WHEN fail_count > 0 THEN 'FAIL'
          WHEN pass_count > 0 AND status NOT IN ('WARN','FAIL') THEN 'PASS'
          ELSE status END WHERE id=?`).run(id)
    }
  },
  'update-pass-fail-counts': {
    params: ['testname', 'testname', 'testname'],
    run: (ctx, runId, a) => {
      if (runId === null) throw new EvalMeshError('BAD_MESSAGE', 'general-call update-pass-fail-counts: run-id is required (Megatest\'s version updated every run)')
      const name = a.str(0)
      ctx.stmt(`UPDATE tests SET
          fail_count=(SELECT count(id) FROM tests WHERE run_id=? AND testname=? AND item_path!='' AND status IN ('FAIL','CHECK','INCOMPLETE','ABORT')),
          pass_count=(SELECT count(id) FROM tests WHERE run_id=? AND testname=? AND item_path!='' AND status IN ('PASS','WARN','WAIVED'))
        WHERE run_id=? AND testname=? AND item_path=''`).run(runId, name, runId, name, runId, name)
    }
  },
  'delete-test-step-records': {
    params: ['test-id'],
    run: (ctx, runId, a) => { ctx.stmt("UPDATE test_steps SET status='DELETED' WHERE test_id=?").run(testIn(ctx, runId, a, 0)) }
  },
  'delete-test-data-records': {
    params: ['test-id'],
    run: (ctx, runId, a) => { ctx.stmt("UPDATE test_data SET status='DELETED' WHERE test_id=?").run(testIn(ctx, runId, a, 0)) }
  }
}

export const GENERAL_CALL_STATEMENTS: readonly string[] = Object.keys(STATEMENTS)

function recordColumns (a: Args, i: number): { columns: string[], sql: string } {
  const q = a.raw(i)
  if (q === undefined || q === null || q === false) return { columns: [...TEST_RECORD_FIELDS], sql: TEST_RECORD_SQL }
  if (q === 'shortlist') return { columns: [...TEST_SHORTLIST_FIELDS], sql: TEST_SHORTLIST_FIELDS.join(', ') }
  const cols = typeof q === 'string' ? q.split(',').map(s => s.trim()) : a.strList(i)
  if (cols.length === 0) a.fail(i, 'names no columns')
  for (const c of cols) if (!TEST_COLUMNS.has(c)) a.fail(i, `names "${c}", which is not a tests column (${[...TEST_COLUMNS].join(' ')})`)
  return { columns: cols, sql: cols.join(', ') }
}

/**
 * db:get-tests-for-run's dashboard mode. With states and statuses: COMPLETED tests with
 * one of the statuses, or other live tests in one of the states (not-in: COMPLETED tests
 * with none of the statuses, or other tests in none of the states). With only one list,
 * a plain filter on it, negated by not-in.
 */
function dashboardClause (states: readonly string[], statuses: readonly string[], notIn: boolean): Clause | null {
  const st = inList('state', states, notIn)
  const ss = inList('status', statuses, notIn)
  if (st !== null && ss !== null) {
    return notIn
      ? { sql: `((state='COMPLETED' AND ${ss.sql}) OR (state != 'COMPLETED' AND ${st.sql}))`, params: [...ss.params, ...st.params] }
      : { sql: `((state='COMPLETED' AND ${ss.sql}) OR (state NOT IN ('COMPLETED','DELETED') AND ${st.sql}))`, params: [...ss.params, ...st.params] }
  }
  return st ?? ss
}

const SORTS: Record<string, (dir: string) => string> = {
  testname: d => `testname ${d}, item_path ${d}`,
  rundir: d => `rundir ${d}, id`,
  statestatus: d => `state ${d}, status ${d}, testname, item_path`,
  event_time: d => `event_time ${d}, id ${d}`,
  raw: d => `id ${d}`
}

function runningCount (ctx: AreaContext, extra: Clause): number {
  const where = andAll([inList('state', COUNTED_RUNNING_STATES), { sql: "NOT (uname='n/a' AND item_path='')", params: [] }, extra])
  return ctx.stmt(`SELECT count(id) FROM tests WHERE ${where.sql}`).pluck().get(...where.params) as number
}

function runClause (runId: number | null): Clause | null {
  return runId === null ? null : { sql: 'run_id=?', params: [runId] }
}

const PREREQ_MODES = ['normal', 'toplevel', 'itemwait', 'itemmatch', 'exclusive'] as const

/** Tests stuck RUNNING/REMOTEHOSTSTART or LAUNCHED, with neither progress nor heartbeat within deadtime. */
function incompletes (ctx: AreaContext, runId: number | null, deadtime: number): Array<{ id: number, run_id: number }> {
  const now = ctx.now()
  const where = andAll([runClause(runId), {
    sql: `NOT (uname='n/a' AND item_path='') AND ? - last_update > ? AND (
      (state IN ('RUNNING','REMOTEHOSTSTART') AND ? - event_time > run_duration + ?)
      OR (state='LAUNCHED' AND ? - event_time > ?))`,
    params: [now, deadtime, now, deadtime, now, Math.max(deadtime, LAUNCH_DEADTIME)]
  }])
  return ctx.stmt(`SELECT id, run_id FROM tests WHERE ${where.sql} ORDER BY id`).all(...where.params) as Array<{ id: number, run_id: number }>
}

interface StateStatusRow { id: number, run_id: number, testname: string, item_path: string, state: string, status: string }

/** The short test vector of db:get-testinfo-state-status: six fields read, the rest Megatest's placeholders. */
function stateStatusRecord (row: StateStatusRow): TestRecord {
  return {
    id: row.id, run_id: row.run_id, testname: row.testname, state: row.state, status: row.status,
    event_time: -1, host: '', cpuload: -1, diskfree: -1, uname: '', rundir: '-', item_path: row.item_path,
    run_duration: -1, final_logf: '-', comment: '-', shortdir: '-', attemptnum: -1, archived: -1
  }
}

export const DEFAULT_DEADTIME = 7200
const LAUNCH_DEADTIME = 86400

export const TEST_COMMANDS: CommandDef[] = [
  cmd('general-call', 'write', ['stmt', 'run-id', '...args'], (ctx, a) => {
    const name = a.str(0)
    const st = Object.hasOwn(STATEMENTS, name) ? STATEMENTS[name] : undefined
    if (st === undefined) return a.fail(0, `names unknown statement "${name}" (known: ${GENERAL_CALL_STATEMENTS.join(', ')})`)
    const runId = a.intOrNull(1)
    st.run(ctx, runId, new Args(`general-call ${name}`, st.params, a.values.slice(2)))
    return true
  }),

  cmd('insert-test', 'write', ['run-id', 'record'], (ctx, a) => {
    const runId = a.int(0)
    requireRun(ctx, runId)
    const cols: string[] = []
    const vals: SqlValue[] = []
    for (const [k, v] of a.pairs(1)) {
      if (k === 'id' || k === 'run_id' || !TEST_COLUMNS.has(k)) a.fail(1, `names "${k}", which is not a settable tests column`)
      if (v !== null && typeof v !== 'string' && !(typeof v === 'number' && Number.isFinite(v))) a.fail(1, `gives "${k}" a value that is not a string, number or null`)
      if (cols.includes(k)) a.fail(1, `names "${k}" twice`)
      cols.push(k)
      vals.push(v as SqlValue)
    }
    if (!cols.includes('testname')) a.fail(1, 'lacks testname')
    if (!cols.includes('item_path')) { cols.push('item_path'); vals.push('') }
    const update = cols.filter(c => c !== 'testname' && c !== 'item_path').map(c => `${c}=excluded.${c}`)
    ctx.stmt(`INSERT INTO tests (run_id, ${cols.join(', ')}) VALUES (?, ${cols.map(() => '?').join(', ')})
      ON CONFLICT (run_id, testname, item_path) DO ${update.length === 0 ? 'NOTHING' : 'UPDATE SET ' + update.join(', ')}`).run(runId, ...vals)
    return ctx.stmt('SELECT id FROM tests WHERE run_id=? AND testname=? AND item_path=?').pluck()
      .get(runId, vals[cols.indexOf('testname')], vals[cols.indexOf('item_path')]) as number
  }),

  cmd('get-test-id', 'read', ['run-id', 'testname', 'item-path'], (ctx, a) =>
    (ctx.stmt('SELECT id FROM tests WHERE run_id=? AND testname=? AND item_path=?').pluck()
      .get(a.int(0), a.str(1), a.strOr(2, '')) as number | undefined) ?? null),

  cmd('get-test-info-by-id', 'read', ['run-id', 'test-id'], (ctx, a) => {
    const runId = a.intOrNull(0)
    const id = a.int(1)
    const row = runId === null
      ? ctx.stmt(`SELECT ${TEST_RECORD_SQL} FROM tests WHERE id=?`).get(id)
      : ctx.stmt(`SELECT ${TEST_RECORD_SQL} FROM tests WHERE id=? AND run_id=?`).get(id, runId)
    return (row as TestRecord | undefined) ?? null
  }),

  cmd('get-tests-for-run', 'read', ['run-id', 'testpatt', 'states', 'statuses', 'offset', 'limit', 'not-in',
    'sort-by', 'sort-order', 'qryvals', 'last-update', 'mode'], (ctx, a) => {
    const runId = a.intOrNull(0)
    const testpatt = a.strOrNull(1)
    const states = a.strList(2)
    const statuses = a.strList(3)
    const offset = a.intOr(4, 0)
    const limit = a.intOrNull(5)
    const notIn = !a.isNull(6)
    const sortBy = a.strOrNull(7)
    const sortOrder = a.oneOf(8, ['asc', 'desc'], 'asc').toUpperCase()
    const { sql: colsSql } = recordColumns(a, 9)
    const shortlist = a.raw(9) === 'shortlist'
    const lastUpdate = a.intOrNull(10)
    const mode = a.oneOf(11, ['normal', 'dashboard'], 'normal')
    let order: string
    if (sortBy === null) order = `id ${sortOrder}`
    else if (Object.hasOwn(SORTS, sortBy)) order = (SORTS[sortBy] as (d: string) => string)(sortOrder)
    else if (TEST_COLUMNS.has(sortBy)) order = `${sortBy} ${sortOrder}, id`
    else return a.fail(7, `must be one of ${Object.keys(SORTS).join(', ')} or a tests column, got "${sortBy}"`)
    const where = andAll([
      runClause(runId),
      lastUpdate === null ? { sql: "state != 'DELETED'", params: [] } : { sql: 'last_update >= ?', params: [lastUpdate] },
      mode === 'dashboard' ? dashboardClause(states, statuses, notIn) : inList('state', states, notIn),
      mode === 'dashboard' ? null : inList('status', statuses, notIn),
      testPattClause(testpatt)
    ])
    const rows = ctx.stmt(`SELECT ${colsSql} FROM tests WHERE ${where.sql} ORDER BY ${order} LIMIT ? OFFSET ?`)
      .all(...where.params, limit === null || limit <= 0 ? -1 : limit, Math.max(0, offset))
    // Megatest conses each row onto its result, so its list is the query's order reversed.
    rows.reverse()
    return shortlist ? (rows as StateStatusRow[]).map(stateStatusRecord) : rows
  }),

  cmd('test-set-state-status', 'write', ['run-id', 'test-id', 'state', 'status', 'comment'], (ctx, a) => {
    const id = a.int(1)
    requireTest(ctx, a.intOrNull(0), id)
    ctx.stmt('UPDATE tests SET state=coalesce(?, state), status=coalesce(?, status), comment=coalesce(?, comment) WHERE id=?')
      .run(a.strOrNull(2), a.strOrNull(3), a.strOrNull(4), id)
    return true
  }),

  cmd('test-set-state-status-by-id', 'write', ['run-id', 'test-id', 'state', 'status', 'comment'], (ctx, a) =>
    setStateStatusAndRollUpItems(ctx, a.intOrNull(0), a.int(1), null, a.strOrNull(2), a.strOrNull(3), a.strOrNull(4))),

  cmd('set-state-status-and-roll-up-items', 'write', ['run-id', 'test-name-or-id', 'item-path', 'state', 'status', 'comment'], (ctx, a) => {
    const runId = a.intOrNull(0)
    const target = a.raw(1)
    let nameOrId: number | string
    if (typeof target === 'number') nameOrId = a.int(1)
    else {
      nameOrId = a.str(1)
      if (runId === null) a.fail(0, 'is required when the test is given by name')
    }
    return setStateStatusAndRollUpItems(ctx, runId, nameOrId, a.strOrNull(2), a.strOrNull(3), a.strOrNull(4), a.strOrNull(5))
  }),

  cmd('test-set-top-process-pid', 'write', ['run-id', 'test-id', 'pid'], (ctx, a) => {
    const id = a.int(1)
    requireTest(ctx, a.intOrNull(0), id)
    const pid = a.int(2)
    ctx.stmt('UPDATE tests SET attemptnum=? WHERE id=?').run(pid, id)
    return pid
  }),
  cmd('test-get-top-process-pid', 'read', ['run-id', 'test-id'], (ctx, a) => {
    const runId = a.intOrNull(0)
    const v = runId === null
      ? ctx.stmt('SELECT attemptnum FROM tests WHERE id=?').pluck().get(a.int(1))
      : ctx.stmt('SELECT attemptnum FROM tests WHERE id=? AND run_id=?').pluck().get(a.int(1), runId)
    return (v as number | undefined) ?? null
  }),

  cmd('get-count-tests-running', 'read', ['run-id'], (ctx, a) => runningCount(ctx, andAll([runClause(a.intOrNull(0))]))),
  // db:get-count-tests-running-for-run-id has no never-ran-parent filter: a LAUNCHED
  // test whose uname is still n/a counts.
  cmd('get-count-tests-running-for-run-id', 'read', ['run-id'], (ctx, a) =>
    ctx.stmt(`SELECT count(id) FROM tests WHERE state IN (${COUNTED_RUNNING_STATES.map(() => '?').join(',')}) AND run_id=?`)
      .pluck().get(...COUNTED_RUNNING_STATES, a.int(0)) as number),
  cmd('get-count-tests-running-for-testname', 'read', ['run-id', 'testname'], (ctx, a) =>
    runningCount(ctx, andAll([runClause(a.intOrNull(0)), { sql: 'testname=?', params: [a.str(1)] }]))),
  cmd('get-count-tests-running-in-jobgroup', 'read', ['run-id', 'jobgroup'], (ctx, a) =>
    runningCount(ctx, andAll([runClause(a.intOrNull(0)),
      { sql: 'testname IN (SELECT testname FROM test_meta WHERE jobgroup=?)', params: [a.str(1)] }]))),

  cmd('get-not-completed-cnt', 'read', ['run-id'], (ctx, a) =>
    ctx.stmt("SELECT count(id) FROM tests WHERE run_id=? AND state NOT IN ('COMPLETED','DELETED')").pluck().get(a.int(0)) as number),

  cmd('get-prereqs-not-met', 'read', ['run-id', 'waitons', 'ref-testname', 'ref-item-path', 'mode', 'itemmaps'], (ctx, a) => {
    const runId = a.int(0)
    const waitons = a.strList(1)
    const refName = a.strOrNull(2)
    const refItem = a.strOr(3, '')
    const mode = a.oneOf(4, PREREQ_MODES, 'normal')
    if (!a.isNull(5) && !(Array.isArray(a.raw(5)) && (a.raw(5) as unknown[]).length === 0)) {
      a.fail(5, 'is not supported: give null (item paths are matched as they are)')
    }
    const unmet: unknown[] = []
    const ofName = ctx.stmt(`SELECT ${TEST_RECORD_SQL} FROM tests WHERE run_id=? AND testname=? AND state != 'DELETED' ORDER BY item_path, id`)
    for (const w of waitons) {
      const rows = ofName.all(runId, w) as Array<TestRecord & { state: string, status: string, item_path: string }>
      if (rows.length === 0) { unmet.push(w); continue }
      const top = rows.find(r => r.item_path === '')
      const okTop = top !== undefined && (mode === 'toplevel'
        ? top.state === 'COMPLETED' || top.state === 'KILLED'
        : top.state === 'COMPLETED' && WELL_ENDED_STATUSES.has(top.status))
      let met = okTop
      if (!met && (mode === 'itemwait' || mode === 'itemmatch') && refItem !== '') {
        const mine = rows.find(r => r.item_path === refItem)
        met = mine !== undefined && mine.state === 'COMPLETED' && WELL_ENDED_STATUSES.has(mine.status)
      }
      if (!met) unmet.push(...rows)
    }
    if (mode === 'exclusive' && refName !== null) {
      const running = ctx.stmt(`SELECT ${TEST_RECORD_SQL} FROM tests WHERE testname=? AND state IN (${[...RUNNING_STATES].map(() => '?').join(',')})
        AND NOT (uname='n/a' AND item_path='') ORDER BY id`).all(refName, ...RUNNING_STATES)
      unmet.push(...running)
    }
    return unmet
  }),

  cmd('have-incompletes?', 'read', ['run-id', 'deadtime'], (ctx, a) =>
    incompletes(ctx, a.intOrNull(0), a.intOr(1, DEFAULT_DEADTIME)).length > 0),

  cmd('mark-incomplete', 'write', ['run-id', 'deadtime'], (ctx, a) => {
    const found = incompletes(ctx, a.intOrNull(0), a.intOr(1, DEFAULT_DEADTIME))
    for (const t of found) {
      setStateStatusAndRollUpItems(ctx, t.run_id, t.id, null, 'COMPLETED', 'DEAD', 'marked incomplete: no progress or heartbeat within deadtime')
    }
    return found.map(t => t.id)
  }),

  cmd('test-data-rollup', 'write', ['run-id', 'test-id', 'status'], (ctx, a) => {
    const id = a.int(1)
    requireTest(ctx, a.intOrNull(0), id)
    return testDataRollup(ctx, id)
  }),

  // launch.scm calls it at every test end (and tests.scm while waiting): a test record
  // with only id, run_id, testname, state, status and item_path read, the rest
  // Megatest's placeholders.
  cmd('get-testinfo-state-status', 'read', ['run-id', 'test-id'], (ctx, a) => {
    const runId = a.intOrNull(0)
    const id = a.int(1)
    const sql = 'SELECT id, run_id, testname, item_path, state, status FROM tests WHERE id=?'
    const row = (runId === null ? ctx.stmt(sql).get(id) : ctx.stmt(sql + ' AND run_id=?').get(id, runId)) as StateStatusRow | undefined
    return row === undefined ? null : stateStatusRecord(row)
  }),

  // runs.scm: (rmt:test-toplevel-num-items run-id test-name), > 0 means "iterated".
  cmd('test-toplevel-num-items', 'read', ['run-id', 'testname'], (ctx, a) =>
    ctx.stmt("SELECT count(id) FROM tests WHERE run_id=? AND testname=? AND item_path != '' AND state NOT IN ('DELETED')")
      .pluck().get(a.int(0), a.str(1)) as number),

  // tests.scm (summarize-items): (rundir final_logf) of the toplevel, or #f.
  cmd('test-get-logfile-info', 'read', ['run-id', 'testname'], (ctx, a) => {
    const row = ctx.stmt("SELECT rundir, final_logf FROM tests WHERE testname=? AND item_path='' AND run_id=?")
      .get(a.str(1), a.int(0)) as { rundir: string, final_logf: string } | undefined
    return row === undefined ? null : [row.rundir, row.final_logf]
  }),

  // runs.scm (waivers, -rerun): the newest record of each test/item matching
  // testname/item-path in the other runs of the same target.
  cmd('get-matching-previous-test-run-records', 'read', ['run-id', 'testname', 'item-path'], (ctx, a) => {
    const runId = a.int(0)
    const patt = `${a.strOr(1, '%')}/${a.strOr(2, '')}`
    const keyCols = ctx.keyNames.map(ident)
    const kv = ctx.stmt(`SELECT ${keyCols.length === 0 ? 'id' : keyCols.join(', ')} FROM runs WHERE id=?`).raw().get(runId) as SqlValue[] | undefined
    if (kv === undefined) return []
    const runs = andAll([...keyCols.map((k, i) => ({ sql: `${k}=?`, params: [kv[i] ?? null] })), { sql: 'id != ?', params: [runId] }])
    const where = andAll([{ sql: `run_id IN (SELECT id FROM runs WHERE ${runs.sql})`, params: runs.params },
      { sql: "state != 'DELETED'", params: [] }, testPattClause(patt)])
    const rows = ctx.stmt(`SELECT ${TEST_RECORD_SQL} FROM tests WHERE ${where.sql}
      ORDER BY testname, item_path, event_time DESC, run_id DESC`).all(...where.params) as TestRecord[]
    const seen = new Set<string>()
    return rows.filter(r => {
      const k = `${String(r.testname)}/${String(r.item_path)}`
      if (seen.has(k)) return false
      seen.add(k)
      return true
    })
  }),

  // db:get-tests-for-run with qryvals "id,run_id,testname,state,status,event_time,item_path"
  // and last-update 0, so deleted tests are included; newest id first, as Megatest's list is.
  cmd('get-tests-for-run-mindata', 'read', ['run-id', 'testpatt', 'states', 'statuses', 'not-in'], (ctx, a) => {
    const notIn = !a.isNull(4)
    const where = andAll([runClause(a.intOrNull(0)), inList('state', a.strList(2), notIn), inList('status', a.strList(3), notIn),
      testPattClause(a.strOrNull(1))])
    return ctx.stmt(`SELECT id, run_id, testname, state, status, event_time, item_path FROM tests WHERE ${where.sql} ORDER BY id DESC`)
      .all(...where.params)
  }),

  // runs.scm (-remove-runs): soft-delete the steps and data, then the test.
  cmd('delete-test-records', 'write', ['run-id', 'test-id'], (ctx, a) => {
    const id = a.int(1)
    requireTest(ctx, a.intOrNull(0), id)
    ctx.stmt("UPDATE test_steps SET status='DELETED' WHERE test_id=?").run(id)
    ctx.stmt("UPDATE test_data SET status='DELETED' WHERE test_id=?").run(id)
    ctx.stmt("UPDATE tests SET state='DELETED', status='n/a', comment='' WHERE id=?").run(id)
    return true
  }),

  // runs.scm (allow-auto-rerun): (rmt:set-tests-state-status run-id test-names state status "NOT_STARTED" status).
  // Each name is a LIKE pattern over the run's tests, items included; null currstate/currstatus
  // match any. Returns the toplevel ids of the names that have one.
  cmd('set-tests-state-status', 'write', ['run-id', 'testnames', 'currstate', 'currstatus', 'newstate', 'newstatus'], (ctx, a) => {
    const runId = a.int(0)
    requireRun(ctx, runId)
    const names = a.strList(1)
    const curState = a.strOrNull(2)
    const curStatus = a.strOrNull(3)
    const newState = a.strOrNull(4) ?? curState ?? 'NOT_STARTED'
    const newStatus = a.strOrNull(5) ?? curStatus ?? 'UNKNOWN'
    const where = andAll([
      curState === null ? null : { sql: 'state=?', params: [curState] },
      curStatus === null ? null : { sql: 'status=?', params: [curStatus] },
      { sql: 'run_id=? AND testname LIKE ?', params: [] }
    ])
    const upd = ctx.stmt(`UPDATE tests SET state=?, status=? WHERE ${where.sql}`)
    const top = ctx.stmt("SELECT id FROM tests WHERE run_id=? AND testname=? AND item_path=''").pluck()
    const ids: number[] = []
    for (const name of names) {
      upd.run(newState, newStatus, ...where.params, runId, name)
      const id = top.get(runId, name) as number | undefined
      if (id !== undefined) ids.push(id)
    }
    return ids
  }),

  // The dashboard's cheap poll: every test of the run (deleted ones too) matching testpatt,
  // as get-testinfo-state-status records; newest id first, as Megatest's list is.
  cmd('get-tests-for-run-state-status', 'read', ['run-id', 'testpatt'], (ctx, a) => {
    const where = andAll([{ sql: 'run_id=?', params: [a.int(0)] }, testPattClause(a.strOrNull(1))])
    return (ctx.stmt(`SELECT id, run_id, testname, item_path, state, status FROM tests WHERE ${where.sql} ORDER BY id DESC`)
      .all(...where.params) as StateStatusRow[]).map(stateStatusRecord)
  }),

  cmd('test-get-rundir-from-test-id', 'read', ['run-id', 'test-id'], (ctx, a) => {
    const runId = a.intOrNull(0)
    const v = runId === null
      ? ctx.stmt('SELECT rundir FROM tests WHERE id=?').pluck().get(a.int(1))
      : ctx.stmt('SELECT rundir FROM tests WHERE id=? AND run_id=?').pluck().get(a.int(1), runId)
    return (v as string | undefined) ?? null
  }),

  // Hard-deletes tests DELETED more than 30 days ago (by event_time), with their steps and data.
  cmd('delete-old-deleted-test-records', 'write', [], (ctx) => {
    const before = ctx.now() - 30 * 24 * 60 * 60
    const old = "SELECT id FROM tests WHERE state='DELETED' AND event_time < ?"
    ctx.stmt(`DELETE FROM test_steps WHERE test_id IN (${old})`).run(before)
    ctx.stmt(`DELETE FROM test_data WHERE test_id IN (${old})`).run(before)
    ctx.stmt(`DELETE FROM test_rundat WHERE test_id IN (${old})`).run(before)
    return ctx.stmt("DELETE FROM tests WHERE state='DELETED' AND event_time < ?").run(before).changes
  }),

  // tests.scm (the items index page of an iterated test): its items, newest id first.
  cmd('test-get-records-for-index-file', 'read', ['run-id', 'testname'], (ctx, a) =>
    ctx.stmt(`SELECT id, item_path, state, status, run_duration, final_logf, comment FROM tests
      WHERE testname=? AND item_path != '' AND run_id=? ORDER BY id DESC`).all(a.str(1), a.int(0))),

  // db:test-get-paths-matching-keynames-target-new: the rundirs of the run's tests matching
  // testpatt, state LIKE statepatt and status LIKE statuspatt, newest event_time first,
  // followed by the list res (Megatest conses onto it). keynames, target, runname: unused.
  cmd('test-get-paths-matching-keynames-target-new', 'read',
    ['run-id', 'keynames', 'target', 'res', 'testpatt', 'statepatt', 'statuspatt', 'runname'], (ctx, a) => {
      const where = andAll([{ sql: 'run_id=?', params: [a.int(0)] }, testPattClause(a.strOrNull(4)),
        { sql: 'state LIKE ? AND status LIKE ?', params: [a.strOr(5, '%'), a.strOr(6, '%')] }])
      const dirs = ctx.stmt(`SELECT rundir FROM tests WHERE ${where.sql} ORDER BY event_time DESC, id DESC`).pluck().all(...where.params)
      return [...dirs, ...a.strList(3)]
    }),

  // db:get-latest-host-load: [cpuload, update_time] of the newest test_rundat row with a
  // cpuload from a test on that host (the name up to its first "."), or [-1, 0].
  // Not in api:read-only-queries, so a write by Megatest's class (a read-only area refuses it).
  cmd('get-latest-host-load', 'write', ['hostname'], (ctx, a) => {
    const row = ctx.stmt(`SELECT tr.cpuload AS cpuload, tr.update_time AS update_time FROM test_rundat tr JOIN tests t ON tr.test_id=t.id
      WHERE t.host=? AND tr.cpuload != -1 ORDER BY tr.update_time DESC, tr.id DESC LIMIT 1`).get(a.str(0).replace(/\..*$/, '')) as
      { cpuload: number, update_time: number } | undefined
    return row === undefined ? [-1, 0] : [row.cpuload, row.update_time]
  }, 'none'),

  // db:get-tests-tags: [[tag, [testname..]]..] from test_meta's comma-separated tags.
  cmd('get-tests-tags', 'read', [], (ctx) => {
    const byTag = new Map<string, string[]>()
    for (const r of ctx.stmt('SELECT testname, tags FROM test_meta ORDER BY id').all() as Array<{ testname: string, tags: string | null }>) {
      for (const tag of (r.tags ?? '').split(',')) {
        if (tag === '') continue
        const names = byTag.get(tag) ?? []
        if (!names.includes(r.testname)) names.push(r.testname)
        byTag.set(tag, names)
      }
    }
    return [...byTag.entries()]
  })
]

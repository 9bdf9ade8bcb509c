import { EvalMeshError } from '@evalmesh/protocol'
import type { AreaContext } from '../area.js'
import type { SqlValue } from '../args.js'
import { andAll, pattToLike, type Clause } from '../patterns.js'
import { rollUpRun } from '../rollup.js'
import { ident } from '../schema.js'
import { keyColsSql, requireRun, toRows, type HeaderRows } from './common.js'
import { cmd, type CommandDef } from './define.js'

const RUN_INFO_FIELDS = ['id', 'runname', 'state', 'status', 'owner', 'event_time', 'comment', 'fail_count', 'pass_count', 'contour']
const GET_RUNS_FIELDS = ['id', 'runname', 'state', 'status', 'owner', 'event_time']
const RUN_COLUMNS = new Set([...RUN_INFO_FIELDS, 'last_update'])

/** Column name -> SQL: keys are quoted identifiers, run columns are constants. */
function runColumnSql (ctx: AreaContext, col: string): string {
  return ctx.keyNames.includes(col) ? ident(col) : col
}

function keyValsOf (ctx: AreaContext, runId: number): Array<[string, unknown]> | null {
  if (ctx.keyNames.length === 0) {
    return ctx.stmt('SELECT id FROM runs WHERE id=?').get(runId) === undefined ? null : []
  }
  const row = ctx.stmt(`SELECT ${keyColsSql(ctx)} FROM runs WHERE id=?`).get(runId) as Record<string, unknown> | undefined
  if (row === undefined) return null
  return ctx.keyNames.map(k => [k, row[k]])
}

function lockRun (ctx: AreaContext, runId: number, lock: boolean, user: string | null): boolean {
  const run = requireRun(ctx, runId)
  const now = ctx.now()
  if (lock) {
    if (run.state !== 'locked') {
      // Megatest overwrites runs.state; keep what it was so unlock can restore it.
      ctx.stmt("DELETE FROM extradat WHERE run_id=? AND key='state-before-lock'").run(runId)
      ctx.stmt("INSERT INTO extradat (run_id, key, val) VALUES (?, 'state-before-lock', ?)").run(runId, run.state)
      ctx.stmt("UPDATE runs SET state='locked' WHERE id=?").run(runId)
    }
  } else if (run.state === 'locked') {
    const prev = ctx.stmt("SELECT val FROM extradat WHERE run_id=? AND key='state-before-lock'").pluck().get(runId) as string | undefined
    ctx.stmt('UPDATE runs SET state=? WHERE id=?').run(prev ?? 'unlocked', runId)
    ctx.stmt("DELETE FROM extradat WHERE run_id=? AND key='state-before-lock'").run(runId)
  }
  ctx.stmt('INSERT INTO access_log (user, accessed, args) VALUES (?, ?, ?)').run(user ?? '', now, `${lock ? 'lock' : 'unlock'}-run ${runId}`)
  return true
}

/** The run's target, key values joined by "/", as an SQL expression over runs (alias prefix). */
function targetSql (ctx: AreaContext, prefix = ''): string {
  return ctx.keyNames.length === 0 ? "''" : ctx.keyNames.map(k => prefix + ident(k)).join(" || '/' || ")
}

export const RUN_COMMANDS: CommandDef[] = [
  cmd('register-run', 'write', ['keyvals', 'runname', 'state', 'status', 'user', 'contour'], (ctx, a) => {
    const given = new Map<string, string>()
    for (const [k, v] of a.pairs(0)) {
      if (!ctx.keyNames.includes(k)) a.fail(0, `names key "${k}", which is not a key of area ${ctx.name} (keys: ${ctx.keyNames.join(' ')})`)
      if (typeof v !== 'string' && typeof v !== 'number') a.fail(0, `gives key "${k}" a value that is not a string`)
      const s = String(v)
      if (s.includes('/')) a.fail(0, `gives key "${k}" the value "${s}", which contains "/" (targets are joined with "/")`)
      given.set(k, s)
    }
    const missing = ctx.keyNames.filter(k => !given.has(k))
    if (missing.length > 0) a.fail(0, `lacks key(s) ${missing.join(' ')}`)
    const runname = a.str(1)
    if (runname === '') a.fail(1, 'must not be empty')
    const state = a.strOr(2, 'new')
    const status = a.strOr(3, 'n/a')
    const user = a.strOr(4, '')
    const contour = a.strOr(5, '')
    const keyVals = ctx.keyNames.map(k => given.get(k) as string)
    const now = ctx.now()
    const keyCols = ctx.keyNames.map(k => ident(k) + ', ').join('')
    ctx.stmt(`INSERT OR IGNORE INTO runs (${keyCols}runname, state, status, owner, event_time, contour)
      VALUES (${keyVals.map(() => '?, ').join('')}?, ?, ?, ?, ?, ?)`).run(...keyVals, runname, state, status, user, now, contour)
    const where = ['runname=?', ...ctx.keyNames.map(k => `${ident(k)}=?`)].join(' AND ')
    const row = ctx.stmt(`SELECT id, state FROM runs WHERE ${where}`).get(runname, ...keyVals) as { id: number, state: string }
    if (row.state === 'deleted') {
      ctx.stmt('UPDATE runs SET state=?, status=?, event_time=? WHERE id=?').run(state, status, now, row.id)
    }
    return row.id
  }),

  cmd('get-run-info', 'read', ['run-id'], (ctx, a): HeaderRows => {
    const header = [...ctx.keyNames, ...RUN_INFO_FIELDS]
    const cols = header.map(c => runColumnSql(ctx, c)).join(', ')
    const row = ctx.stmt(`SELECT ${cols} FROM runs WHERE id=?`).get(a.int(0)) as Record<string, unknown> | undefined
    return { header, rows: row === undefined ? [] : toRows([row], header) }
  }),

  cmd('get-runs', 'read', ['runpatt', 'count', 'offset', 'keypatts'], (ctx, a): HeaderRows => {
    const runpatt = a.strOrNull(0)
    const count = a.intOrNull(1)
    const offset = a.intOr(2, 0)
    const keyClauses: Clause[] = a.pairs(3).map(([k, patt]) => {
      if (!ctx.keyNames.includes(k)) a.fail(3, `names key "${k}", which is not a key of area ${ctx.name}`)
      if (patt !== null && typeof patt !== 'string') return a.fail(3, `gives key "${k}" a pattern that is not a string`)
      return pattToLike(ident(k), patt)
    })
    const where = andAll([pattToLike('runname', runpatt), ...keyClauses, { sql: "state != 'deleted'", params: [] }])
    const header = [...ctx.keyNames, ...GET_RUNS_FIELDS]
    const cols = header.map(c => runColumnSql(ctx, c)).join(', ')
    const params: SqlValue[] = [...where.params, count === null || count <= 0 ? -1 : count, Math.max(0, offset)]
    // The newest count runs, returned oldest first: Megatest conses each row onto its result.
    const rows = ctx.stmt(`SELECT ${cols} FROM runs WHERE ${where.sql} ORDER BY event_time DESC, id DESC LIMIT ? OFFSET ?`).all(...params) as Array<Record<string, unknown>>
    return { header, rows: toRows(rows.reverse(), header) }
  }),

  cmd('get-runs-by-patt', 'read', ['keys', 'runpatt', 'targpatt', 'offset', 'limit', 'fields', 'last-update'], (ctx, a): HeaderRows => {
    const keys = a.strList(0)
    if (keys.length > 0 && (keys.length !== ctx.keyNames.length || keys.some((k, i) => k !== ctx.keyNames[i]))) {
      a.fail(0, `must be the area's keys (${ctx.keyNames.join(' ')}) or null, got ${keys.join(' ')}`)
    }
    const runpatt = a.strOrNull(1)
    const targpatt = a.strOrNull(2)
    const offset = a.intOr(3, 0)
    const limit = a.intOrNull(4)
    const fieldsIn = a.strList(5)
    const lastUpdate = a.intOrNull(6)
    const fields = fieldsIn.length === 0 ? [...ctx.keyNames, ...RUN_INFO_FIELDS.slice(0, 9)] : fieldsIn
    for (const f of fields) {
      if (!ctx.keyNames.includes(f) && !RUN_COLUMNS.has(f)) {
        a.fail(5, `names "${f}", which is neither a key nor a run column (${[...RUN_COLUMNS].join(' ')})`)
      }
    }
    const targParts = targpatt === null ? [] : targpatt.split('/')
    const keyClauses = ctx.keyNames.map((k, i) => {
      const p = targParts[i]
      return p === undefined || p === '%' ? null : pattToLike(ident(k), p)
    })
    const where = andAll([
      pattToLike('runname', runpatt),
      ...keyClauses,
      lastUpdate === null ? { sql: "state != 'deleted'", params: [] } : { sql: 'last_update >= ?', params: [lastUpdate] }
    ])
    const cols = fields.map(c => runColumnSql(ctx, c)).join(', ')
    const rows = ctx.stmt(`SELECT ${cols} FROM runs WHERE ${where.sql} ORDER BY event_time ASC, id ASC LIMIT ? OFFSET ?`)
      .all(...where.params, limit === null || limit <= 0 ? -1 : limit, Math.max(0, offset)) as Array<Record<string, unknown>>
    return { header: fields, rows: toRows(rows, fields) }
  }),

  cmd('get-keys', 'read', [], (ctx) => [...ctx.keyNames]),

  cmd('get-key-val-pairs', 'read', ['run-id'], (ctx, a) => keyValsOf(ctx, a.int(0)) ?? []),
  cmd('get-key-vals', 'read', ['run-id'], (ctx, a) => (keyValsOf(ctx, a.int(0)) ?? []).map(([, v]) => v)),
  cmd('get-target', 'read', ['run-id'], (ctx, a) => {
    const kv = keyValsOf(ctx, a.int(0))
    return kv === null ? null : kv.map(([, v]) => String(v ?? '')).join('/')
  }),

  cmd('get-targets', 'read', [], (ctx): HeaderRows => {
    const header = [...ctx.keyNames]
    if (header.length === 0) return { header, rows: [] }
    const cols = keyColsSql(ctx)
    const rows = ctx.stmt(`SELECT DISTINCT ${cols} FROM runs WHERE state != 'deleted' ORDER BY ${cols}`).all() as Array<Record<string, unknown>>
    return { header, rows: toRows(rows, header) }
  }),

  cmd('delete-run', 'write', ['run-id'], (ctx, a) => {
    const runId = a.int(0)
    const run = requireRun(ctx, runId)
    if (run.state === 'locked') throw new EvalMeshError('MEGATEST_ERROR', `run ${runId} of area ${ctx.name} is locked; unlock it before deleting`, { runId })
    const ids = 'SELECT id FROM tests WHERE run_id=?'
    ctx.stmt(`DELETE FROM test_steps WHERE test_id IN (${ids})`).run(runId)
    ctx.stmt(`DELETE FROM test_data WHERE test_id IN (${ids})`).run(runId)
    ctx.stmt(`DELETE FROM test_rundat WHERE test_id IN (${ids})`).run(runId)
    ctx.stmt("UPDATE tests SET state='DELETED' WHERE run_id=?").run(runId)
    ctx.stmt('DELETE FROM run_stats WHERE run_id=?').run(runId)
    ctx.stmt("UPDATE runs SET state='deleted' WHERE id=?").run(runId)
    return true
  }),

  cmd('lock-run', 'write', ['run-id', 'user'], (ctx, a) => lockRun(ctx, a.int(0), true, a.strOrNull(1))),
  cmd('unlock-run', 'write', ['run-id', 'user'], (ctx, a) => lockRun(ctx, a.int(0), false, a.strOrNull(1))),
  cmd('lock/unlock-run', 'write', ['run-id', 'lock', 'unlock', 'user'], (ctx, a) => {
    const lock = !a.isNull(1)
    const unlock = !a.isNull(2)
    if (lock === unlock) a.fail(1, 'and param 3 (unlock): exactly one must be true')
    return lockRun(ctx, a.int(0), lock, a.strOrNull(3))
  }),

  cmd('set-run-status', 'write', ['run-id', 'status', 'msg'], (ctx, a) => {
    const runId = a.int(0)
    requireRun(ctx, runId)
    const status = a.str(1)
    ctx.stmt('UPDATE runs SET status=?, comment=coalesce(?, comment) WHERE id=?').run(status, a.strOrNull(2), runId)
    return status
  }),
  cmd('get-run-status', 'read', ['run-id'], (ctx, a) =>
    (ctx.stmt('SELECT status FROM runs WHERE id=?').pluck().get(a.int(0)) as string | undefined) ?? null),
  cmd('get-run-state', 'read', ['run-id'], (ctx, a) =>
    (ctx.stmt('SELECT state FROM runs WHERE id=?').pluck().get(a.int(0)) as string | undefined) ?? null),
  // api.scm classes it as a write (not in api:read-only-queries): a read-only area refuses it.
  cmd('get-run-state-status', 'write', ['run-id'], (ctx, a) => {
    const row = ctx.stmt('SELECT state, status FROM runs WHERE id=?').get(a.int(0)) as { state: string, status: string } | undefined
    return row === undefined ? null : [row.state, row.status]
  }, 'none'),
  cmd('set-run-state-status', 'write', ['run-id', 'state', 'status'], (ctx, a) => {
    const runId = a.int(0)
    requireRun(ctx, runId)
    ctx.stmt('UPDATE runs SET state=coalesce(?, state), status=coalesce(?, status) WHERE id=?').run(a.strOrNull(1), a.strOrNull(2), runId)
    return true
  }),
  // The state and status given are only hints, as in newer Megatest: the run takes the roll-up
  // of its toplevel tests (§4), or the hint while it has none.
  cmd('set-state-status-and-roll-up-run', 'write', ['run-id', 'state', 'status'], (ctx, a) => {
    const runId = a.int(0)
    requireRun(ctx, runId)
    return rollUpRun(ctx, runId, { state: a.strOrNull(1), status: a.strOrNull(2) })
  }),

  // api.scm classes it as a write (not in api:read-only-queries): a read-only area refuses it.
  cmd('get-raw-run-stats', 'write', ['run-id'], (ctx, a) =>
    (ctx.stmt(`SELECT state, status, count(id) AS n FROM tests
      WHERE run_id=? AND NOT (uname='n/a' AND item_path='') GROUP BY state, status ORDER BY state, status`)
      .all(a.int(0)) as Array<{ state: string, status: string, n: number }>).map(r => [r.state, r.status, r.n]), 'none'),

  cmd('update-run-stats', 'write', ['run-id', 'stats'], (ctx, a) => {
    const runId = a.int(0)
    const stats = a.raw(1)
    if (!Array.isArray(stats)) a.fail(1, 'must be a list of [state, status, count]')
    const del = ctx.stmt('DELETE FROM run_stats WHERE run_id=? AND state=? AND status=?')
    const ins = ctx.stmt('INSERT INTO run_stats (run_id, state, status, count) VALUES (?, ?, ?, ?)')
    for (const [j, s] of (stats as unknown[]).entries()) {
      if (!Array.isArray(s) || s.length !== 3 || typeof s[0] !== 'string' || typeof s[1] !== 'string' || !Number.isSafeInteger(s[2])) {
        return a.fail(1, `element ${j + 1} must be [state, status, count]`)
      }
      del.run(runId, s[0], s[1])
      ins.run(runId, s[0], s[1], s[2])
    }
    return true
  }),

  // db:get-run-stats: [runname, netstate, count] per live run over all its tests, then the
  // totals, in Megatest's order: the "Totals" rows first, then the runs oldest first, each
  // run's (and the totals') netstates in ascending order.
  cmd('get-run-stats', 'read', [], (ctx) => {
    const runs = ctx.stmt("SELECT id, runname FROM runs WHERE state != 'deleted' ORDER BY event_time DESC, id DESC").all() as Array<{ id: number, runname: string }>
    const per = ctx.stmt(`SELECT CASE WHEN state='COMPLETED' THEN status ELSE state END AS netstate, count(id) AS n
      FROM tests WHERE run_id=? GROUP BY netstate`)
    const totals = new Map<string, number>()
    const runRows: unknown[][] = []
    for (const r of [...runs].reverse()) {
      const counts = (per.all(r.id) as Array<{ netstate: string | null, n: number }>).filter(c => typeof c.netstate === 'string') as Array<{ netstate: string, n: number }>
      counts.sort((x, y) => x.netstate < y.netstate ? -1 : x.netstate > y.netstate ? 1 : 0)
      for (const c of counts) {
        totals.set(c.netstate, (totals.get(c.netstate) ?? 0) + c.n)
        runRows.push([r.runname, c.netstate, c.n])
      }
    }
    const totalRows = [...totals.entries()].sort(([x], [y]) => x < y ? -1 : x > y ? 1 : 0).map(([st, n]) => ['Totals', st, n])
    return [...totalRows, ...runRows]
  }),

  // runs.scm: (rmt:get-run-name-from-id run-id)
  cmd('get-run-name-from-id', 'read', ['run-id'], (ctx, a) =>
    (ctx.stmt('SELECT runname FROM runs WHERE id=?').pluck().get(a.int(0)) as string | undefined) ?? null),

  // tests.scm: (rmt:get-num-runs "%"): runname LIKE runpatt, deleted runs left out.
  cmd('get-num-runs', 'read', ['runpatt'], (ctx, a) =>
    ctx.stmt("SELECT count(id) FROM runs WHERE runname LIKE ? AND state != 'deleted'").pluck().get(a.strOr(0, '%')) as number),

  // Live runs, newest event_time first.
  cmd('get-all-run-ids', 'read', [], (ctx) =>
    ctx.stmt("SELECT id FROM runs WHERE state != 'deleted' ORDER BY event_time DESC, id DESC").pluck().all() as number[]),

  // rmt.scm: the live runs with the same target as run-id, run-id itself left out; newest id first.
  cmd('get-prev-run-ids', 'read', ['run-id'], (ctx, a) => {
    const runId = a.int(0)
    const kv = keyValsOf(ctx, runId)
    if (kv === null) return []
    const where = andAll([...kv.map(([k, v]) => ({ sql: `${ident(k)}=?`, params: [v as SqlValue] })),
      { sql: "state != 'deleted' AND id != ?", params: [runId] }])
    return ctx.stmt(`SELECT id FROM runs WHERE ${where.sql} ORDER BY id DESC`).pluck().all(...where.params) as number[]
  }),

  // runs.scm (-rerun of a run): event_time = now.
  cmd('update-run-event_time', 'write', ['run-id'], (ctx, a) => {
    const runId = a.int(0)
    requireRun(ctx, runId)
    ctx.stmt('UPDATE runs SET event_time=? WHERE id=?').run(ctx.now(), runId)
    return true
  }),

  // db:simple-get-runs: the newest count runs whose runname matches runpatt and whose
  // target (key values joined by "/") is LIKE target, returned oldest first as Megatest
  // conses them; each {target, id, runname, state, status, owner, event_time}.
  cmd('simple-get-runs', 'read', ['runpatt', 'count', 'offset', 'target'], (ctx, a) => {
    const count = a.intOrNull(1)
    const offset = a.intOr(2, 0)
    const target = targetSql(ctx)
    const where = andAll([pattToLike('runname', a.strOrNull(0)), { sql: `${target} LIKE ?`, params: [a.strOr(3, '%')] },
      { sql: "state != 'deleted'", params: [] }])
    const rows = ctx.stmt(`SELECT ${target} AS target, id, runname, state, status, owner, event_time FROM runs
      WHERE ${where.sql} ORDER BY event_time DESC, id DESC LIMIT ? OFFSET ?`)
      .all(...where.params, count === null || count <= 0 ? -1 : count, Math.max(0, offset))
    return rows.reverse()
  }),

  // db:get-run-times: per run matching runpatt (LIKE) and target (LIKE), its wall time in
  // minutes, max(event_time + run_duration) - min(event_time) of its tests; newest run first.
  cmd('get-run-times', 'read', ['runpatt', 'targetpatt'], (ctx, a) => {
    const target = targetSql(ctx, 'r.')
    return (ctx.stmt(`SELECT r.runname AS runname, (max(t.event_time + t.run_duration) - min(t.event_time)) / 60 AS runtime, ${target} AS target
      FROM tests t JOIN runs r ON t.run_id=r.id WHERE r.runname LIKE ? AND ${target} LIKE ? GROUP BY t.run_id ORDER BY t.run_id DESC`)
      .all(a.strOr(0, '%'), a.strOr(1, '%')) as Array<{ runname: string, runtime: number, target: string }>).map(r => [r.runname, r.runtime, r.target])
  }),

  // db:get-test-times: [testname, item_path, run_duration] of every test of the run with
  // that runname and target (exact); newest test first.
  cmd('get-test-times', 'read', ['runname', 'target'], (ctx, a) => {
    const target = targetSql(ctx, 'r.')
    return (ctx.stmt(`SELECT t.testname AS testname, t.item_path AS item_path, t.run_duration AS run_duration
      FROM tests t JOIN runs r ON t.run_id=r.id WHERE r.runname=? AND ${target}=? ORDER BY t.id DESC`)
      .all(a.str(0), a.str(1)) as Array<{ testname: string, item_path: string, run_duration: number }>).map(r => [r.testname, r.item_path, r.run_duration])
  }),

  // db:get-main-run-stats: the run_stats rows of a live run, [state, status, count], last written first.
  // Not in api:read-only-queries, so a write by Megatest's class (a read-only area refuses it).
  cmd('get-main-run-stats', 'write', ['run-id'], (ctx, a) =>
    (ctx.stmt(`SELECT state, status, count FROM run_stats WHERE run_id=? AND run_id IN (SELECT id FROM runs WHERE state NOT IN ('DELETED','deleted'))
      ORDER BY id DESC`).all(a.int(0)) as Array<{ state: string, status: string, count: number }>).map(r => [r.state, r.status, r.count]), 'none'),

  // db:get-run-ids-matching-target: runs whose keys match target's "/"-separated parts (LIKE,
  // paired with keynames) and whose runname is LIKE runname; newest id first. res, testpatt,
  // statepatt and statuspatt are accepted and unused, as in Megatest.
  cmd('get-run-ids-matching-target', 'read', ['keynames', 'target', 'res', 'runname', 'testpatt', 'statepatt', 'statuspatt'], (ctx, a) => {
    const names = a.strList(0)
    for (const k of names) if (!ctx.keyNames.includes(k)) a.fail(0, `names "${k}", which is not a key of area ${ctx.name} (keys: ${ctx.keyNames.join(' ')})`)
    const parts = a.strOr(1, '').split('/')
    const n = Math.min(names.length, parts.length)
    const where = andAll([...names.slice(0, n).map((k, i) => ({ sql: `${ident(k)} LIKE ?`, params: [parts[i] as string] })),
      { sql: 'runname LIKE ?', params: [a.strOr(3, '%')] }])
    return ctx.stmt(`SELECT id FROM runs WHERE ${where.sql} ORDER BY id DESC`).pluck().all(...where.params) as number[]
  })
]

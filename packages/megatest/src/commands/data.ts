import { parseCsv, csvRowToTestData } from '../csv.js'
import { STEP_FIELDS, TEST_DATA_FIELDS } from '../constants.js'
import { requireTest } from './common.js'
import { cmd, type CommandDef } from './define.js'

export const DATA_COMMANDS: CommandDef[] = [
  // Megatest defers this write (db:add-cached-write); here it commits before the reply.
  cmd('teststep-set-status!', 'write', ['run-id', 'test-id', 'stepname', 'state', 'status', 'comment', 'logfile'], (ctx, a) => {
    const id = a.int(1)
    requireTest(ctx, a.intOrNull(0), id)
    ctx.stmt(`INSERT OR REPLACE INTO test_steps (test_id, stepname, state, status, event_time, comment, logfile)
      VALUES (?, ?, ?, ?, ?, ?, ?)`).run(id, a.str(2), a.str(3), a.strOr(4, 'n/a'), ctx.now(), a.strOr(5, ''), a.strOr(6, ''))
    return true
  }),

  cmd('get-steps-for-test', 'read', ['run-id', 'test-id'], (ctx, a) => {
    const runId = a.intOrNull(0)
    const sql = `SELECT ${STEP_FIELDS.map(f => 's.' + f).join(', ')} FROM test_steps s JOIN tests t ON t.id=s.test_id
      WHERE s.test_id=? AND s.status != 'DELETED'${runId === null ? '' : ' AND t.run_id=?'} ORDER BY s.id`
    return runId === null ? ctx.stmt(sql).all(a.int(1)) : ctx.stmt(sql).all(a.int(1), runId)
  }),

  cmd('csv->test-data', 'write', ['run-id', 'test-id', 'csv'], (ctx, a) => {
    const id = a.int(1)
    requireTest(ctx, a.intOrNull(0), id)
    const rows = parseCsv(a.str(2))
    const ins = ctx.stmt(`INSERT OR REPLACE INTO test_data (test_id, category, variable, value, expected, tol, units, comment, status, type)
      VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`)
    for (const [j, fields] of rows.entries()) {
      const r = csvRowToTestData(fields)
      if (r.variable === '') a.fail(2, `row ${j + 1} has no variable (row = category,variable,value,expected,tol,units,comment,status,type)`)
      ins.run(id, r.category, r.variable, r.value, r.expected, r.tol, r.units, r.comment, r.status, r.type)
    }
    return rows.length
  }),

  cmd('read-test-data', 'read', ['run-id', 'test-id', 'category-patt'], (ctx, a) => {
    const runId = a.intOrNull(0)
    const sql = `SELECT ${TEST_DATA_FIELDS.map(f => 'd.' + f).join(', ')} FROM test_data d JOIN tests t ON t.id=d.test_id
      WHERE d.test_id=? AND d.category LIKE ? AND d.status != 'DELETED'${runId === null ? '' : ' AND t.run_id=?'}
      ORDER BY d.category, d.variable`
    const args = [a.int(1), a.strOr(2, '%')]
    return runId === null ? ctx.stmt(sql).all(...args) : ctx.stmt(sql).all(...args, runId)
  }),

  cmd('get-steps-info-by-id', 'read', ['test-step-id'], (ctx, a) =>
    ctx.stmt(`SELECT ${STEP_FIELDS.join(', ')} FROM test_steps WHERE id=?`).get(a.int(0)) ?? null),

  // Like get-steps-for-test without the comment field (db:get-steps-data).
  cmd('get-steps-data', 'read', ['run-id', 'test-id'], (ctx, a) => {
    const runId = a.intOrNull(0)
    const cols = STEP_FIELDS.filter(f => f !== 'comment').map(f => 's.' + f).join(', ')
    const sql = `SELECT ${cols} FROM test_steps s JOIN tests t ON t.id=s.test_id
      WHERE s.test_id=? AND s.status != 'DELETED'${runId === null ? '' : ' AND t.run_id=?'} ORDER BY s.id`
    return runId === null ? ctx.stmt(sql).all(a.int(1)) : ctx.stmt(sql).all(a.int(1), runId)
  }),

  cmd('get-data-info-by-id', 'read', ['test-data-id'], (ctx, a) =>
    ctx.stmt(`SELECT ${TEST_DATA_FIELDS.join(', ')} FROM test_data WHERE id=?`).get(a.int(0)) ?? null)
]

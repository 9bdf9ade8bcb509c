import { test } from 'node:test'
import assert from 'node:assert/strict'
import { GENERAL_CALL_STATEMENTS, TEST_RECORD_FIELDS } from '../src/index.js'
import { fixture, KV, markRan, seedRun } from './helpers.js'

const all = [null, null, null, null, null, null, null, null, null, null, null] as const

test('general-call runs every named statement with bound values', async (t) => {
  let clock = 10_000
  const f = fixture(t, { now: () => clock })
  const s = await seedRun(f)
  const a = s.items.a as number
  const gc = async (stmt: string, ...args: unknown[]): Promise<void> => assert.equal(await f.c('general-call', stmt, s.run, ...args), true)
  clock = 10_100
  await gc('set-test-start-time', a)
  await gc('test-set-log', 'logs/a.html', a)
  await gc('test-set-rundir-shortdir', '/runs/foo/a', 'foo/a', 'foo', 'a', s.run)
  await gc('update-test-rundat', a, 10_100, 1.5, 1000, 20, 33)
  await gc('update-cpuload-diskfree', 2.5, 900, a)
  await gc('update-run-duration', 42, a)
  await gc('update-uname-host', 'Linux 6', 'node7', a)
  await gc('pass-fail-counts', 3, 1, a)
  let rec = await f.c('get-test-info-by-id', s.run, a)
  assert.deepEqual(Object.keys(rec), [...TEST_RECORD_FIELDS])
  assert.equal(rec.event_time, 10_100)
  assert.equal(rec.final_logf, 'logs/a.html')
  assert.equal(rec.rundir, '/runs/foo/a')
  assert.equal(rec.shortdir, 'foo/a')
  assert.equal(rec.cpuload, 2.5)
  assert.equal(rec.diskfree, 900)
  assert.equal(rec.run_duration, 42)
  assert.equal(rec.uname, 'Linux 6')
  assert.equal(rec.host, 'node7')
  const db = f.peek()
  assert.deepEqual(db.prepare('SELECT test_id, update_time, cpuload, diskfree, diskusage, run_duration FROM test_rundat').all(),
    [{ test_id: a, update_time: 10_100, cpuload: 1.5, diskfree: 1000, diskusage: 20, run_duration: 33 }])
  await gc('test_data-pf-rollup', a, a, a, a)
  rec = await f.c('get-test-info-by-id', s.run, a)
  assert.equal(rec.status, 'FAIL', 'fail_count 1 makes the status FAIL')
  await f.c('set-state-status-and-roll-up-items', s.run, 'foo', 'a', 'COMPLETED', 'FAIL', null)
  await f.c('set-state-status-and-roll-up-items', s.run, 'foo', 'b', 'COMPLETED', 'PASS', null)
  await gc('update-pass-fail-counts', 'foo', 'foo', 'foo')
  assert.deepEqual(db.prepare('SELECT fail_count, pass_count FROM tests WHERE id=?').get(s.top), { fail_count: 1, pass_count: 1 })
  await f.c('teststep-set-status!', s.run, a, 'build', 'start', '-', '', '')
  await f.c('csv->test-data', s.run, a, 'c,v,1,1,0')
  await gc('delete-test-step-records', a)
  await gc('delete-test-data-records', a)
  assert.deepEqual(await f.c('get-steps-for-test', s.run, a), [])
  assert.deepEqual(await f.c('read-test-data', s.run, a, '%'), [])
  assert.equal(GENERAL_CALL_STATEMENTS.length, 20)
})

test('general-call keeps to its run: the run_id filters Megatest forgot', async (t) => {
  const f = fixture(t)
  const s1 = await seedRun(f, 'one')
  const s2 = await seedRun(f, 'two')
  await f.c('general-call', 'test-set-rundir-shortdir', s1.run, '/one/foo', 'foo', 'foo', '', s1.run)
  assert.equal((await f.c('get-test-info-by-id', s1.run, s1.top)).rundir, '/one/foo')
  assert.equal((await f.c('get-test-info-by-id', s2.run, s2.top)).rundir, '/tmp/badname', 'the other run is untouched')
  await assert.rejects(f.c('general-call', 'update-run-duration', s2.run, 5, s1.items.a), (e: any) => e.code === 'MEGATEST_ERROR' && /test id/.test(e.message))
  await assert.rejects(f.c('general-call', 'register-test', s1.run, s2.run, 'x', ''), (e: any) => e.code === 'BAD_MESSAGE')
  await assert.rejects(f.c('general-call', 'drop-tables', s1.run), (e: any) => e.code === 'BAD_MESSAGE' && /drop-tables/.test(e.message))
  await assert.rejects(f.c('general-call', 'update-run-duration', s1.run, 'long', s1.items.a), (e: any) => e.code === 'BAD_MESSAGE' && /run-duration/.test(e.message))
})

test('insert-test upserts a full row from a column alist; get-test-id finds it', async (t) => {
  const f = fixture(t)
  const run = await f.c('register-run', KV('v1', 'x86'), 'r', 'new', 'n/a', 'u', '')
  const id = await f.c('insert-test', run, [['testname', 'imported'], ['item_path', 'i1'], ['state', 'COMPLETED'], ['status', 'PASS'], ['host', 'h9']])
  assert.equal(await f.c('get-test-id', run, 'imported', 'i1'), id)
  assert.equal(await f.c('insert-test', run, { testname: 'imported', item_path: 'i1', status: 'FAIL' }), id)
  const rec = await f.c('get-test-info-by-id', run, id)
  assert.deepEqual([rec.state, rec.status, rec.host], ['COMPLETED', 'FAIL', 'h9'])
  assert.equal(await f.c('get-test-id', run, 'imported', 'nope'), null)
  await assert.rejects(f.c('insert-test', run, [['testname', 'x'], ['secret', 1]]), (e: any) => e.code === 'BAD_MESSAGE' && /secret/.test(e.message))
  await assert.rejects(f.c('insert-test', run, [['state', 'x']]), (e: any) => e.code === 'BAD_MESSAGE' && /testname/.test(e.message))
})

test('get-test-info-by-id is scoped to its run', async (t) => {
  const f = fixture(t)
  const s1 = await seedRun(f, 'one')
  const s2 = await seedRun(f, 'two')
  assert.equal((await f.c('get-test-info-by-id', s1.run, s1.bar)).testname, 'bar')
  assert.equal(await f.c('get-test-info-by-id', s2.run, s1.bar), null)
  assert.equal((await f.c('get-test-info-by-id', null, s1.bar)).id, s1.bar)
})

test('get-tests-for-run: patterns, state and status lists, not-in, sorting, qryvals, paging, last-update, dashboard mode', async (t) => {
  const f = fixture(t)
  const s = await seedRun(f)
  await f.c('set-state-status-and-roll-up-items', s.run, 'foo', 'a', 'COMPLETED', 'PASS', null)
  await f.c('set-state-status-and-roll-up-items', s.run, 'foo', 'b', 'COMPLETED', 'FAIL', null)
  await f.c('set-state-status-and-roll-up-items', s.run, 'foo', 'c', 'RUNNING', 'n/a', null)
  const names = (rows: any[]): string[] => rows.map(r => `${r.testname}/${r.item_path}`)
  const q = async (...p: unknown[]): Promise<any[]> => await f.c('get-tests-for-run', s.run, ...p)
  // Megatest conses each row onto its list: the rows come in the query's order reversed.
  assert.deepEqual(names(await q(null, null, null, 0, null, null, 'testname', 'asc')), ['foo/c', 'foo/b', 'foo/a', 'foo/', 'bar/'])
  assert.deepEqual(names(await q('foo/', null, null, 0, null, null, 'testname')), ['foo/'], '"test/" is the toplevel only')
  assert.deepEqual(names(await q('foo/%', null, null, 0, null, null, 'testname')), ['foo/c', 'foo/b', 'foo/a', 'foo/'])
  assert.deepEqual(names(await q('foo/[ab],ba*', null, null, 0, null, null, 'testname')), ['foo/b', 'foo/a', 'bar/'])
  assert.deepEqual(names(await q('%', ['COMPLETED'], ['FAIL'], 0, null, null, 'testname')), ['foo/b'])
  assert.deepEqual(names(await q('%', ['COMPLETED', 'RUNNING'], null, 0, null, true, 'testname')), ['bar/'], 'foo/ is RUNNING by roll-up')
  assert.deepEqual(names(await q('%', null, null, 1, 2, null, 'testname', 'desc')), ['foo/a', 'foo/b'], 'offset and limit apply to the query')
  // shortlist: db:test-short-record->norm makes full records, with placeholders in the fields not read.
  const [short] = await q('foo/a', null, null, 0, null, null, null, null, 'shortlist')
  assert.deepEqual(Object.keys(short), [...TEST_RECORD_FIELDS])
  assert.deepEqual([short.id, short.run_id, short.testname, short.item_path, short.state, short.status, short.rundir, short.event_time],
    [s.items.a, s.run, 'foo', 'a', 'COMPLETED', 'PASS', '-', -1])
  assert.deepEqual(await q('foo/a', null, null, 0, null, null, null, null, ['id', 'last_update']).then(r => Object.keys(r[0])), ['id', 'last_update'])
  const byStatus = names(await q('foo/%', null, null, 0, null, null, 'statestatus', 'asc'))
  assert.deepEqual(byStatus, ['foo/c', 'foo/', 'foo/a', 'foo/b'], 'state then status (FAIL sorts before PASS), reversed')
  // Dashboard mode: COMPLETED tests with one of the statuses, or other tests in one of the states.
  assert.deepEqual(names(await q('%', ['NOT_STARTED'], ['FAIL'], 0, null, null, 'testname', null, null, null, 'dashboard')), ['foo/b', 'bar/'])
  assert.deepEqual(names(await q('%', ['NOT_STARTED'], ['FAIL'], 0, null, true, 'testname', null, null, null, 'dashboard')), ['foo/c', 'foo/a', 'foo/'],
    'not-in: COMPLETED without those statuses, others outside those states')
  assert.deepEqual(names(await q('foo/%', null, ['PASS'], 0, null, null, 'testname', null, null, null, 'dashboard')), ['foo/a'], 'one list alone is a plain filter')
  // With last-update, deleted rows are included so a dashboard sees them go.
  const db = f.peek()
  const mark = db.prepare('SELECT max(last_update) FROM tests').pluck().get() as number
  assert.equal((await q(null, null, null, 0, null, null, null, null, null, mark + 1)).length, 0)
  await f.c('test-set-state-status', s.run, s.bar, 'DELETED', null, null)
  assert.ok(names(await q(null, null, null, 0, null, null, null, null, null, 0)).includes('bar/'))
  assert.ok(!names(await q(null, null, null, 0, null, null, null, null, null, null)).includes('bar/'))
  await assert.rejects(q(null, null, null, 0, null, null, 'id; DROP TABLE tests'), (e: any) => e.code === 'BAD_MESSAGE' && /sort-by/.test(e.message))
  await assert.rejects(q(null, null, null, 0, null, null, 'testname', 'sideways'), (e: any) => e.code === 'BAD_MESSAGE' && /sort-order/.test(e.message))
  await assert.rejects(q(null, 'COMPLETED'), (e: any) => e.code === 'BAD_MESSAGE' && /states/.test(e.message))
  // run-id null: every run.
  const s2 = await seedRun(f, 'second', ['z'])
  const every = await f.c('get-tests-for-run', null, 'foo/z', ...all.slice(2))
  assert.deepEqual(every.map((r: any) => r.id), [s2.items.z])
})

test('test-set-state-status, top process pid', async (t) => {
  const f = fixture(t)
  const s = await seedRun(f)
  await f.c('test-set-state-status', s.run, s.bar, 'RUNNING', null, 'started by hand')
  const rec = await f.c('get-test-info-by-id', s.run, s.bar)
  assert.deepEqual([rec.state, rec.status, rec.comment], ['RUNNING', 'n/a', 'started by hand'])
  assert.equal(await f.c('test-set-top-process-pid', s.run, s.bar, 4321), 4321)
  assert.equal(await f.c('test-get-top-process-pid', s.run, s.bar), 4321)
  assert.equal((await f.c('get-test-info-by-id', s.run, s.bar)).attemptnum, 4321, 'stored in attemptnum, as Megatest does')
  assert.equal(await f.c('test-get-top-process-pid', s.run, 999), null)
})

test('running counts honour run-id, testname and jobgroup, and skip never-ran parents', async (t) => {
  const f = fixture(t)
  const s1 = await seedRun(f, 'one')
  const s2 = await seedRun(f, 'two')
  for (const s of [s1, s2]) {
    for (const id of Object.values(s.items)) await markRan(f, s.run, id)
    await markRan(f, s.run, s.bar)
  }
  await f.c('set-state-status-and-roll-up-items', s1.run, 'foo', 'a', 'RUNNING', 'n/a', null)
  await f.c('set-state-status-and-roll-up-items', s1.run, 'foo', 'b', 'LAUNCHED', 'n/a', null)
  await f.c('set-state-status-and-roll-up-items', s1.run, 'bar', '', 'REMOTEHOSTSTART', 'n/a', null)
  await f.c('set-state-status-and-roll-up-items', s2.run, 'foo', 'a', 'RUNNING', 'n/a', null)
  await f.c('set-state-status-and-roll-up-items', s2.run, 'foo', 'c', 'COMPLETED', 'PASS', null)
  // foo's toplevels are RUNNING by roll-up but never ran themselves: not counted.
  assert.equal(await f.c('get-count-tests-running', null), 4)
  assert.equal(await f.c('get-count-tests-running', s1.run), 3)
  assert.equal(await f.c('get-count-tests-running-for-run-id', s2.run), 2, 'Megatest\'s run-id variant counts the never-ran RUNNING toplevel too')
  assert.equal(await f.c('get-count-tests-running-for-testname', s1.run, 'foo'), 2)
  assert.equal(await f.c('get-count-tests-running-for-testname', null, 'foo'), 3)
  await f.c('testmeta-add-record', 'bar')
  await f.c('testmeta-update-field', 'bar', 'jobgroup', 'heavy')
  assert.equal(await f.c('get-count-tests-running-in-jobgroup', null, 'heavy'), 1)
  assert.equal(await f.c('get-count-tests-running-in-jobgroup', s2.run, 'heavy'), 0)
  assert.equal(await f.c('get-not-completed-cnt', s2.run), 4, 'foo (rolled up), foo/a, foo/b, bar')
})

test('get-prereqs-not-met in normal, toplevel, itemwait and exclusive modes', async (t) => {
  const f = fixture(t)
  const s = await seedRun(f)
  const names = (r: any[]): string[] => r.map(x => typeof x === 'string' ? x : `${x.testname}/${x.item_path}`)
  // Nothing of "ghost" exists; bar has not run.
  assert.deepEqual(names(await f.c('get-prereqs-not-met', s.run, ['ghost', 'bar'], 'foo', '', 'normal', null)), ['ghost', 'bar/'])
  await f.c('set-state-status-and-roll-up-items', s.run, 'bar', '', 'COMPLETED', 'FAIL', null)
  assert.deepEqual(names(await f.c('get-prereqs-not-met', s.run, ['bar'], 'foo', '', 'normal', null)), ['bar/'], 'FAIL is not well-ended')
  assert.deepEqual(await f.c('get-prereqs-not-met', s.run, ['bar'], 'foo', '', 'toplevel', null), [], 'toplevel mode takes any status')
  assert.deepEqual(await f.c('get-prereqs-not-met', s.run, [], 'foo', '', 'normal', null), [])
  // itemwait: item b of foo waits for item b of foo2.
  await f.c('general-call', 'register-test', s.run, s.run, 'foo2', '')
  await f.c('general-call', 'register-test', s.run, s.run, 'foo2', 'b')
  await f.c('general-call', 'register-test', s.run, s.run, 'foo2', 'c')
  assert.equal((await f.c('get-prereqs-not-met', s.run, ['foo2'], 'foo', 'b', 'itemwait', null)).length, 3)
  await f.c('set-state-status-and-roll-up-items', s.run, 'foo2', 'b', 'COMPLETED', 'PASS', null)
  assert.deepEqual(await f.c('get-prereqs-not-met', s.run, ['foo2'], 'foo', 'b', 'itemwait', null), [])
  assert.equal((await f.c('get-prereqs-not-met', s.run, ['foo2'], 'foo', 'c', 'itemwait', null)).length, 3)
  // exclusive: a same-name test running in another run blocks.
  const other = await seedRun(f, 'other')
  await markRan(f, other.run, other.bar)
  await f.c('set-state-status-and-roll-up-items', other.run, 'bar', '', 'RUNNING', 'n/a', null)
  const ex = await f.c('get-prereqs-not-met', s.run, [], 'bar', '', 'exclusive', null)
  assert.deepEqual(ex.map((r: any) => r.id), [other.bar])
  await assert.rejects(f.c('get-prereqs-not-met', s.run, ['bar'], 'foo', '', 'sometimes', null), (e: any) => e.code === 'BAD_MESSAGE' && /mode/.test(e.message))
})

test('have-incompletes? and mark-incomplete find tests with neither progress nor heartbeat', async (t) => {
  const clock = Math.floor(Date.now() / 1000)
  const f = fixture(t, { now: () => clock })
  const run = await f.c('register-run', KV('v1', 'x86'), 'r', 'RUNNING', 'n/a', 'u', '')
  const old = clock - 20_000
  const stuck = await f.c('insert-test', run, { testname: 'stuck', state: 'RUNNING', status: 'n/a', uname: 'Linux', event_time: old, run_duration: 10, last_update: old })
  const alive = await f.c('insert-test', run, { testname: 'alive', state: 'RUNNING', status: 'n/a', uname: 'Linux', event_time: old, run_duration: 10 })
  const fresh = await f.c('insert-test', run, { testname: 'fresh', state: 'RUNNING', status: 'n/a', uname: 'Linux', event_time: clock - 60, last_update: old })
  assert.equal(await f.c('have-incompletes?', run, 7200), true)
  assert.equal(await f.c('have-incompletes?', run, 30_000), false)
  assert.deepEqual(await f.c('mark-incomplete', run, 7200), [stuck])
  const rec = await f.c('get-test-info-by-id', run, stuck)
  assert.deepEqual([rec.state, rec.status], ['COMPLETED', 'DEAD'])
  for (const id of [alive, fresh]) assert.equal((await f.c('get-test-info-by-id', run, id)).state, 'RUNNING')
  assert.equal(await f.c('have-incompletes?', run, 7200), false)
  assert.equal(await f.c('get-run-state', run), 'RUNNING', 'the run rolls up and is still running')
})

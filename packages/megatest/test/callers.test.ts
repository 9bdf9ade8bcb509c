/**
 * The calls Megatest's own code makes, with the argument counts and order of its call
 * sites (v1.65 launch.scm, tests.scm, runs.scm, rmt.scm, db.scm), against a real SQLite
 * area. Each test names the call site it copies.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { fixture, KV, markRan, seedRun } from './helpers.js'

test('general-call test-set-rundir-shortdir with launch.scm\'s five values (the run-id repeated last)', async (t) => {
  const f = fixture(t)
  const s1 = await seedRun(f, 'one')
  const s2 = await seedRun(f, 'two')
  // (rmt:general-call 'test-set-rundir-shortdir run-id lnkpathf test-path testname item-path run-id)
  assert.equal(await f.c('general-call', 'test-set-rundir-shortdir', s1.run, '/lt/v1/x86/one/foo/a', '/runs/v1/x86/one/foo/a', 'foo', 'a', s1.run), true)
  // the toplevel: (rmt:general-call 'test-set-rundir-shortdir run-id lnkpath lnkpath testname "" run-id)
  await f.c('general-call', 'test-set-rundir-shortdir', s1.run, '/lt/v1/x86/one/foo', '/lt/v1/x86/one/foo', 'foo', '', s1.run)
  const a = await f.c('get-test-info-by-id', s1.run, s1.items.a)
  assert.deepEqual([a.rundir, a.shortdir], ['/lt/v1/x86/one/foo/a', '/runs/v1/x86/one/foo/a'])
  assert.equal((await f.c('get-test-info-by-id', s1.run, s1.top)).rundir, '/lt/v1/x86/one/foo')
  assert.equal((await f.c('get-test-info-by-id', s2.run, s2.items.a)).rundir, '/tmp/badname', 'the other run is untouched')
  // general-call's run-id may be #f: the statement's own run-id is used.
  await f.c('general-call', 'test-set-rundir-shortdir', null, '/lt/two/bar', 'two/bar', 'bar', '', s2.run)
  assert.equal((await f.c('get-test-info-by-id', s2.run, s2.bar)).rundir, '/lt/two/bar')
  await assert.rejects(f.c('general-call', 'test-set-rundir-shortdir', s1.run, '/x', 'x', 'foo', 'a', s2.run),
    (e: any) => e.code === 'BAD_MESSAGE' && /run-id/.test(e.message))
  await assert.rejects(f.c('general-call', 'test-set-rundir-shortdir', null, '/x', 'x', 'foo', 'a'),
    (e: any) => e.code === 'BAD_MESSAGE' && /run-id is required/.test(e.message))
})

test('general-call update-test-rundat with tests.scm\'s six values (update-time second)', async (t) => {
  const f = fixture(t, { now: () => 50_000 })
  const s = await seedRun(f)
  const a = s.items.a as number
  // (rmt:general-call 'update-test-rundat run-id test-id (current-seconds) (or cpuload -1) (or diskfree -1) -1 (or minutes -1))
  await f.c('general-call', 'update-test-rundat', s.run, a, 49_990, 0.75, 123456, -1, 3)
  // five values: this project's earlier shape, without the update time
  await f.c('general-call', 'update-test-rundat', s.run, a, 1.5, 1000, 20, 4)
  const rows = f.peek().prepare('SELECT test_id, update_time, cpuload, diskfree, diskusage, run_duration FROM test_rundat ORDER BY id').all()
  assert.deepEqual(rows, [
    { test_id: a, update_time: 49_990, cpuload: 0.75, diskfree: 123456, diskusage: -1, run_duration: 3 },
    { test_id: a, update_time: 50_000, cpuload: 1.5, diskfree: 1000, diskusage: 20, run_duration: 4 }
  ])
  await assert.rejects(f.c('general-call', 'update-test-rundat', s.run, a, 1, 2, 3, 4, 5, 6), (e: any) => e.code === 'BAD_MESSAGE')
})

test('general-call pass-fail-counts takes pass then fail, as db:test-data-rollup sends them', async (t) => {
  const f = fixture(t)
  const s = await seedRun(f)
  // (db:general-call dbstruct 'pass-fail-counts (list pass-count fail-count test-id))
  await f.c('general-call', 'pass-fail-counts', s.run, 7, 1, s.bar)
  assert.deepEqual(f.peek().prepare('SELECT pass_count, fail_count FROM tests WHERE id=?').get(s.bar), { pass_count: 7, fail_count: 1 })
  await f.c('general-call', 'test_data-pf-rollup', s.run, s.bar, s.bar, s.bar, s.bar)
  assert.equal((await f.c('get-test-info-by-id', s.run, s.bar)).status, 'FAIL', 'one failure makes it FAIL')
})

test('general-call set-test-comment, tests:test-set-toplog, state-status(-msg) and the other db:queries statements', async (t) => {
  const f = fixture(t)
  const s = await seedRun(f)
  const a = s.items.a as number
  const gc = async (stmt: string, ...args: unknown[]): Promise<void> => assert.equal(await f.c('general-call', stmt, s.run, ...args), true)
  const rec = async (id: number): Promise<any> => await f.c('get-test-info-by-id', s.run, id)
  // tests.scm: (rmt:general-call 'set-test-comment run-id cmt test-id)
  await gc('set-test-comment', 'waived: known flake', a)
  assert.equal((await rec(a)).comment, 'waived: known flake')
  // tests.scm: (rmt:general-call 'tests:test-set-toplog run-id logf run-id test-name)
  await gc('tests:test-set-toplog', 'megatest-rollup-foo.html', s.run, 'foo')
  assert.equal((await rec(s.top)).final_logf, 'megatest-rollup-foo.html')
  assert.equal((await rec(a)).final_logf, 'logs/final.log', 'items keep theirs')
  await assert.rejects(f.c('general-call', 'tests:test-set-toplog', s.run, 'x.html', s.run + 1, 'foo'), (e: any) => e.code === 'BAD_MESSAGE')
  // mt.scm: (rmt:general-call 'state-status run-id newstate newstatus test-id), and -msg with the comment
  await gc('state-status', 'RUNNING', 'n/a', a)
  assert.deepEqual([(await rec(a)).state, (await rec(a)).status], ['RUNNING', 'n/a'])
  await gc('state-status-msg', 'COMPLETED', 'PASS', 'all good', a)
  const r = await rec(a)
  assert.deepEqual([r.state, r.status, r.comment], ['COMPLETED', 'PASS', 'all good'])
  await gc('set-test-state', 'KILLREQ', s.bar)
  await gc('set-test-status', 'ABORT', s.bar)
  assert.deepEqual([(await rec(s.bar)).state, (await rec(s.bar)).status], ['KILLREQ', 'ABORT'], 'set-test-status sets the status (upstream\'s sets the state)')
  await gc('top-test-set-running', 'foo', s.run)
  assert.equal((await rec(s.top)).state, 'RUNNING')
  await assert.rejects(f.c('general-call', 'state-status', s.run, 'RUNNING', 'n/a', 99999), (e: any) => e.code === 'MEGATEST_ERROR')
})

test('get-testinfo-state-status (launch.scm at every test end) and get-tests-for-run-state-status', async (t) => {
  const f = fixture(t)
  const s = await seedRun(f)
  await f.c('set-state-status-and-roll-up-items', s.run, 'foo', 'b', 'COMPLETED', 'FAIL', null)
  // (rmt:get-testinfo-state-status run-id test-id)
  const r = await f.c('get-testinfo-state-status', s.run, s.items.b)
  assert.deepEqual([r.id, r.run_id, r.testname, r.item_path, r.state, r.status], [s.items.b, s.run, 'foo', 'b', 'COMPLETED', 'FAIL'])
  assert.deepEqual([r.event_time, r.rundir, r.final_logf], [-1, '-', '-'], 'the rest are Megatest\'s placeholders')
  assert.equal(await f.c('get-testinfo-state-status', s.run, 424242), null)
  assert.equal(await f.c('get-testinfo-state-status', s.run + 1, s.items.b), null, 'a test of another run')
  const all = await f.c('get-tests-for-run-state-status', s.run, 'foo/%')
  assert.deepEqual(all.map((x: any) => x.item_path), ['c', 'b', 'a', ''], 'newest id first, as Megatest conses them')
})

test('test-toplevel-num-items, test-get-logfile-info, test-get-rundir-from-test-id, test-get-records-for-index-file', async (t) => {
  const f = fixture(t)
  const s = await seedRun(f)
  // runs.scm: (rmt:test-toplevel-num-items run-id test-name)
  assert.equal(await f.c('test-toplevel-num-items', s.run, 'foo'), 3)
  assert.equal(await f.c('test-toplevel-num-items', s.run, 'bar'), 0)
  await f.c('test-set-state-status', s.run, s.items.c, 'DELETED', null, null)
  assert.equal(await f.c('test-toplevel-num-items', s.run, 'foo'), 2, 'deleted items do not count')
  // tests.scm: (rmt:test-get-logfile-info run-id test-name) -> (rundir final_logf)
  await f.c('general-call', 'test-set-rundir-shortdir', s.run, '/lt/foo', '/lt/foo', 'foo', '', s.run)
  assert.deepEqual(await f.c('test-get-logfile-info', s.run, 'foo'), ['/lt/foo', 'logs/final.log'])
  assert.equal(await f.c('test-get-logfile-info', s.run, 'nosuch'), null)
  assert.equal(await f.c('test-get-rundir-from-test-id', s.run, s.top), '/lt/foo')
  assert.equal(await f.c('test-get-rundir-from-test-id', s.run, 99999), null)
  const idx = await f.c('test-get-records-for-index-file', s.run, 'foo')
  assert.deepEqual(idx.map((x: any) => x.item_path), ['c', 'b', 'a'])
  assert.deepEqual(Object.keys(idx[0]), ['id', 'item_path', 'state', 'status', 'run_duration', 'final_logf', 'comment'])
})

test('get-matching-previous-test-run-records: the newest record of each test in the other runs of the same target', async (t) => {
  let clock = 1000
  const f = fixture(t, { now: () => clock })
  const old = await seedRun(f, 'old')
  await f.c('set-state-status-and-roll-up-items', old.run, 'foo', 'a', 'COMPLETED', 'FAIL', null)
  clock = 2000
  const mid = await seedRun(f, 'mid')
  await f.c('set-state-status-and-roll-up-items', mid.run, 'foo', 'a', 'COMPLETED', 'PASS', null)
  const other = await f.c('register-run', KV('v2', 'x86'), 'othertarget', 'new', 'n/a', 'u', '')
  await f.c('general-call', 'register-test', other, other, 'foo', 'a')
  clock = 3000
  const now = await seedRun(f, 'now')
  // runs.scm: (rmt:get-matching-previous-test-run-records new-run-id "%" "%"), and per test
  const prev = await f.c('get-matching-previous-test-run-records', now.run, 'foo', 'a')
  assert.equal(prev.length, 1)
  assert.deepEqual([prev[0].run_id, prev[0].status], [mid.run, 'PASS'], 'the youngest wins; the other target is not looked at')
  const every = await f.c('get-matching-previous-test-run-records', now.run, '%', '%')
  assert.deepEqual(every.map((x: any) => `${x.testname}/${x.item_path}`), ['bar/', 'foo/', 'foo/a', 'foo/b', 'foo/c'])
  assert.ok(every.every((x: any) => x.run_id === mid.run))
  assert.deepEqual(await f.c('get-matching-previous-test-run-records', 999, 'foo', 'a'), [])
})

test('get-tests-for-run-mindata: db:get-tests-for-run with the dashboard\'s short fields, deleted tests included', async (t) => {
  const f = fixture(t)
  const s = await seedRun(f)
  await f.c('set-state-status-and-roll-up-items', s.run, 'foo', 'a', 'COMPLETED', 'PASS', null)
  await f.c('test-set-state-status', s.run, s.bar, 'DELETED', null, null)
  // (rmt:get-tests-for-run-mindata run-id testpatt states status not-in)
  const rows = await f.c('get-tests-for-run-mindata', s.run, '%', [], [], false)
  assert.deepEqual(Object.keys(rows[0]), ['id', 'run_id', 'testname', 'state', 'status', 'event_time', 'item_path'])
  assert.deepEqual(rows.map((r: any) => r.id), [s.bar, s.items.c, s.items.b, s.items.a, s.top])
  assert.deepEqual((await f.c('get-tests-for-run-mindata', s.run, 'foo', ['COMPLETED'], ['PASS'], false)).map((r: any) => r.id), [s.items.a])
  assert.deepEqual((await f.c('get-tests-for-run-mindata', s.run, 'foo', ['COMPLETED'], [], true)).map((r: any) => r.id), [s.items.c, s.items.b, s.top])
})

test('runs: get-run-name-from-id, get-num-runs, get-all-run-ids, get-prev-run-ids, update-run-event_time, simple-get-runs', async (t) => {
  let clock = 100
  const f = fixture(t, { now: () => clock })
  const r1 = await f.c('register-run', KV('v1', 'x86'), 'nightly-1', 'new', 'n/a', 'u', '')
  clock = 200
  const r2 = await f.c('register-run', KV('v1', 'x86'), 'nightly-2', 'new', 'n/a', 'u', '')
  clock = 300
  const r3 = await f.c('register-run', KV('v1', 'arm'), 'nightly-3', 'new', 'n/a', 'u', '')
  clock = 400
  const r4 = await f.c('register-run', KV('v1', 'x86'), 'gone', 'new', 'n/a', 'u', '')
  await f.c('delete-run', r4)
  // runs.scm: (rmt:get-run-name-from-id run-id)
  assert.equal(await f.c('get-run-name-from-id', r2), 'nightly-2')
  assert.equal(await f.c('get-run-name-from-id', 999), null)
  // tests.scm: (rmt:get-num-runs "%")
  assert.equal(await f.c('get-num-runs', '%'), 3)
  assert.equal(await f.c('get-num-runs', 'nightly-_'), 3)
  assert.equal(await f.c('get-num-runs', 'gone'), 0)
  // (rmt:get-all-run-ids): live runs, newest first
  assert.deepEqual(await f.c('get-all-run-ids'), [r3, r2, r1])
  // (rmt:get-prev-run-ids run-id): same target, not itself, not deleted
  assert.deepEqual(await f.c('get-prev-run-ids', r2), [r1])
  assert.deepEqual(await f.c('get-prev-run-ids', r3), [])
  assert.deepEqual(await f.c('get-prev-run-ids', 999), [])
  // runs.scm: (rmt:update-run-event_time new-run-id)
  clock = 500
  assert.equal(await f.c('update-run-event_time', r1), true)
  assert.deepEqual(await f.c('get-all-run-ids'), [r1, r3, r2])
  await assert.rejects(f.c('update-run-event_time', 999), (e: any) => e.code === 'MEGATEST_ERROR')
  // (rmt:simple-get-runs runpatt count offset target): the newest count, oldest first
  const simple = await f.c('simple-get-runs', 'nightly%', 2, 0, 'v1/x86')
  assert.deepEqual(simple.map((r: any) => [r.id, r.target]), [[r2, 'v1/x86'], [r1, 'v1/x86']])
  assert.deepEqual(Object.keys(simple[0]), ['target', 'id', 'runname', 'state', 'status', 'owner', 'event_time'])
  assert.deepEqual((await f.c('simple-get-runs', '%', null, null, 'v1/%')).map((r: any) => r.id), [r2, r3, r1])
})

test('delete-test-records and set-tests-state-status, as runs.scm sends them', async (t) => {
  const f = fixture(t)
  const s = await seedRun(f)
  const a = s.items.a as number
  await f.c('teststep-set-status!', s.run, a, 'build', 'start', 'n/a', '', '')
  await f.c('csv->test-data', s.run, a, 'perf,speed,10,10,1')
  await f.c('general-call', 'set-test-comment', s.run, 'note', a)
  // runs.scm (-remove-runs): (rmt:delete-test-records (db:test-get-run_id test) (db:test-get-id test))
  assert.equal(await f.c('delete-test-records', s.run, a), true)
  const r = await f.c('get-test-info-by-id', s.run, a)
  assert.deepEqual([r.state, r.status, r.comment], ['DELETED', 'n/a', ''])
  assert.deepEqual(await f.c('get-steps-for-test', s.run, a), [])
  assert.deepEqual(await f.c('read-test-data', s.run, a, '%'), [])
  await assert.rejects(f.c('delete-test-records', s.run + 1, s.bar), (e: any) => e.code === 'MEGATEST_ERROR')
  // runs.scm (allow-auto-rerun "COMPLETED/FAIL"): (rmt:set-tests-state-status run-id test-names state status "NOT_STARTED" status)
  await f.c('set-state-status-and-roll-up-items', s.run, 'foo', 'b', 'COMPLETED', 'FAIL', null)
  await f.c('set-state-status-and-roll-up-items', s.run, 'bar', '', 'COMPLETED', 'FAIL', null)
  await f.c('set-state-status-and-roll-up-items', s.run, 'foo', 'c', 'COMPLETED', 'PASS', null)
  const ids = await f.c('set-tests-state-status', s.run, ['foo', 'bar', 'nosuch'], 'COMPLETED', 'FAIL', 'NOT_STARTED', 'FAIL')
  assert.deepEqual(ids, [s.top, s.bar], 'the toplevel ids of the names that have one')
  const st = async (id: number): Promise<string> => { const x = await f.c('get-test-info-by-id', s.run, id); return `${x.state}/${x.status}` }
  assert.equal(await st(s.items.b as number), 'NOT_STARTED/FAIL')
  assert.equal(await st(s.bar), 'NOT_STARTED/FAIL')
  assert.equal(await st(s.items.c as number), 'COMPLETED/PASS', 'only COMPLETED/FAIL tests change')
  // null currstate/currstatus match any; a null newstatus falls back to currstatus (Megatest: currstate)
  await f.c('set-tests-state-status', s.run, ['fo%'], null, null, 'NOT_STARTED', 'n/a')
  assert.equal(await st(s.items.c as number), 'NOT_STARTED/n/a')
})

test('steps, data and host load by id; run and test times; run_stats; tags; paths matching a target', async (t) => {
  const f = fixture(t, { now: () => 10_000 })
  const s = await seedRun(f)
  const a = s.items.a as number
  await markRan(f, s.run, a)
  await f.c('teststep-set-status!', s.run, a, 'build', 'start', 'n/a', 'c1', 'build.log')
  await f.c('teststep-set-status!', s.run, a, 'build', 'end', 'PASS', 'c2', 'build.log')
  const steps = await f.c('get-steps-data', s.run, a)
  assert.deepEqual(steps.map((x: any) => [x.stepname, x.state, x.status]), [['build', 'start', 'n/a'], ['build', 'end', 'PASS']])
  assert.ok(!('comment' in steps[0]))
  assert.equal((await f.c('get-steps-info-by-id', steps[1].id)).comment, 'c2')
  assert.equal(await f.c('get-steps-info-by-id', 9999), null)
  await f.c('csv->test-data', s.run, a, 'perf,speed,10,10,1')
  const [d] = await f.c('read-test-data', s.run, a, '%')
  assert.equal((await f.c('get-data-info-by-id', d.id)).variable, 'speed')
  await f.c('general-call', 'update-test-rundat', s.run, a, 9_000, 2.5, 100, -1, 1)
  assert.deepEqual(await f.c('get-latest-host-load', 'host1.example.com'), [2.5, 9_000])
  assert.deepEqual(await f.c('get-latest-host-load', 'elsewhere'), [-1, 0])
  await f.c('insert-test', s.run, { testname: 'timed', event_time: 1000, run_duration: 600 })
  await f.c('insert-test', s.run, { testname: 'timed2', event_time: 1300, run_duration: 900 })
  const times = await f.c('get-test-times', 'nightly', 'v1/x86')
  assert.deepEqual(times[0], ['timed2', '', 900])
  const runTimes = await f.c('get-run-times', 'night%', 'v1/%')
  assert.equal(runTimes.length, 1)
  assert.deepEqual([runTimes[0][0], runTimes[0][2]], ['nightly', 'v1/x86'])
  await f.c('update-run-stats', s.run, [['COMPLETED', 'PASS', 3], ['RUNNING', 'n/a', 1]])
  assert.deepEqual(await f.c('get-main-run-stats', s.run), [['RUNNING', 'n/a', 1], ['COMPLETED', 'PASS', 3]])
  await f.c('testmeta-add-record', 'foo')
  await f.c('testmeta-add-record', 'bar')
  await f.c('testmeta-update-field', 'foo', 'tags', 'fast,unit')
  await f.c('testmeta-update-field', 'bar', 'tags', 'unit')
  assert.deepEqual(await f.c('get-tests-tags'), [['fast', ['foo']], ['unit', ['foo', 'bar']]])
  // rmt.scm: (rmt:get-run-ids-matching-target keynames target res runname testpatt statepatt statuspatt)
  assert.deepEqual(await f.c('get-run-ids-matching-target', ['RELEASE', 'PLATFORM'], 'v1/x%', null, '%', '%', '%', '%'), [s.run])
  assert.deepEqual(await f.c('get-run-ids-matching-target', ['RELEASE', 'PLATFORM'], 'v2/%', null, '%', '%', '%', '%'), [])
  await assert.rejects(f.c('get-run-ids-matching-target', ['NOPE'], 'v1', null, '%', '%', '%', '%'), (e: any) => e.code === 'BAD_MESSAGE')
  await f.c('general-call', 'test-set-rundir-shortdir', s.run, '/lt/foo/a', '/lt/foo/a', 'foo', 'a', s.run)
  assert.deepEqual(await f.c('test-get-paths-matching-keynames-target-new', s.run, ['RELEASE', 'PLATFORM'], 'v1/x86', ['/earlier'], 'foo/a', '%', '%', 'nightly'),
    ['/lt/foo/a', '/earlier'])
})

test('delete-old-deleted-test-records removes tests deleted over 30 days ago, with their steps and data', async (t) => {
  const now = 100 * 86400
  const f = fixture(t, { now: () => now })
  const run = await f.c('register-run', KV('v1', 'x86'), 'r', 'new', 'n/a', 'u', '')
  const oldId = await f.c('insert-test', run, { testname: 'old', state: 'DELETED', event_time: now - 31 * 86400 })
  await f.c('insert-test', run, { testname: 'recent', state: 'DELETED', event_time: now - 86400 })
  await f.c('insert-test', run, { testname: 'live', event_time: now - 90 * 86400 })
  await f.c('teststep-set-status!', run, oldId, 's', 'start', 'n/a', '', '')
  assert.equal(await f.c('delete-old-deleted-test-records'), 1)
  const db = f.peek()
  assert.deepEqual(db.prepare('SELECT testname FROM tests ORDER BY id').pluck().all(), ['recent', 'live'])
  assert.equal(db.prepare('SELECT count(*) FROM test_steps').pluck().get(), 0)
})

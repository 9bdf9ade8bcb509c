import { test } from 'node:test'
import assert from 'node:assert/strict'
import { fixture, seedRun } from './helpers.js'

test('teststep-set-status! keeps one row per (step, state); get-steps-for-test lists them in order', async (t) => {
  let clock = 700
  const f = fixture(t, { now: () => clock })
  const s = await seedRun(f)
  const a = s.items.a
  await f.c('teststep-set-status!', s.run, a, 'build', 'start', '-', '', '')
  clock = 710
  await f.c('teststep-set-status!', s.run, a, 'build', 'end', '0', 'ok', 'build.log')
  await f.c('teststep-set-status!', s.run, a, 'build', 'end', '2', 'retried', 'build2.log')
  await f.c('teststep-set-status!', s.run, a, 'test', 'start', '-', '', '')
  const steps = await f.c('get-steps-for-test', s.run, a)
  assert.deepEqual(steps.map((x: any) => [x.stepname, x.state, x.status, x.comment, x.logfile]), [
    ['build', 'start', '-', '', ''], ['build', 'end', '2', 'retried', 'build2.log'], ['test', 'start', '-', '', '']
  ])
  assert.deepEqual(Object.keys(steps[0]), ['id', 'test_id', 'stepname', 'state', 'status', 'event_time', 'logfile', 'comment'])
  assert.equal(steps[1].event_time, 710)
  assert.deepEqual(await f.c('get-steps-for-test', s.run, s.items.b), [])
  assert.deepEqual(await f.c('get-steps-for-test', s.run + 1, a), [], 'another run-id does not see them')
  await assert.rejects(f.c('teststep-set-status!', s.run, 9999, 'x', 'start', '-', '', ''), (e: any) => e.code === 'MEGATEST_ERROR')
})

test('csv->test-data computes missing statuses; read-test-data filters by category; test-data-rollup counts', async (t) => {
  const f = fixture(t)
  const s = await seedRun(f)
  const id = s.bar
  const csv = [
    '# category,variable,value,expected,tol,units,comment,status,type',
    'perf,latency,10.5,10,1,ms,within tol',
    'perf,throughput,90,100,5,ops',
    'perf,errors,0,1,<',
    'size,"bin, stripped",120,100,>=,KiB,"quoted, with comma"',
    'misc,note,hello,,,,,WARN',
    'misc,flag,1,1,0,,,pass'
  ].join('\n')
  assert.equal(await f.c('csv->test-data', s.run, id, csv), 6)
  const rows = await f.c('read-test-data', s.run, id, '%')
  assert.deepEqual(rows.map((r: any) => [r.category, r.variable, r.value, r.status]), [
    ['misc', 'flag', 1, 'pass'], ['misc', 'note', 'hello', 'WARN'],
    ['perf', 'errors', 0, 'pass'], ['perf', 'latency', 10.5, 'pass'], ['perf', 'throughput', 90, 'fail'],
    ['size', 'bin, stripped', 120, 'pass']
  ])
  assert.equal(rows[5].comment, 'quoted, with comma')
  assert.deepEqual(Object.keys(rows[0]), ['id', 'test_id', 'category', 'variable', 'value', 'expected', 'tol', 'units', 'comment', 'status', 'type'])
  assert.equal((await f.c('read-test-data', s.run, id, 'perf')).length, 3)
  assert.equal((await f.c('read-test-data', s.run, id, 'p%')).length, 3)
  // Re-sending a row replaces it (INSERT OR REPLACE on test_id, category, variable).
  await f.c('csv->test-data', s.run, id, 'perf,throughput,99,100,5,ops')
  const r = await f.c('test-data-rollup', s.run, id, 'AUTO')
  assert.deepEqual(r, { fail_count: 0, pass_count: 5, status: 'PASS' })
  await f.c('csv->test-data', s.run, id, 'perf,throughput,1,100,5,ops')
  assert.deepEqual(await f.c('test-data-rollup', s.run, id, null), { fail_count: 1, pass_count: 4, status: 'FAIL' })
  const rec = (await f.c('get-tests-for-run', s.run, 'bar', null, null, 0, null, null, null, null, ['fail_count', 'pass_count', 'status']))[0]
  assert.deepEqual(rec, { fail_count: 1, pass_count: 4, status: 'FAIL' })
  await assert.rejects(f.c('csv->test-data', s.run, id, 'perf,,1,1,0'), (e: any) => e.code === 'BAD_MESSAGE' && /row 1/.test(e.message))
  assert.equal((await f.c('read-test-data', s.run, id, '%')).length, 6, 'the bad batch wrote nothing (one transaction)')
})

test('test-data-rollup keeps WARN when data only passes', async (t) => {
  const f = fixture(t)
  const s = await seedRun(f)
  await f.c('test-set-state-status', s.run, s.bar, 'COMPLETED', 'WARN', null)
  await f.c('csv->test-data', s.run, s.bar, 'c,v,1,1,0')
  assert.deepEqual(await f.c('test-data-rollup', s.run, s.bar, null), { fail_count: 0, pass_count: 1, status: 'WARN' })
})

import { test } from 'node:test'
import assert from 'node:assert/strict'
import { fixture, KV, markRan, seedRun } from './helpers.js'

test('register-run inserts once, returns the same id, and revives a deleted run', async (t) => {
  let clock = 5000
  const f = fixture(t, { now: () => clock })
  const id = await f.c('register-run', KV('v1', 'x86'), 'nightly', 'new', 'n/a', 'alice', 'c1')
  assert.equal(await f.c('register-run', KV('v1', 'x86'), 'nightly', 'new', 'n/a', 'bob', ''), id)
  const other = await f.c('register-run', { RELEASE: 'v1', PLATFORM: 'arm' }, 'nightly', 'new', 'n/a', 'bob', '')
  assert.notEqual(other, id, 'a different target is a different run (object form of keyvals)')
  const info = await f.c('get-run-info', id)
  assert.deepEqual(info.header, ['RELEASE', 'PLATFORM', 'id', 'runname', 'state', 'status', 'owner', 'event_time', 'comment', 'fail_count', 'pass_count', 'contour'])
  assert.deepEqual(info.rows, [['v1', 'x86', id, 'nightly', 'new', 'n/a', 'alice', 5000, '', 0, 0, 'c1']])
  await f.c('delete-run', id)
  clock = 6000
  assert.equal(await f.c('register-run', KV('v1', 'x86'), 'nightly', 'RUNNING', 'n/a', 'alice', ''), id)
  assert.deepEqual(await f.c('get-run-state-status', id), ['RUNNING', 'n/a'])
  assert.equal((await f.c('get-run-info', id)).rows[0][7], 6000)
  assert.deepEqual((await f.c('get-run-info', 999)).rows, [])
})

test('register-run refuses missing, unknown and slash-holding keys with BAD_MESSAGE', async (t) => {
  const f = fixture(t)
  await assert.rejects(f.c('register-run', [['RELEASE', 'v1']], 'r', 'new', 'n/a', 'u', ''), (e: any) => e.code === 'BAD_MESSAGE' && /PLATFORM/.test(e.message))
  await assert.rejects(f.c('register-run', [...KV('v1', 'x'), ['OS', 'linux']], 'r', 'new', 'n/a', 'u', ''), (e: any) => e.code === 'BAD_MESSAGE' && /OS/.test(e.message))
  await assert.rejects(f.c('register-run', KV('v1/2', 'x'), 'r', 'new', 'n/a', 'u', ''), (e: any) => e.code === 'BAD_MESSAGE' && /keyvals/.test(e.message))
  await assert.rejects(f.c('register-run', KV('v1', 'x'), 42n as unknown, 'new'), (e: any) => e.code === 'BAD_MESSAGE' && /runname/.test(e.message))
})

test('keys, key values and targets', async (t) => {
  const f = fixture(t)
  const a = await f.c('register-run', KV('v1', 'x86'), 'r1', 'new', 'n/a', 'u', '')
  await f.c('register-run', KV('v1', 'x86'), 'r2', 'new', 'n/a', 'u', '')
  const b = await f.c('register-run', KV('v2', 'arm'), 'r1', 'new', 'n/a', 'u', '')
  assert.deepEqual(await f.c('get-keys'), ['RELEASE', 'PLATFORM'])
  assert.deepEqual(await f.c('get-key-val-pairs', a), [['RELEASE', 'v1'], ['PLATFORM', 'x86']])
  assert.deepEqual(await f.c('get-key-vals', b), ['v2', 'arm'])
  assert.equal(await f.c('get-target', b), 'v2/arm')
  assert.equal(await f.c('get-target', 777), null)
  assert.deepEqual(await f.c('get-targets'), { header: ['RELEASE', 'PLATFORM'], rows: [['v1', 'x86'], ['v2', 'arm']] })
  await f.c('delete-run', b)
  assert.deepEqual((await f.c('get-targets')).rows, [['v1', 'x86']], 'deleted runs have no live target')
})

test('get-runs filters by run and key patterns (GLOB, or LIKE when % appears); the newest count, oldest first, as Megatest conses them', async (t) => {
  let clock = 100
  const f = fixture(t, { now: () => clock++ })
  await f.c('register-run', KV('v1', 'x86'), 'nightly-1', 'new', 'n/a', 'u', '')
  await f.c('register-run', KV('v1', 'arm'), 'nightly-2', 'new', 'n/a', 'u', '')
  await f.c('register-run', KV('v2', 'x86'), 'weekly-1', 'new', 'n/a', 'u', '')
  const names = (r: any): string[] => r.rows.map((row: unknown[]) => row[3])
  assert.deepEqual(names(await f.c('get-runs', '%', null, 0, null)), ['nightly-1', 'nightly-2', 'weekly-1'])
  assert.deepEqual(names(await f.c('get-runs', 'nightly*', null, 0, null)), ['nightly-1', 'nightly-2'])
  assert.deepEqual(names(await f.c('get-runs', 'weekly%,nightly-1', null, 0, null)), ['nightly-1', 'weekly-1'])
  assert.deepEqual(names(await f.c('get-runs', '%', null, 0, [['PLATFORM', 'x86']])), ['nightly-1', 'weekly-1'])
  assert.deepEqual(names(await f.c('get-runs', '%', 2, 0, null)), ['nightly-2', 'weekly-1'], 'the newest two')
  assert.deepEqual(names(await f.c('get-runs', '%', 1, 1, null)), ['nightly-2'])
  const r = await f.c('get-runs', '%', 1, 0, null)
  assert.deepEqual(r.header, ['RELEASE', 'PLATFORM', 'id', 'runname', 'state', 'status', 'owner', 'event_time'])
})

test('get-runs-by-patt splits the target pattern over the keys and honours fields and last-update', async (t) => {
  let clock = 100
  const f = fixture(t, { now: () => clock++ })
  const a = await f.c('register-run', KV('v1', 'x86'), 'r1', 'new', 'n/a', 'u', '')
  await f.c('register-run', KV('v1', 'arm'), 'r2', 'new', 'n/a', 'u', '')
  const c = await f.c('register-run', KV('v2', 'x86'), 'r3', 'new', 'n/a', 'u', '')
  const r = await f.c('get-runs-by-patt', ['RELEASE', 'PLATFORM'], '%', '%/x86', 0, null, ['id', 'runname', 'PLATFORM'], null)
  assert.deepEqual(r, { header: ['id', 'runname', 'PLATFORM'], rows: [[a, 'r1', 'x86'], [c, 'r3', 'x86']] })
  const v1 = await f.c('get-runs-by-patt', null, 'r%', 'v1', 0, 1, null, null)
  assert.equal(v1.rows.length, 1, 'limit applies')
  assert.equal(v1.header[0], 'RELEASE')
  await assert.rejects(f.c('get-runs-by-patt', null, '%', '%', 0, null, ['id', 'password'], null), (e: any) => e.code === 'BAD_MESSAGE' && /password/.test(e.message))
  // last-update: dashboards see only what changed since, deleted runs included.
  const db = f.peek()
  const mark = (db.prepare('SELECT max(last_update) FROM runs').pluck().get() as number) + 1
  const none = await f.c('get-runs-by-patt', null, '%', '%', 0, null, ['id'], mark)
  assert.deepEqual(none.rows, [])
  const all = await f.c('get-runs-by-patt', null, '%', '%', 0, null, ['id'], 0)
  assert.equal(all.rows.length, 3)
})

test('delete-run removes steps and data, marks tests DELETED and the run deleted; a locked run is refused', async (t) => {
  const f = fixture(t)
  const s = await seedRun(f)
  await f.c('teststep-set-status!', s.run, s.items.a, 'build', 'start', '-', '', '')
  await f.c('csv->test-data', s.run, s.items.a, 'c,v,1,1,0')
  await f.c('lock-run', s.run, 'admin')
  await assert.rejects(f.c('delete-run', s.run), (e: any) => e.code === 'MEGATEST_ERROR' && /locked/.test(e.message))
  await f.c('unlock-run', s.run, 'admin')
  assert.equal(await f.c('delete-run', s.run), true)
  assert.equal(await f.c('get-run-state', s.run), 'deleted')
  const db = f.peek()
  assert.equal(db.prepare('SELECT count(*) FROM test_steps').pluck().get(), 0)
  assert.equal(db.prepare('SELECT count(*) FROM test_data').pluck().get(), 0)
  assert.deepEqual(db.prepare('SELECT DISTINCT state FROM tests').pluck().all(), ['DELETED'])
  assert.deepEqual(await f.c('get-tests-for-run', s.run, null, null, null, null, null, null, null, null, null, null, null), [])
  assert.deepEqual((await f.c('get-runs', '%', null, 0, null)).rows, [])
  await assert.rejects(f.c('delete-run', 4242), (e: any) => e.code === 'MEGATEST_ERROR' && /4242/.test(e.message))
})

test('lock-run / unlock-run / lock/unlock-run keep the previous state and log access', async (t) => {
  const f = fixture(t)
  const id = await f.c('register-run', KV('v1', 'x86'), 'r', 'RUNNING', 'n/a', 'u', '')
  await f.c('lock-run', id, 'carol')
  assert.equal(await f.c('get-run-state', id), 'locked')
  await f.c('unlock-run', id, 'carol')
  assert.equal(await f.c('get-run-state', id), 'RUNNING')
  await f.c('lock/unlock-run', id, true, false, 'dave')
  assert.equal(await f.c('get-run-state', id), 'locked')
  await f.c('lock/unlock-run', id, false, true, 'dave')
  assert.equal(await f.c('get-run-state', id), 'RUNNING')
  await assert.rejects(f.c('lock/unlock-run', id, true, true, 'dave'), (e: any) => e.code === 'BAD_MESSAGE')
  const log = f.peek().prepare('SELECT user, args FROM access_log ORDER BY id').all()
  assert.deepEqual(log, [
    { user: 'carol', args: `lock-run ${id}` }, { user: 'carol', args: `unlock-run ${id}` },
    { user: 'dave', args: `lock-run ${id}` }, { user: 'dave', args: `unlock-run ${id}` }
  ])
})

test('run status and state setters and getters', async (t) => {
  const f = fixture(t)
  const id = await f.c('register-run', KV('v1', 'x86'), 'r', 'new', 'n/a', 'u', '')
  assert.equal(await f.c('set-run-status', id, 'WARN', 'flaky infra'), 'WARN')
  assert.equal(await f.c('get-run-status', id), 'WARN')
  assert.equal((await f.c('get-run-info', id)).rows[0][8], 'flaky infra')
  await f.c('set-run-state-status', id, 'RUNNING', null)
  assert.deepEqual(await f.c('get-run-state-status', id), ['RUNNING', 'WARN'])
  assert.equal(await f.c('get-run-state', id), 'RUNNING')
  // No tests yet: nothing to roll up from, so the hint is taken.
  assert.deepEqual(await f.c('set-state-status-and-roll-up-run', id, 'COMPLETED', 'PASS'), { id, state: 'COMPLETED', status: 'PASS' })
  assert.deepEqual(await f.c('get-run-state-status', id), ['COMPLETED', 'PASS'])
  assert.equal(await f.c('get-run-status', 31337), null)
  await assert.rejects(f.c('set-run-status', 31337, 'PASS', null), (e: any) => e.code === 'MEGATEST_ERROR')
})

test('raw run stats, update-run-stats and get-run-stats', async (t) => {
  const f = fixture(t)
  const s = await seedRun(f)
  for (const id of Object.values(s.items)) await markRan(f, s.run, id)
  await markRan(f, s.run, s.bar)
  await f.c('set-state-status-and-roll-up-items', s.run, 'foo', 'a', 'COMPLETED', 'PASS', null)
  await f.c('set-state-status-and-roll-up-items', s.run, 'foo', 'b', 'COMPLETED', 'FAIL', null)
  await f.c('set-state-status-and-roll-up-items', s.run, 'foo', 'c', 'RUNNING', 'n/a', null)
  const raw = await f.c('get-raw-run-stats', s.run)
  // foo's toplevel never ran itself (uname n/a), so it is not counted.
  assert.deepEqual(raw, [['COMPLETED', 'FAIL', 1], ['COMPLETED', 'PASS', 1], ['NOT_STARTED', 'n/a', 1], ['RUNNING', 'n/a', 1]])
  assert.equal(await f.c('update-run-stats', s.run, raw), true)
  await f.c('update-run-stats', s.run, [['RUNNING', 'n/a', 0]])
  const stored = f.peek().prepare('SELECT state, status, count FROM run_stats WHERE run_id=? ORDER BY state, status').all(s.run)
  assert.deepEqual(stored, [
    { state: 'COMPLETED', status: 'FAIL', count: 1 }, { state: 'COMPLETED', status: 'PASS', count: 1 },
    { state: 'NOT_STARTED', status: 'n/a', count: 1 }, { state: 'RUNNING', status: 'n/a', count: 0 }
  ])
  await assert.rejects(f.c('update-run-stats', s.run, [['RUNNING', 'n/a']]), (e: any) => e.code === 'BAD_MESSAGE' && /stats/.test(e.message))
  const s2 = await f.c('register-run', KV('v2', 'x86'), 'other', 'new', 'n/a', 'u', '')
  await f.c('general-call', 'register-test', s2, s2, 'solo', '')
  const solo = await f.c('get-test-id', s2, 'solo', '')
  await markRan(f, s2, solo)
  await f.c('set-state-status-and-roll-up-items', s2, solo, null, 'COMPLETED', 'PASS', null)
  // Every test counts (foo's toplevel is RUNNING by roll-up); rows are keyed by run name,
  // Totals first, then the runs oldest first, as db:get-run-stats returns them.
  assert.deepEqual(await f.c('get-run-stats'), [
    ['Totals', 'FAIL', 1], ['Totals', 'NOT_STARTED', 1], ['Totals', 'PASS', 2], ['Totals', 'RUNNING', 2],
    ['nightly', 'FAIL', 1], ['nightly', 'NOT_STARTED', 1], ['nightly', 'PASS', 1], ['nightly', 'RUNNING', 2],
    ['other', 'PASS', 1]
  ])
})

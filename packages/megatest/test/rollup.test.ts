import { test } from 'node:test'
import assert from 'node:assert/strict'
import { rollUpGroups } from '../src/index.js'
import { fixture, seedRun } from './helpers.js'

const top = async (f: Awaited<ReturnType<typeof fixture>>, run: number): Promise<[string, string]> => {
  const rec = await f.c('get-test-info-by-id', run, await f.c('get-test-id', run, 'foo', ''))
  return [rec.state, rec.status]
}

test('an item running makes its parent RUNNING and the run RUNNING', async (t) => {
  const f = fixture(t)
  const s = await seedRun(f)
  const r = await f.c('set-state-status-and-roll-up-items', s.run, 'foo', 'a', 'RUNNING', 'n/a', 'go')
  assert.deepEqual(r.toplevel, { id: s.top, state: 'RUNNING', status: 'n/a' })
  assert.deepEqual(await top(f, s.run), ['RUNNING', 'n/a'])
  assert.deepEqual(await f.c('get-run-state-status', s.run), ['RUNNING', 'n/a'])
  const item = await f.c('get-test-info-by-id', s.run, s.items.a)
  assert.equal(item.comment, 'go')
})

test('all items COMPLETED with PASS and one FAIL: parent COMPLETED/FAIL', async (t) => {
  const f = fixture(t)
  const s = await seedRun(f)
  await f.c('set-state-status-and-roll-up-items', s.run, 'foo', 'a', 'COMPLETED', 'PASS', null)
  await f.c('set-state-status-and-roll-up-items', s.run, 'foo', 'b', 'COMPLETED', 'FAIL', null)
  // While c has not started the parent is NOT_STARTED/STARTED (Megatest's "partly done").
  assert.deepEqual(await top(f, s.run), ['NOT_STARTED', 'STARTED'])
  // By id (test-set-state-status-by-id is roll-up-items with a test id).
  await f.c('test-set-state-status-by-id', s.run, s.items.c, 'COMPLETED', 'PASS', null)
  assert.deepEqual(await top(f, s.run), ['COMPLETED', 'FAIL'])
})

test('PREQ_FAIL on one item: parent NOT_STARTED/PREQ_FAIL, however the others ended', async (t) => {
  const f = fixture(t)
  const s = await seedRun(f)
  await f.c('set-state-status-and-roll-up-items', s.run, 'foo', 'a', 'COMPLETED', 'PASS', null)
  await f.c('set-state-status-and-roll-up-items', s.run, 'foo', 'b', 'COMPLETED', 'PASS', null)
  await f.c('set-state-status-and-roll-up-items', s.run, 'foo', 'c', 'NOT_STARTED', 'PREQ_FAIL', 'waiton failed')
  assert.deepEqual(await top(f, s.run), ['NOT_STARTED', 'PREQ_FAIL'])
})

test('NOT_STARTED with a status outside not-started-ok: parent COMPLETED/STARTED', async (t) => {
  const f = fixture(t)
  const s = await seedRun(f)
  await f.c('set-state-status-and-roll-up-items', s.run, 'foo', 'a', 'COMPLETED', 'PASS', null)
  await f.c('set-state-status-and-roll-up-items', s.run, 'foo', 'b', 'COMPLETED', 'PASS', null)
  await f.c('set-state-status-and-roll-up-items', s.run, 'foo', 'c', 'NOT_STARTED', 'BLOCKED', null)
  assert.deepEqual(await top(f, s.run), ['COMPLETED', 'STARTED'])
})

test('a running item wins over PREQ_FAIL and bad NOT_STARTED for the state', async (t) => {
  const f = fixture(t)
  const s = await seedRun(f)
  await f.c('set-state-status-and-roll-up-items', s.run, 'foo', 'a', 'LAUNCHED', 'n/a', null)
  await f.c('set-state-status-and-roll-up-items', s.run, 'foo', 'b', 'NOT_STARTED', 'PREQ_FAIL', null)
  assert.deepEqual(await top(f, s.run), ['RUNNING', 'PREQ_FAIL'])
})

test('rollUpGroups follows db.scm: ranks, non-completes and group counting', () => {
  assert.deepEqual(rollUpGroups([{ state: 'COMPLETED', status: 'PASS', count: 5 }, { state: 'COMPLETED', status: 'WARN', count: 1 }]),
    { state: 'COMPLETED', status: 'WARN' })
  assert.deepEqual(rollUpGroups([{ state: 'COMPLETED', status: 'PASS', count: 1 }, { state: 'KILLED', status: 'KILLED', count: 1 }]),
    { state: 'KILLED', status: 'PASS' }, 'KILLED is a non-complete state; KILLED status has no rank')
  assert.deepEqual(rollUpGroups([{ state: 'COMPLETED', status: 'ABORT', count: 1 }, { state: 'COMPLETED', status: 'FAIL', count: 9 }]),
    { state: 'COMPLETED', status: 'ABORT' })
  assert.deepEqual(rollUpGroups([{ state: 'REMOTEHOSTSTART', status: 'n/a', count: 1 }]), { state: 'RUNNING', status: 'n/a' })
  assert.deepEqual(rollUpGroups([{ state: 'NOT_STARTED', status: 'n/a', count: 3 }]), { state: 'NOT_STARTED', status: 'STARTED' })
})

test('the run rolls up its toplevel tests by the item rule: completes with the worst status once all have', async (t) => {
  const f = fixture(t)
  const s = await seedRun(f)
  await f.c('set-state-status-and-roll-up-items', s.run, 'foo', 'a', 'COMPLETED', 'PASS', null)
  await f.c('set-state-status-and-roll-up-items', s.run, 'foo', 'b', 'COMPLETED', 'WARN', null)
  await f.c('set-state-status-and-roll-up-items', s.run, 'foo', 'c', 'COMPLETED', 'PASS', null)
  // foo is done (WARN) but bar has not started: NOT_STARTED/STARTED, as Megatest reads it.
  assert.deepEqual(await f.c('get-run-state-status', s.run), ['NOT_STARTED', 'STARTED'])
  const r = await f.c('set-state-status-and-roll-up-items', s.run, 'bar', '', 'COMPLETED', 'PASS', null)
  assert.deepEqual(r.run, { id: s.run, state: 'COMPLETED', status: 'WARN' })
  assert.deepEqual(await f.c('get-run-state-status', s.run), ['COMPLETED', 'WARN'])
})

test('a locked run keeps state locked while its status follows the roll-up', async (t) => {
  const f = fixture(t)
  const s = await seedRun(f, 'r', ['a'])
  await f.c('lock-run', s.run, 'admin')
  await f.c('set-state-status-and-roll-up-items', s.run, 'foo', 'a', 'COMPLETED', 'FAIL', null)
  await f.c('set-state-status-and-roll-up-items', s.run, 'bar', '', 'COMPLETED', 'PASS', null)
  assert.deepEqual(await f.c('get-run-state-status', s.run), ['locked', 'FAIL'])
  await f.c('set-state-status-and-roll-up-items', s.run, 'bar', '', 'NOT_STARTED', 'PREQ_FAIL', null)
  assert.deepEqual(await f.c('get-run-state-status', s.run), ['locked', 'PREQ_FAIL'])
  await f.c('unlock-run', s.run, 'admin')
  assert.deepEqual(await f.c('set-state-status-and-roll-up-run', s.run, null, null), { id: s.run, state: 'NOT_STARTED', status: 'PREQ_FAIL' })
})

// Issue 15's table: what the run reads in each situation, by Megatest's rule over the toplevels.
test('run roll-up cases from issue 15 follow Megatest\'s rule', async (t) => {
  const cases: Array<{ what: string, set: Array<[string, string, string, string]>, want: [string, string] }> = [
    { what: 'one test PASS, another not started', set: [['bar', '', 'COMPLETED', 'PASS']], want: ['NOT_STARTED', 'STARTED'] },
    { what: 'a prerequisite failed', set: [['bar', '', 'COMPLETED', 'FAIL'], ['foo', 'a', 'NOT_STARTED', 'PREQ_FAIL']], want: ['NOT_STARTED', 'PREQ_FAIL'] },
    { what: 'a top-level test KILLED', set: [['foo', 'a', 'COMPLETED', 'PASS'], ['bar', '', 'KILLED', 'ABORT']], want: ['KILLED', 'ABORT'] },
    { what: 'parent test RUNNING/ABORT', set: [['bar', '', 'COMPLETED', 'PASS'], ['foo', 'a', 'RUNNING', 'ABORT']], want: ['RUNNING', 'ABORT'] },
    { what: 'every toplevel COMPLETED', set: [['bar', '', 'COMPLETED', 'PASS'], ['foo', 'a', 'COMPLETED', 'WARN']], want: ['COMPLETED', 'WARN'] }
  ]
  for (const c of cases) {
    const f = fixture(t)
    const s = await seedRun(f, 'r', ['a'])
    // the runner marks the run RUNNING: only a hint once the run has tests
    await f.c('set-state-status-and-roll-up-run', s.run, 'RUNNING', 'n/a')
    for (const [name, item, state, status] of c.set) await f.c('set-state-status-and-roll-up-items', s.run, name, item, state, status, null)
    assert.deepEqual(await f.c('get-run-state-status', s.run), c.want, c.what)
    assert.deepEqual(await f.c('set-state-status-and-roll-up-run', s.run, 'RUNNING', 'n/a'), { id: s.run, state: c.want[0], status: c.want[1] }, `${c.what}: roll-up-run with a hint recomputes`)
  }
})

test('test-set-state-status does not roll up; LAUNCHED stamps event_time; AUTO asks the test data', async (t) => {
  let clock = 1_000_000
  const f = fixture(t, { now: () => clock })
  const s = await seedRun(f)
  await f.c('test-set-state-status', s.run, s.items.a, 'RUNNING', 'n/a', null)
  assert.deepEqual(await top(f, s.run), ['NOT_STARTED', 'n/a'], 'no roll-up from test-set-state-status')
  clock = 1_000_500
  await f.c('set-state-status-and-roll-up-items', s.run, s.items.b, null, 'LAUNCHED', 'n/a', null)
  assert.equal((await f.c('get-test-info-by-id', s.run, s.items.b)).event_time, 1_000_500)
  await f.c('csv->test-data', s.run, s.items.c, 'perf,speed,10,10,1\nperf,size,5,3,1')
  const r = await f.c('set-state-status-and-roll-up-items', s.run, s.items.c, null, 'COMPLETED', 'AUTO', null)
  assert.deepEqual(r.test, { id: s.items.c, state: 'COMPLETED', status: 'FAIL' })
  const rec = await f.c('get-test-info-by-id', s.run, s.items.c)
  assert.equal(rec.status, 'FAIL')
})

test('rolling up an unknown test is a MEGATEST_ERROR naming it', async (t) => {
  const f = fixture(t)
  const s = await seedRun(f)
  await assert.rejects(f.c('set-state-status-and-roll-up-items', s.run, 'nosuch', 'x', 'RUNNING', 'n/a', null),
    (e: any) => e.code === 'MEGATEST_ERROR' && /nosuch\/x/.test(e.message))
  await assert.rejects(f.c('test-set-state-status-by-id', s.run, 9999, 'RUNNING', 'n/a', null),
    (e: any) => e.code === 'MEGATEST_ERROR' && /9999/.test(e.message))
})

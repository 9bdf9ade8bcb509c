import { test } from 'node:test'
import assert from 'node:assert/strict'
import { fixture, seedRun } from './helpers.js'

test('set-var, get-var (numbers come back as numbers), del-var, inc/dec/add-var', async (t) => {
  const f = fixture(t)
  assert.equal(await f.c('set-var', 'LAST', 'abc'), 'abc')
  assert.equal(await f.c('get-var', 'LAST'), 'abc')
  await f.c('set-var', 'N', '41')
  assert.equal(await f.c('get-var', 'N'), 41)
  assert.equal(await f.c('inc-var', 'N'), 42)
  assert.equal(await f.c('dec-var', 'N', 2), 40)
  assert.equal(await f.c('add-var', 'N', 2.5), 42.5)
  assert.equal(await f.c('inc-var', 'FRESH'), 1, 'a missing var starts at 0')
  assert.equal(await f.c('get-var', 'MEGATEST_VERSION'), 1.65)
  await assert.rejects(f.c('inc-var', 'LAST'), (e: any) => e.code === 'MEGATEST_ERROR' && /LAST/.test(e.message))
  await assert.rejects(f.c('add-var', 'N'), (e: any) => e.code === 'BAD_MESSAGE' && /\(n\)/.test(e.message))
  assert.equal(await f.c('del-var', 'LAST'), true)
  assert.equal(await f.c('get-var', 'LAST'), null)
  assert.equal(await f.c('del-var', 'LAST'), false)
})

test('tasks-add, tasks-set-state-given-param-key, tasks-get-last', async (t) => {
  let clock = 100
  const f = fixture(t, { now: () => clock++ })
  const id1 = await f.c('tasks-add', 'run-tests', 'alice', 'v1/x86', 'nightly', 'foo/%', 'key=abc')
  const id2 = await f.c('tasks-add', 'run-tests', 'alice', 'v1/x86', 'nightly', 'bar', 'key=def')
  assert.ok(id2 > id1)
  assert.equal(await f.c('tasks-set-state-given-param-key', 'key=abc', 'running'), 1)
  const last = await f.c('tasks-get-last', 'v1/x86', 'nightly')
  assert.deepEqual([last.id, last.state, last.testpatt, last.params], [id2, 'new', 'bar', 'key=def'])
  assert.deepEqual(Object.keys(last), ['id', 'action', 'owner', 'state', 'target', 'name', 'testpatt', 'keylock', 'params', 'creation_time', 'execution_time'])
  await f.c('tasks-set-state-given-param-key', 'key=%', 'done')
  assert.equal((await f.c('tasks-get-last', 'v1/%', '%')).state, 'done')
  assert.equal(await f.c('tasks-get-last', 'v9', 'nightly'), null)
})

test('testmeta-add-record, -get-record, -update-field (known fields only)', async (t) => {
  const f = fixture(t)
  assert.equal(await f.c('testmeta-add-record', 'foo'), true)
  assert.equal(await f.c('testmeta-add-record', 'foo'), false, 'INSERT OR IGNORE')
  assert.equal(await f.c('testmeta-update-field', 'foo', 'author', 'matt'), true)
  assert.equal(await f.c('testmeta-update-field', 'foo', 'avg_runtime', 12.5), true)
  const rec = await f.c('testmeta-get-record', 'foo')
  assert.deepEqual([rec.testname, rec.author, rec.avg_runtime, rec.jobgroup], ['foo', 'matt', 12.5, 'default'])
  assert.equal(await f.c('testmeta-get-record', 'nope'), null)
  await assert.rejects(f.c('testmeta-update-field', 'foo', 'testname', 'x'), (e: any) => e.code === 'BAD_MESSAGE' && /field/.test(e.message))
})

test('no-sync vars and the lock: first taker wins, others see since when', async (t) => {
  let clock = 5000
  const f = fixture(t, { now: () => clock })
  assert.equal(await f.c('no-sync-set', 'LAST_UPDATE', '123'), '123')
  assert.equal(await f.c('no-sync-get/default', 'LAST_UPDATE', 0), '123')
  assert.equal(await f.c('no-sync-get/default', 'MISSING', 'dflt'), 'dflt')
  assert.equal(await f.c('no-sync-del!', 'LAST_UPDATE'), true)
  assert.equal(await f.c('no-sync-get/default', 'LAST_UPDATE', null), null)
  assert.deepEqual(await f.c('no-sync-get-lock', 'primary'), [true, 5000])
  clock = 5010
  assert.deepEqual(await f.c('no-sync-get-lock', 'primary'), [false, 5000])
  await f.c('no-sync-del!', 'primary')
  assert.deepEqual(await f.c('no-sync-get-lock', 'primary'), [true, 5010])
})

test('process registration in the no-sync db', async (t) => {
  const f = fixture(t)
  assert.equal(await f.c('register-process', 'h1', 100, 1000, 'running', 'server', 'main.db', '1.65'), true)
  await f.c('register-process', 'h2', 200, 1001, 'running', 'server', 'main.db', '1.65')
  await f.c('register-process', 'h3', 300, 1002, 'running', 'runner', 'main.db', '1.65')
  assert.deepEqual((await f.c('get-process-options', 'server', 'main.db')).map((p: any) => p.pid), [100, 200])
  assert.equal(await f.c('set-process-status', 'h2', 200, 'stopping'), true)
  assert.equal(await f.c('set-process-done', 'h1', 100, 'done'), true)
  assert.deepEqual(await f.c('get-process-options', 'server', 'main.db'), [])
  assert.equal(await f.c('set-process-done', 'nohost', 1, null), false)
})

test('get-changed-record-ids lists ids changed after a time, per table', async (t) => {
  const f = fixture(t)
  const s = await seedRun(f)
  const before = await f.c('get-changed-record-ids', 0)
  assert.deepEqual(before.map((e: any) => e[0]), ['runs', 'run_stats', 'tests', 'test_steps', 'test_data'])
  assert.equal(before[2][1].length, 5)
  const future = Math.floor(Date.now() / 1000) + 1000
  assert.deepEqual((await f.c('get-changed-record-ids', future)).map((e: any) => e[1].length), [0, 0, 0, 0, 0])
  assert.deepEqual((await f.c('get-changed-record-ids', 0))[0][1], [s.run])
})

test('login checks the area path or name and the version; ping answers the signature; kill-server flags the area', async (t) => {
  const f = fixture(t)
  assert.deepEqual(await f.c('login', f.dir, '1.65', 'client-1'), [true, 'successful login'])
  assert.deepEqual(await f.c('login', 'ci', null, null), [true, 'successful login'])
  const bad = await f.c('login', '/elsewhere', '1.65', 'x')
  assert.equal(bad[0], false)
  assert.match(bad[1], /elsewhere/)
  assert.ok(!bad[1].includes(f.dir), `the area directory must not leak: ${bad[1]}`)
  assert.equal((await f.c('login', f.dir, '1.70.2', 'x'))[0], false)
  const sig = f.svc.areas()[0]?.signature
  assert.equal(await f.c('ping'), sig)
  assert.match(String(sig), /^[0-9a-f]{32}$/)
  assert.equal(await f.c('kill-server'), true)
})

test('kill-server stops serving that area only, then tells the node through onKillServer', async (t) => {
  const { createMegatestService, OPERATOR_COMMANDS } = await import('../src/index.js')
  const { tempDir } = await import('./helpers.js')
  const killed: string[] = []
  const svc = createMegatestService({
    areas: [{ name: 'x', dir: tempDir(t), keys: ['K'] }, { name: 'y', dir: tempDir(t), keys: ['K'] }],
    onKillServer: a => killed.push(a)
  })
  t.after(() => svc.close())
  assert.deepEqual(svc.commands().filter(c => c.operator).map(c => c.name), ['kill-server'])
  assert.ok(OPERATOR_COMMANDS.has('kill-server'))
  assert.equal(await svc.callOrThrow('x', 'kill-server', []), true, 'the reply goes out first')
  await new Promise(resolve => setImmediate(resolve))
  assert.deepEqual(killed, ['x'])
  assert.deepEqual(svc.areas().map(a => a.name), ['y'])
  await assert.rejects(svc.callOrThrow('x', 'get-keys', []), (e: any) => e.code === 'UNKNOWN_AREA')
  assert.equal(await svc.callOrThrow('y', 'register-run', [[['K', 'v']], 'r', 'new', 'n/a', 'u', '']), 1, 'the other area, and the process, carry on')
})

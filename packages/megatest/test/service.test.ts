import { test } from 'node:test'
import assert from 'node:assert/strict'
import { readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { EvalMeshError } from '@evalmesh/protocol'
import { API_SCM_READS, createMegatestService, openArea } from '../src/index.js'
import { fixture, KV, tempDir } from './helpers.js'

test('a new area writes megatest.config with its [fields]; reopening reads them back', async (t) => {
  const dir = tempDir(t)
  const a = openArea({ name: 'x', dir, keys: ['RELEASE', 'PLATFORM INTEGER'] })
  a.close()
  assert.match(readFileSync(join(dir, 'megatest.config'), 'utf8'), /\[fields\]\nRELEASE TEXT\nPLATFORM INTEGER\n/)
  const b = openArea({ name: 'x', dir })
  t.after(() => b.close())
  assert.deepEqual(b.exec('get-keys'), ['RELEASE', 'PLATFORM'])
  assert.throws(() => openArea({ name: 'x', dir, keys: ['OTHER'] }), (e: any) => e.code === 'BAD_MESSAGE' && /differ/.test(e.message))
})

test('keys named like run columns, or not plain identifiers, are refused with a clear error', (t) => {
  for (const bad of ['state', 'RUNNAME', 'Event_Time', 'a-b', 'x"; DROP TABLE runs; --']) {
    assert.throws(() => openArea({ name: 'x', dir: tempDir(t), keys: ['OK', bad] }),
      (e: any) => e instanceof EvalMeshError && e.code === 'BAD_MESSAGE' && e.message.includes(bad.split(' ')[0] as string), bad)
  }
  assert.throws(() => openArea({ name: 'x', dir: tempDir(t) }), (e: any) => e.code === 'BAD_MESSAGE' && /give keys/.test(e.message))
  const dir = tempDir(t)
  writeFileSync(join(dir, 'megatest.config'), '[setup]\nmax 3\n[fields]\nstatus TEXT\n')
  assert.throws(() => openArea({ name: 'x', dir }), (e: any) => /status/.test(e.message) && /run column/.test(e.message))
})

test('a read-only area answers reads and refuses every write command with READ_ONLY', async (t) => {
  const dir = tempDir(t)
  const rw = createMegatestService({ areas: [{ name: 'ci', dir, keys: ['RELEASE', 'PLATFORM'] }] })
  const run = await rw.callOrThrow('ci', 'register-run', [KV('v1', 'x86'), 'r', 'new', 'n/a', 'u', ''])
  rw.close()
  const ro = createMegatestService({ areas: [{ name: 'ci', dir, readOnly: true }] })
  t.after(() => ro.close())
  assert.equal(await ro.callOrThrow('ci', 'get-target', [run]), 'v1/x86')
  assert.equal(ro.areas()[0]?.readOnly, true)
  for (const c of ro.commands().filter(c => c.mode === 'write')) {
    await assert.rejects(ro.callOrThrow('ci', c.name, []), (e: any) =>
      e.code === 'READ_ONLY' && e.message === `area ci is read-only: ${c.name} is a write command`, c.name)
  }
  const resp = await ro.call('ci', 'set-var', ['x', 1])
  assert.deepEqual([resp.status, resp.meta.code], ['error', 'READ_ONLY'])
  assert.throws(() => openArea({ name: 'ro', dir: tempDir(t), keys: ['K'], readOnly: true }), (e: any) => e.code === 'READ_ONLY')
})

test('past the load limit the service answers busy with a wait hint, and still answers ping', async (t) => {
  const f = fixture(t, {}, 2)
  const calls = [1, 2, 3, 4, 5].map(async () => await f.svc.call('ci', 'get-keys', []))
  const ping = f.svc.call('ci', 'ping', [])
  const res = await Promise.all(calls)
  assert.deepEqual(res.map(r => r.status), ['ok', 'ok', 'busy', 'busy', 'busy'])
  // A busy answer leaves at once, so each late caller sees the two running ones plus itself.
  assert.deepEqual(res.map(r => r.meta.wait), [0, 0, 1, 1, 1])
  assert.equal(res[2]?.result, 1, 'result of a busy reply is the seconds to wait, as in Megatest')
  assert.match(res[4]?.errmsg ?? '', /3 requests in flight \(limit 2\)/)
  const p = await ping
  assert.deepEqual([p.status, p.meta.sstate], ['ok', 'running'])
  assert.equal(p.result, f.svc.areas()[0]?.signature)
  const thrown = [1, 2, 3].map(async () => await f.svc.callOrThrow('ci', 'get-keys', []))
  const settled = await Promise.allSettled(thrown)
  const reason = (settled[2] as PromiseRejectedResult).reason
  assert.deepEqual([reason.code, reason.data.wait], ['MEGATEST_BUSY', 1])
  assert.equal(f.svc.inFlight(), 0)
  assert.deepEqual(await f.c('get-keys'), ['RELEASE', 'PLATFORM'], 'after the burst, calls succeed again')
})

test('unknown area, unknown command and bad params', async (t) => {
  const f = fixture(t)
  const r = await f.svc.call('nowhere', 'get-keys', [])
  assert.deepEqual([r.status, r.meta.code, r.result], ['error', 'UNKNOWN_AREA', null])
  assert.match(r.errmsg, /nowhere/)
  await assert.rejects(f.svc.callOrThrow('nowhere', 'ping', []), (e: any) => e.code === 'UNKNOWN_AREA' && e.wire === 702)
  await assert.rejects(f.c('drop-everything'), (e: any) => e.code === 'UNKNOWN_COMMAND' && e.wire === 704 && /drop-everything/.test(e.message))
  await assert.rejects(f.c('get-run-info', 'one'), (e: any) => e.code === 'BAD_MESSAGE' && /param 1 \(run-id\)/.test(e.message))
  await assert.rejects(f.c('get-keys', 'extra'), (e: any) => e.code === 'BAD_MESSAGE' && /at most 0/.test(e.message))
  await assert.rejects(f.c('set-var', 'x', { nested: true }), (e: any) => e.code === 'BAD_MESSAGE' && /\(val\)/.test(e.message))
  await assert.rejects(f.svc.callOrThrow('ci', 'get-keys', 'notalist' as unknown as unknown[]), (e: any) => e.code === 'BAD_MESSAGE')
  const resp = await f.svc.call('ci', 'get-test-id', [1, 2, 3, 4])
  assert.deepEqual([resp.status, resp.meta.code], ['error', 'BAD_MESSAGE'])
  assert.deepEqual(await f.c('get-keys'), ['RELEASE', 'PLATFORM'], 'still serving after bad input')
})

test('commands() lists every command with its Megatest class and params; areas() and the idle tracker', async (t) => {
  const f = fixture(t)
  const cmds = f.svc.commands()
  const by = new Map(cmds.map(c => [c.name, c]))
  const required = ['register-run', 'get-run-info', 'get-runs', 'get-runs-by-patt', 'get-keys', 'get-key-val-pairs', 'get-key-vals',
    'get-target', 'get-targets', 'delete-run', 'lock-run', 'unlock-run', 'set-run-status', 'get-run-status', 'set-run-state-status',
    'get-run-state', 'get-run-state-status', 'set-state-status-and-roll-up-run', 'get-raw-run-stats', 'update-run-stats',
    'get-run-stats', 'general-call', 'insert-test', 'get-test-id', 'get-test-info-by-id', 'get-tests-for-run',
    'test-set-state-status', 'test-set-state-status-by-id', 'set-state-status-and-roll-up-items', 'test-set-top-process-pid',
    'test-get-top-process-pid', 'get-count-tests-running', 'get-count-tests-running-for-run-id',
    'get-count-tests-running-for-testname', 'get-count-tests-running-in-jobgroup', 'get-not-completed-cnt',
    'get-prereqs-not-met', 'teststep-set-status!', 'get-steps-for-test', 'csv->test-data', 'read-test-data', 'test-data-rollup',
    'set-var', 'get-var', 'del-var', 'inc-var', 'dec-var', 'add-var', 'tasks-add', 'tasks-set-state-given-param-key',
    'tasks-get-last', 'testmeta-add-record', 'testmeta-get-record', 'testmeta-update-field', 'no-sync-set', 'no-sync-get/default',
    'no-sync-del!', 'no-sync-get-lock', 'have-incompletes?', 'mark-incomplete', 'get-changed-record-ids', 'login', 'ping', 'kill-server']
  for (const name of required) assert.ok(by.has(name), name)
  for (const c of cmds) {
    // api:read-only-queries are reads, all else writes; ping is answered before Megatest's dispatch, in any mode.
    const megatestRead = API_SCM_READS.has(c.name) || c.name === 'ping'
    assert.equal(c.mode, megatestRead ? 'read' : 'write', c.name)
  }
  assert.deepEqual(by.get('set-state-status-and-roll-up-items')?.params, ['run-id', 'test-name-or-id', 'item-path', 'state', 'status', 'comment'])
  const [info] = f.svc.areas()
  assert.deepEqual([info?.name, info?.dir, info?.readOnly, info?.keys], ['ci', f.dir, false, ['RELEASE', 'PLATFORM']])
  const before = f.svc.lastAccessAt()
  await new Promise(resolve => setTimeout(resolve, 5))
  await f.c('get-keys')
  assert.ok(f.svc.lastAccessAt() > before)
  assert.equal(f.svc.idleSeconds(f.svc.lastAccessAt() + 600_000), 600)
  assert.ok((f.svc.areas()[0]?.lastAccessAt ?? 0) >= f.svc.lastAccessAt())
})

test('addArea / removeArea / close', async (t) => {
  const f = fixture(t)
  const info = f.svc.addArea({ name: 'second', dir: tempDir(t), keys: ['TARGET'] })
  assert.equal(info.name, 'second')
  assert.throws(() => f.svc.addArea({ name: 'second', dir: tempDir(t), keys: ['TARGET'] }), /already served/)
  assert.deepEqual(await f.svc.callOrThrow('second', 'get-keys', []), ['TARGET'])
  assert.equal(f.svc.removeArea('second'), true)
  assert.equal(f.svc.removeArea('second'), false)
  await assert.rejects(f.svc.callOrThrow('second', 'get-keys', []), (e: any) => e.code === 'UNKNOWN_AREA')
  f.svc.close()
  const r = await f.svc.call('ci', 'get-keys', [])
  assert.equal(r.status, 'error')
})

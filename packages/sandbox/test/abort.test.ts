import { test, after } from 'node:test'
import assert from 'node:assert/strict'
import { setTimeout as sleep } from 'node:timers/promises'
import { startSandbox, run, value } from './helpers.js'

const sandbox = await startSandbox({ limits: { timeoutMs: 20_000, memoryMb: 32, resultBytes: 65536, outputBytes: 1024 } })
after(() => sandbox.stop())

test('abort stops a running evaluation; the session starts fresh', async () => {
  await value(sandbox, 'g = "old"', 'ab/1')
  const running = run(sandbox, 'for (;;) {}', 'ab/1', { timeoutMs: 20_000 }, 'ab/run')
  await sleep(200)
  assert.equal(sandbox.abort('ab/run'), true)
  const r = await running
  assert.equal(r.ok, false)
  assert.equal(!r.ok && r.error.code, 'ABORTED')
  assert.match(!r.ok ? r.error.message : '', /aborted while running.*starts fresh/)
  assert.equal(await value(sandbox, 'typeof g', 'ab/1'), 'undefined')
  assert.equal(sandbox.abort('ab/run'), false)
})

test('abort drops a queued evaluation without running it', async () => {
  await value(sandbox, 'ran = false', 'ab/2')
  const blocker = run(sandbox, 'new Promise(() => {})', 'ab/2', { timeoutMs: 600 }, 'ab/blocker')
  const queued = run(sandbox, 'ran = true', 'ab/2', { timeoutMs: 20_000 }, 'ab/queued')
  assert.equal(sandbox.abort('ab/queued'), true)
  const q = await queued
  assert.equal(!q.ok && q.error.code, 'ABORTED')
  assert.match(!q.ok ? q.error.message : '', /before it started/)
  assert.equal((await blocker).ok, false)
  assert.equal(await value(sandbox, 'ran', 'ab/2'), false)
})

test('abort of an unknown txn is false', () => {
  assert.equal(sandbox.abort('nobody/1'), false)
})

test('aborting a run waiting on a host call works too', async () => {
  const hanging = await (async () => {
    const sb = await (await import('./helpers.js')).startSandbox({
      grants: ['fns.hang'],
      hostCall: () => new Promise(() => {}),
      limits: { timeoutMs: 20_000, memoryMb: 32, resultBytes: 65536, outputBytes: 1024 }
    })
    const p = run(sb, 'await fns.hang()', 'h/1', { timeoutMs: 20_000 }, 'h/1')
    await sleep(200)
    assert.equal(sb.abort('h/1'), true)
    const r = await p
    assert.equal(await value(sb, '1 + 1', 'h/1'), 2)
    await sb.stop()
    return r
  })()
  assert.equal(!hanging.ok && hanging.error.code, 'ABORTED')
})

import { test } from 'node:test'
import assert from 'node:assert/strict'
import { setTimeout as sleep } from 'node:timers/promises'
import type { Sandbox } from '../src/index.js'
import { createSandbox } from '../src/index.js'
import { startSandbox, run, value } from './helpers.js'

function nextRestart (sandbox: Sandbox): Promise<{ reason: string }> {
  return new Promise(resolve => sandbox.on('restart', resolve))
}

test('a crashed child (kill -9) fails runs in flight with SANDBOX_LOST, restarts and keeps serving', async () => {
  const sandbox = await startSandbox()
  try {
    const pid = sandbox.stats.pid!
    const inFlight = run(sandbox, 'new Promise(() => {})', 's/1', { timeoutMs: 400 })
    const restarted = nextRestart(sandbox)
    await sleep(50)
    process.kill(pid, 'SIGKILL')
    const r = await inFlight
    assert.equal(!r.ok && r.error.code, 'SANDBOX_LOST')
    assert.match(!r.ok ? r.error.message : '', /SIGKILL/)
    const info = await restarted
    assert.match(info.reason, /exited \(signal SIGKILL\)/)
    assert.equal(await value(sandbox, '6 * 7'), 42)
    assert.notEqual(sandbox.stats.pid, pid)
    assert.equal(sandbox.stats.restarts, 1)
  } finally {
    await sandbox.stop()
  }
})

test('a child that stops answering is killed and restarted by the watchdog', async () => {
  const sandbox = await startSandbox({ watchdogGraceMs: 300 })
  try {
    const pid = sandbox.stats.pid!
    const restarted = nextRestart(sandbox)
    // Not a pure form (those need no sandbox process): it names a variable.
    const inFlight = run(sandbox, 'n = 1 + 1', 's/1')
    process.kill(pid, 'SIGSTOP')
    const r = await inFlight
    assert.equal(!r.ok && r.error.code, 'SANDBOX_LOST')
    const info = await restarted
    assert.match(info.reason, /stopped answering|outlived/)
    assert.equal(await value(sandbox, '"back"'), 'back')
  } finally {
    await sandbox.stop()
  }
})

test('a catastrophic out-of-memory in an isolate costs the child, not the parent', async () => {
  const sandbox = await startSandbox({ limits: { timeoutMs: 10_000, memoryMb: 32, resultBytes: 1024, outputBytes: 1024 } })
  try {
    const restarted = nextRestart(sandbox)
    const [r, quiet] = await Promise.all([
      run(sandbox, 'Array(1e9).fill(0).length', 'oom/1', { timeoutMs: 10_000 }),
      run(sandbox, 'new Promise(() => {})', 'oom/2', { timeoutMs: 10_000 })
    ])
    assert.equal(r.ok, false)
    assert.ok(!r.ok && ['SANDBOX_LOST', 'MEMORY_LIMIT', 'EVAL_ERROR'].includes(r.error.code), !r.ok ? r.error.message : '')
    if (!r.ok && r.error.code === 'SANDBOX_LOST') {
      assert.equal(!quiet.ok && quiet.error.code, 'SANDBOX_LOST')
      await restarted
    }
    assert.equal(await value(sandbox, '"served"', 'oom/1'), 'served')
  } finally {
    await sandbox.stop()
  }
})

test('stop is clean, safe to call twice, and later runs are refused', async () => {
  const sandbox = await startSandbox()
  const pid = sandbox.stats.pid!
  await value(sandbox, 'x = 1')
  const pending = run(sandbox, 'new Promise(() => {})', 's/2', { timeoutMs: 5000 })
  await sleep(50)
  let restarts = 0
  sandbox.on('restart', () => { restarts++ })
  await Promise.all([sandbox.stop(), sandbox.stop()])
  await sandbox.stop()
  const r = await pending
  assert.equal(!r.ok && r.error.code, 'SHUTTING_DOWN')
  assert.throws(() => process.kill(pid, 0), { code: 'ESRCH' })
  const after = await run(sandbox, '1')
  assert.equal(!after.ok && after.error.code, 'SHUTTING_DOWN')
  assert.equal(restarts, 0)
})

test('bad construction input is refused with a clear error', () => {
  const hostCall = async (): Promise<unknown> => undefined
  assert.throws(() => createSandbox({ limits: { timeoutMs: -1, memoryMb: 32, resultBytes: 1, outputBytes: 1 }, grants: [], hostCall }), /limits\.timeoutMs must be a positive number/)
  assert.throws(() => createSandbox({ limits: { timeoutMs: 1, memoryMb: 32, resultBytes: 1, outputBytes: 1 }, grants: ['a.constructor'], hostCall }), /reserved segment/)
})

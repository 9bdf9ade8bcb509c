import { test } from 'node:test'
import assert from 'node:assert/strict'
import { setTimeout as sleep } from 'node:timers/promises'
import { startSandbox, run, value } from './helpers.js'

// Each case runs real isolates in real sandbox processes: a client is whoever owns the
// session key's first segment ("alice/default" belongs to alice).

const MAP_BOMB = '(()=>{const m=new Map();let i=0;while(true)m.set(i,"v"+i++)})()'

test('a catastrophic out-of-memory in one client\'s form costs that client a MEMORY_LIMIT, and another client loses nothing', async () => {
  const limits = { timeoutMs: 10_000, memoryMb: 64, resultBytes: 65536, outputBytes: 1024 }
  const sandbox = await startSandbox({ limits })
  try {
    assert.equal(await value(sandbox, 'kept = 41', 'bob/default'), 41)
    const bobsLongRun = run(sandbox, 'let end = Date.now() + 800; while (Date.now() < end); "finished"', 'bob/work', limits)
    const bomb = await run(sandbox, MAP_BOMB, 'mallory/default', limits)
    assert.equal(bomb.ok, false)
    assert.equal(!bomb.ok && bomb.error.code, 'MEMORY_LIMIT', !bomb.ok ? bomb.error.message : '')
    const bobs = await bobsLongRun
    assert.deepEqual(bobs.ok && bobs.value, 'finished', 'the other client\'s running evaluation is not lost')
    assert.equal(await value(sandbox, 'kept + 1', 'bob/default'), 42, 'the other client\'s globals are kept')
    // The attacker's next run says its context is gone, and it runs in a process of its own now.
    const next = await run(sandbox, '1 + 1', 'mallory/default', limits)
    assert.ok(next.ok && next.value === 2)
    assert.match(next.contextLost ?? '', /replaced/)
    const procs = sandbox.stats.processes ?? []
    assert.ok(procs.some(p => p.dedicated && p.clients === 1), JSON.stringify(procs))
  } finally {
    await sandbox.stop()
  }
})

test('sessions are evicted per client: one client opening many sessions never evicts another\'s', async () => {
  const sandbox = await startSandbox({ maxSessionsPerClient: 4, processes: 1 })
  try {
    assert.equal(await value(sandbox, 'mine = "bob\'s"', 'bob/default'), "bob's")
    assert.equal(await value(sandbox, 'first = 1', 'eve/s0'), 1)
    for (let i = 1; i <= 8; i++) await value(sandbox, `v = ${i}`, `eve/s${i}`)
    assert.equal(await value(sandbox, 'mine', 'bob/default'), "bob's", 'the other client keeps its session (same process)')
    const back = await run(sandbox, 'typeof first', 'eve/s0')
    assert.ok(back.ok && back.value === 'undefined', 'eve\'s oldest session was evicted')
    assert.match(back.contextLost ?? '', /evicted/, 'and the reply says so')
  } finally {
    await sandbox.stop()
  }
})

test('a client over its memory quota loses its own oldest idle session, flagged on its next use', async () => {
  const sandbox = await startSandbox({ clientMemoryMb: 40, processes: 1, limits: { timeoutMs: 5000, memoryMb: 64, resultBytes: 65536, outputBytes: 1024 } })
  try {
    const hold = async (session: string): Promise<void> => {
      const r = await run(sandbox, 'big = new Array(2_500_000).fill(0).map((_, i) => i); big.length', session, { memoryMb: 64 })
      assert.ok(r.ok, !r.ok ? r.error.message : '')
    }
    await value(sandbox, 'small = 1', 'bob/default')
    await hold('eve/a')
    await hold('eve/b')
    await hold('eve/c')
    const again = await run(sandbox, 'typeof big', 'eve/a')
    assert.ok(again.ok && again.value === 'undefined', 'the oldest session of the heavy client was dropped')
    assert.match(again.contextLost ?? '', /memory quota/)
    assert.equal(await value(sandbox, 'small', 'bob/default'), 1)
  } finally {
    await sandbox.stop()
  }
})

test('the node memory cap refuses a new session with QUOTA instead of growing without bound', async () => {
  const sandbox = await startSandbox({ maxMemoryMb: 30, processes: 1, limits: { timeoutMs: 5000, memoryMb: 64, resultBytes: 65536, outputBytes: 1024 } })
  try {
    const big = await run(sandbox, 'big = new Array(3_000_000).fill(0).map((_, i) => i); big.length', 'eve/a', { memoryMb: 64 })
    assert.ok(big.ok, !big.ok ? big.error.message : '')
    await sleep(20) // the heap figure travels with the next message from the sandbox process
    await value(sandbox, '1', 'eve/a')
    const refused = await run(sandbox, '1 + 1', 'bob/new')
    assert.equal(!refused.ok && refused.error.code, 'QUOTA')
    assert.match(!refused.ok ? refused.error.message : '', /node sandbox memory quota/)
    assert.deepEqual(!refused.ok && refused.error.data, { quota: 'sandboxMemoryMb' })
    assert.equal(await value(sandbox, 'big.length', 'eve/a'), 3_000_000, 'existing sessions keep working')
  } finally {
    await sandbox.stop()
  }
})

test('a replaced sandbox process is named on the next reply of every session it held', async () => {
  const sandbox = await startSandbox({ processes: 1 })
  try {
    await value(sandbox, 'x = 1', 'bob/default')
    const pid = sandbox.stats.pid!
    const restarted = new Promise(resolve => sandbox.on('restart', resolve))
    process.kill(pid, 'SIGKILL')
    await restarted
    const r = await run(sandbox, 'typeof x', 'bob/default')
    assert.ok(r.ok && r.value === 'undefined')
    assert.match(r.contextLost ?? '', /sandbox process serving this session was replaced/)
    const after = await run(sandbox, 'x = 2', 'bob/default')
    assert.equal(after.contextLost, undefined, 'said once')
  } finally {
    await sandbox.stop()
  }
})

test('a transient run gets a fresh context and leaves nothing behind', async () => {
  const sandbox = await startSandbox()
  try {
    await value(sandbox, 'x = 1', 'bob/default')
    const t = await sandbox.run({ txn: 't/transient', session: 'bob/~1', form: 'typeof x + ":" + (y = 5)', limits: { timeoutMs: 400, memoryMb: 32, resultBytes: 65536, outputBytes: 256 }, transient: true })
    assert.ok(t.ok && t.value === 'undefined:5')
    const again = await sandbox.run({ txn: 't/transient2', session: 'bob/~1', form: 'typeof y', limits: { timeoutMs: 400, memoryMb: 32, resultBytes: 65536, outputBytes: 256 }, transient: true })
    assert.ok(again.ok && again.value === 'undefined')
    assert.equal(await value(sandbox, 'x', 'bob/default'), 1)
  } finally {
    await sandbox.stop()
  }
})

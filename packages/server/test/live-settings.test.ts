/**
 * A running node changes its limits, quotas and functions over the control port, and
 * drains, without dropping a connection: a client stays connected throughout, its
 * session keeps its globals, and what changed is in effect for its next request.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { formatTxn, type DescribeReply } from '@evalmesh/protocol'
import { ClientConnection } from '@evalmesh/transport'
import { startServer } from '../src/index.js'
import { controlRequest } from '@evalmesh/client'

test('limits, quotas and functions change live: same connection, same session, new settings in effect', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'em-live-'))
  const module = join(dir, 'fns.mjs')
  writeFileSync(module, 'export function greet (who) { return `hello ${who}` }\n')
  const server = await startServer({ stateDir: dir, name: 'livenode', port: 0, functionsModule: module, limits: { timeoutMs: 2000 }, concurrency: 4 })
  const ctl = join(dir, 'control.sock')
  let seq = 0
  const txn = (): string => formatTxn({ client: `${server.id}.aaaaaa`, seq: ++seq })
  try {
    const conn = await ClientConnection.open({ host: '127.0.0.1', port: server.address.port, identity: server.identity, trust: server.trust })
    const evalIn = async (form: string): Promise<any> => await conn.request({ kind: 'eval', txn: txn(), form, session: 's1', wait: true })
    assert.equal((await evalIn('globalThis.kept = 41; kept + 1')).value, 42)
    assert.equal((await conn.request({ kind: 'apply', txn: txn(), fn: 'greet', args: ['ann'], wait: true }) as any).value, 'hello ann')
    const connectionId = (await controlRequest(ctl, 'status net') as any).connections[0].id

    // Limits: a shorter wall time and another concurrency; the describe says so.
    const limits = await controlRequest(ctl, 'limits timeoutMs=300 concurrency=2 queue=50 purgeSeconds=120') as any
    assert.equal(limits.ok, true, limits.error)
    assert.equal(limits.limits.timeoutMs, 300)
    await assert.rejects(evalIn('const t0 = Date.now(); while (Date.now() - t0 < 3000) {}'), (err: any) => err.code === 'TIME_LIMIT')
    assert.equal((await evalIn('kept + 1')).value, 42, 'the session keeps its global')
    // Raised again, above what the node started with (2 s): a 2.5 s busy loop now finishes.
    assert.equal((await controlRequest(ctl, 'limits timeoutMs=5000') as any).ok, true)
    assert.equal((await evalIn('const t1 = Date.now(); while (Date.now() - t1 < 2500) {}; kept')).value, 41)

    // Quotas: the scheduler's are live; the sandbox's say they need a restart.
    const q = await controlRequest(ctl, 'quota runningPerClient=1 maxQueueWaitMs=5000') as any
    assert.equal(q.ok, true, q.error)
    assert.equal(q.quotas.runningPerClient, 1)
    const fixed = await controlRequest(ctl, 'quota sandboxProcesses=9') as any
    assert.equal(fixed.ok, false)
    assert.equal(fixed.needsRestart, true)
    assert.match(fixed.error, /sandboxProcesses.*restart/)
    const bad = await controlRequest(ctl, 'limits concurrency=zero') as any
    assert.equal(bad.ok, false)
    assert.match(bad.error, /"concurrency=zero" is not NAME=N/)

    // Functions: the module edited and loaded again; greet changed, wave is new, the old names are gone.
    writeFileSync(module, 'export function wave (who) { return `bye ${who}` }\n')
    const fns = await controlRequest(ctl, 'functions load') as any
    assert.equal(fns.ok, true, fns.error)
    assert.deepEqual(fns.loaded, ['wave'])
    assert.equal((await conn.request({ kind: 'apply', txn: txn(), fn: 'wave', args: ['bob'], wait: true }) as any).value, 'bye bob')
    await assert.rejects(conn.request({ kind: 'apply', txn: txn(), fn: 'greet', args: ['x'], wait: true }), (err: any) => err.code === 'UNKNOWN_FUNCTION')
    // Forms see the new one as fns.wave.
    assert.equal((await evalIn('fns.wave(String(kept))')).value, 'bye 41')
    // A module that does not load leaves the old functions in place.
    writeFileSync(module, 'this is not javascript\n')
    const broken = await controlRequest(ctl, 'functions load') as any
    assert.equal(broken.ok, false)
    assert.match(broken.error, /functions not loaded \(the old ones stay\)/)
    assert.ok(server.functionNames().includes('wave'))

    const d = await conn.request({ kind: 'describe' }) as DescribeReply
    assert.equal(d.limits.timeoutMs, 5000)
    assert.equal(d.limits.concurrency, 2)
    assert.equal(d.limits.queueLength, 50)
    assert.equal(d.quotas.runningPerClient, 1)
    assert.equal(d.retention.purgeSeconds, 120)
    assert.equal(d.restarts, 0)
    // The same connection all along.
    assert.equal(conn.closed, false)
    assert.equal((await controlRequest(ctl, 'status net') as any).connections[0].id, connectionId)
    conn.close()
  } finally {
    await server.stop()
    rmSync(dir, { recursive: true, force: true })
  }
})

test('a draining node refuses new work with DRAINING naming where to retry; what it has goes on', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'em-drain-'))
  const server = await startServer({ stateDir: dir, name: 'drainnode', port: 0 })
  const ctl = join(dir, 'control.sock')
  try {
    const conn = await ClientConnection.open({ host: '127.0.0.1', port: server.address.port, identity: server.identity, trust: server.trust })
    const before = formatTxn({ client: `${server.id}.bbbbbb`, seq: 1 })
    const running = formatTxn({ client: `${server.id}.bbbbbb`, seq: 2 })
    await conn.request({ kind: 'eval', txn: before, form: '6 * 7', wait: true })
    const slow = conn.request({ kind: 'eval', txn: running, form: 'const t = Date.now(); while (Date.now() - t < 800) {}; "finished"', session: 'slow', wait: true })
    await new Promise(resolve => setTimeout(resolve, 100))

    const r = await controlRequest(ctl, 'drain retry=127.0.0.1:17999 after=3000 elsewhere=other@127.0.0.1:17998 restarting on port 17999') as any
    assert.equal(r.ok, true, r.error)
    assert.deepEqual(r.draining, { retryAt: '127.0.0.1:17999', retryAfterMs: 3000, elsewhere: ['other@127.0.0.1:17998'], reason: 'restarting on port 17999' })

    const fresh = formatTxn({ client: `${server.id}.bbbbbb`, seq: 3 })
    await assert.rejects(conn.request({ kind: 'eval', txn: fresh, form: '1', wait: true }), (err: any) => {
      assert.equal(err.code, 'DRAINING')
      assert.equal(err.data.retryAt, '127.0.0.1:17999')
      assert.equal(err.data.retryAfterMs, 3000)
      assert.deepEqual(err.data.elsewhere, ['other@127.0.0.1:17998'])
      assert.match(err.message, /node drainnode is draining \(restarting on port 17999\) and takes no new work; retry at 127\.0\.0\.1:17999 \(back in about 3 s\), or on other@127\.0\.0\.1:17998/)
      return true
    })
    // The work it took goes on; a retransmit of a finished txn and result are answered from the record.
    assert.equal((await slow as any).value, 'finished')
    assert.equal((await conn.request({ kind: 'eval', txn: before, form: '6 * 7', wait: true }) as any).value, 42)
    assert.equal((await conn.request({ kind: 'result', txn: running }) as any).value, 'finished')
    assert.equal(((await conn.request({ kind: 'describe' })) as DescribeReply).draining?.retryAt, '127.0.0.1:17999')

    assert.equal((await controlRequest(ctl, 'drain off') as any).draining, null)
    assert.equal((await conn.request({ kind: 'eval', txn: fresh, form: '1 + 1', wait: true }) as any).value, 2)
    conn.close()
  } finally {
    await server.stop()
    rmSync(dir, { recursive: true, force: true })
  }
})

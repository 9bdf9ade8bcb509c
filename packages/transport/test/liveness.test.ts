import { test } from 'node:test'
import assert from 'node:assert/strict'
import { mkdtempSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { DEFAULT_DECODE_LIMITS, EvalMeshError, type NodeLimits } from '@evalmesh/protocol'
import { TrustStore, loadIdentity } from '@evalmesh/trust'
import { ClientConnection, Listener, type ServerConnection } from '../src/index.js'

const limits: NodeLimits = { timeoutMs: 1000, memoryMb: 32, resultBytes: 1e6, outputBytes: 1e4, maxFrameBytes: DEFAULT_DECODE_LIMITS.maxFrameBytes, maxDepth: 64, maxStringBytes: 1e6, concurrency: 4, queueLength: 4 }

/** A node that answers ping (or not) and holds every other request until `release`. */
async function holdingServer (answerPing: boolean): Promise<{ listener: Listener, open: (opts?: { heartbeatIntervalMs?: number, heartbeatTimeoutMs?: number }) => Promise<ClientConnection>, release: () => void }> {
  const dir = mkdtempSync(join(tmpdir(), 'evalmesh-liveness-'))
  const id = loadIdentity(dir, { create: true, name: 'holder' })
  const trust = new TrustStore(dir, id)
  const listener = await Listener.listen({ host: '127.0.0.1', port: 0, identity: id, trust, limits })
  const held: Array<() => void> = []
  listener.on('connection', (conn: ServerConnection) => {
    conn.on('request', (req) => {
      if (req.kind === 'ping') { if (answerPing) conn.reply(req.id, { time: Date.now(), name: 'holder', id: id.id }); return }
      held.push(() => conn.reply(req.id, { txn: 'x', node: 'holder', state: 'done', value: 'late', output: '', outputTruncated: false, seconds: 0 }))
    })
  })
  return {
    listener,
    open: async (opts = {}) => await ClientConnection.open({ host: '127.0.0.1', port: listener.address.port, identity: id, trust, ...opts }),
    release: () => { for (const h of held.splice(0)) h() }
  }
}

test('each call waiting on a dropped connection gets its own LOST error, naming its own txn', async () => {
  const s = await holdingServer(true)
  const conn = await s.open()
  const txns = ['0123456789abcdef.aa:1', '0123456789abcdef.aa:2', '0123456789abcdef.aa:3']
  const calls = txns.map(txn => conn.request({ kind: 'result', txn, wait: true }).then(() => assert.fail('resolved'), (err: unknown) => err))
  const status = conn.request({ kind: 'status' }).then(() => assert.fail('resolved'), (err: unknown) => err)
  await new Promise(resolve => setTimeout(resolve, 50))
  conn.destroy()
  const errors = await Promise.all(calls) as EvalMeshError[]
  assert.equal(new Set(errors).size, 3, 'one error object per call')
  errors.forEach((err, i) => {
    assert.ok(err instanceof EvalMeshError)
    assert.equal(err.code, 'LOST')
    assert.equal(err.data.txn, txns[i])
    assert.ok(err.message.includes(txns[i]!), err.message)
    for (const other of txns.filter((_t, j) => j !== i)) assert.ok(!err.message.includes(other), err.message)
  })
  const s2 = await status as EvalMeshError
  assert.equal(s2.code, 'LOST')
  assert.match(s2.message, /status reply/)
  assert.equal(s2.data.txn, undefined)
  // A call made after the close gets its own error too.
  const after = await conn.request({ kind: 'result', txn: '0123456789abcdef.aa:9' }).catch((err: EvalMeshError) => err) as EvalMeshError
  assert.equal(after.code, 'LOST')
  assert.equal(after.data.txn, '0123456789abcdef.aa:9')
  await s.listener.close()
})

test('a node that stops answering is declared LOST by the heartbeat, with the reason as cause', async () => {
  const s = await holdingServer(false)
  const conn = await s.open({ heartbeatIntervalMs: 100, heartbeatTimeoutMs: 500 })
  const started = Date.now()
  const err = await conn.request({ kind: 'result', txn: '0123456789abcdef.aa:1', wait: true }).catch((e: EvalMeshError) => e) as EvalMeshError
  const took = Date.now() - started
  assert.equal(err.code, 'LOST')
  assert.ok(err.cause instanceof EvalMeshError && /no reply to ping/.test(err.cause.message), String(err.cause))
  assert.ok(took >= 400 && took < 3000, `declared lost after ${took} ms`)
  await s.listener.close()
})

test('a long wait on a node that answers ping is never cut off by the heartbeat', async () => {
  const s = await holdingServer(true)
  const conn = await s.open({ heartbeatIntervalMs: 100, heartbeatTimeoutMs: 300 })
  const reply = conn.request({ kind: 'result', txn: '0123456789abcdef.aa:1', wait: true })
  setTimeout(s.release, 1500)
  assert.equal((await reply).value, 'late')
  conn.close()
  await s.listener.close()
})

test('an idle connection sends no pings, and the heartbeat stops when nothing waits', async () => {
  const s = await holdingServer(false)
  const conn = await s.open({ heartbeatIntervalMs: 50, heartbeatTimeoutMs: 200 })
  await new Promise(resolve => setTimeout(resolve, 600))
  assert.equal(conn.closed, false, 'nothing waited, so silence is fine')
  conn.close()
  await s.listener.close()
})

/**
 * Frame integrity without TLS (issue 12, point 2; PROTOCOL.md §2.4). A man-in-the-middle
 * proxy on loopback alters, injects, replays, reorders or drops one frame of a connection
 * that has integrity forced on (`integrity: 'always'`, as between hosts): the side that
 * reads the frame closes the connection with INTEGRITY_FAILED, and the node carries on
 * serving everyone else. Striking the key exchange out of a hello does not turn it off.
 */
import { after, before, describe, test } from 'node:test'
import assert from 'node:assert/strict'
import { decodeValue, encodeFrame, EvalMeshError } from '@evalmesh/protocol'
import { ClientConnection } from '@evalmesh/transport'
import { TrustStore, loadIdentity } from '@evalmesh/trust'
import { localClient, startNode, type TestNode } from './support/node.js'
import { startTamperProxy, type Tamper } from './support/tamper-proxy.js'

/** The code of the error behind a LOST (its cause), or of the error itself. */
function codeBehind (err: unknown): string | undefined {
  const cause = (err as { cause?: unknown }).cause
  const e = (cause ?? err) as { code?: string }
  return e.code
}

describe('frame integrity against a man in the middle', () => {
  let node: TestNode
  let seq = 100
  before(async () => { node = await startNode() })
  after(async () => { await node.stop() })

  async function open (port: number, integrity: 'auto' | 'always' = 'always'): Promise<ClientConnection> {
    const identity = loadIdentity(node.stateDir)
    return await ClientConnection.open({ host: '127.0.0.1', port, identity, trust: new TrustStore(node.stateDir, identity), integrity, heartbeatIntervalMs: 0 })
  }

  async function nodeStillServes (): Promise<void> {
    const client = localClient(node)
    try { assert.equal(await client.remoteEval('20 + 22', node.host), 42) } finally { client.close() }
  }

  /** Through a proxy doing `tamper`: the eval fails, the connection closes with INTEGRITY_FAILED from the side named. */
  async function tampered (tamper: Tamper, form = '1 + 1'): Promise<{ closeCode: string | undefined, evalCode: string | undefined, message: string }> {
    const proxy = await startTamperProxy({ host: '127.0.0.1', port: node.port }, tamper)
    try {
      const conn = await open(proxy.port)
      assert.equal(conn.peer.integrity, true)
      const closed = new Promise<Error>(resolve => conn.once('close', resolve))
      const evalCode = await conn.request({ kind: 'eval', txn: `${loadIdentity(node.stateDir).id}:${++seq}`, form, wait: true })
        .then(() => undefined, (err: EvalMeshError) => codeBehind(err))
      const closeErr = await closed
      return { closeCode: codeBehind(closeErr), evalCode, message: String((closeErr as { cause?: Error }).cause?.message ?? closeErr.message) }
    } finally {
      await proxy.close()
    }
  }

  test('untouched, a connection through the proxy works with integrity on, and eval results come back', async () => {
    const proxy = await startTamperProxy({ host: '127.0.0.1', port: node.port }, (_d, _i, f) => [f])
    try {
      const conn = await open(proxy.port)
      assert.equal(conn.peer.integrity, true)
      const txn = `${loadIdentity(node.stateDir).id}:1`
      const reply = await conn.request({ kind: 'eval', txn, form: '"x".repeat(100000).length', wait: true })
      assert.equal((reply as { value: unknown }).value, 100000)
      await conn.request({ kind: 'ping' }) // a second frame each way, tagged in turn
      conn.close()
    } finally {
      await proxy.close()
    }
  })

  test('a request altered on the way: the node closes with INTEGRITY_FAILED and serves others', async () => {
    const r = await tampered((d, i, f) => {
      if (d === 'c2s' && i === 2) f[f.length - 40] ^= 0x01 // a payload byte of the first request
      return [f]
    })
    assert.equal(r.evalCode, 'INTEGRITY_FAILED')
    assert.equal(r.closeCode, 'INTEGRITY_FAILED')
    assert.match(r.message, /frame 0 from client .* failed its integrity check/)
    await nodeStillServes()
  })

  test('a frame injected before the first request (a well-formed ping with a made-up tag) is refused', async () => {
    const r = await tampered((d, i, f) => {
      if (d === 'c2s' && i === 2) return [Buffer.concat([encodeFrame({ kind: 'ping', id: 99 }), Buffer.alloc(32, 7)]), f]
      return [f]
    })
    assert.equal(r.closeCode, 'INTEGRITY_FAILED')
    await nodeStillServes()
  })

  test('a request replayed (sent twice) is refused at the copy', async () => {
    const r = await tampered((d, i, f) => d === 'c2s' && i === 2 ? [f, f] : [f], '{ const t = Date.now() + 300; while (Date.now() < t) {} 1 }')
    assert.equal(r.closeCode, 'INTEGRITY_FAILED')
    assert.match(r.message, /frame 1 from client/)
    await nodeStillServes()
  })

  test('two requests swapped on the way are refused', async () => {
    const proxy = await startTamperProxy({ host: '127.0.0.1', port: node.port }, (() => {
      let held: Buffer | undefined
      return (d, i, f) => {
        if (d === 'c2s' && i === 2) { held = f; return [] }
        if (d === 'c2s' && i === 3 && held !== undefined) return [f, held]
        return [f]
      }
    })())
    try {
      const conn = await open(proxy.port)
      const closed = new Promise<Error>(resolve => conn.once('close', resolve))
      const both = await Promise.allSettled([conn.request({ kind: 'ping' }), conn.request({ kind: 'ping' })])
      assert.ok(both.every(p => p.status === 'rejected'))
      assert.equal(codeBehind(await closed), 'INTEGRITY_FAILED')
    } finally {
      await proxy.close()
    }
    await nodeStillServes()
  })

  test('a reply altered on the way: the client closes with INTEGRITY_FAILED', async () => {
    const r = await tampered((d, i, f) => {
      if (d === 's2c' && i === 2) f[10] ^= 0x20 // the first frame after welcome: the eval reply
      return [f]
    })
    assert.equal(r.evalCode, 'INTEGRITY_FAILED')
    assert.equal(r.closeCode, 'INTEGRITY_FAILED')
    assert.match(r.message, /frame 1 from node testnode .* failed its integrity check/)
    await nodeStillServes()
  })

  test('striking "kx" out of the client hello does not turn integrity off: the client refuses the plain answer', async () => {
    const proxy = await startTamperProxy({ host: '127.0.0.1', port: node.port }, (d, i, f) => {
      if (d !== 'c2s' || i !== 0) return [f]
      const hello = decodeValue(f.subarray(4)) as Record<string, unknown>
      delete hello.kx
      return [encodeFrame(hello)]
    }, { tagged: false })
    try {
      await assert.rejects(open(proxy.port), (err: EvalMeshError) => err.code === 'INTEGRITY_REQUIRED' && /did not take frame integrity/.test(err.message))
    } finally {
      await proxy.close()
    }
    await nodeStillServes()
  })
})

test('a node with --integrity always refuses a client that offers no integrity, with INTEGRITY_REQUIRED', async () => {
  const node = await startNode(['--integrity', 'always'])
  try {
    const identity = loadIdentity(node.stateDir)
    const trust = new TrustStore(node.stateDir, identity)
    await assert.rejects(ClientConnection.open({ host: '127.0.0.1', port: node.port, identity, trust, integrity: 'auto' }),
      (err: Error) => codeBehind(err) === 'INTEGRITY_REQUIRED' && /frame integrity/.test(err.message))
    const conn = await ClientConnection.open({ host: '127.0.0.1', port: node.port, identity, trust, integrity: 'always' })
    assert.equal(conn.peer.integrity, true)
    conn.close()
  } finally {
    await node.stop()
  }
})

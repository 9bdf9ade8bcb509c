/**
 * Broadcast on loopback: unicast queries to known nodes, offers, claims, refusals,
 * NO_WILLING_SERVER, fan-out, and hostile datagrams at a real node's UDP port.
 */
import { after, before, describe, test } from 'node:test'
import assert from 'node:assert/strict'
import { createSocket } from 'node:dgram'
import { copyFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { Client, RemoteEvalError } from '@evalmesh/client'
import { createMeshKey, ephemeralIdentity, TrustStore } from '@evalmesh/trust'
import { sealDatagram } from '@evalmesh/transport'
import { busyFor, eventually, startNode, tempDir, type TestNode } from './support/node.js'

describe('broadcast between nodes on loopback', () => {
  const meshDir = tempDir()
  let nodes: TestNode[] = []
  let client: Client
  const clientDir = tempDir()

  before(async () => {
    createMeshKey(meshDir)
    const dirs = ['a', 'b', 'c'].map(() => { const d = tempDir(); copyFileSync(join(meshDir, 'mesh.key'), join(d, 'mesh.key')); return d })
    nodes = await Promise.all(['a', 'b', 'c'].map(async (name, i) => await startNode(['--concurrency', '2'], { stateDir: dirs[i]!, name })))
    copyFileSync(join(meshDir, 'mesh.key'), join(clientDir, 'mesh.key'))
    client = new Client({ stateDir: clientDir, broadcastTimeoutMs: 1500, broadcast: { targets: nodes.map(n => ({ address: '127.0.0.1', port: n.port })) } })
  })
  after(async () => { client.close(); await Promise.all(nodes.map(async n => await n.stop())) })

  test('a form with no host runs on exactly one willing node', async () => {
    const r = await client.evalDetailed('"who"', undefined)
    assert.ok('value' in r && r.value === 'who')
    const holders = []
    for (const n of nodes) {
      const recs = await client.status(n.host, { id: r.txn })
      if (recs.length > 0) { holders.push(n.name); assert.equal(recs[0]!.mode, 'broadcast') }
    }
    assert.deepEqual(holders, [r.node])
    // The outcome says where it ran, so a caller can send follow-up work there.
    const ran = nodes.find(n => n.name === r.node)!
    assert.equal(r.host, ran.host)
    assert.equal(await client.remoteEval('"again"', r.host), 'again')
  })

  test('a per-call broadcastTimeoutMs bounds the wait for a willing node', async () => {
    const quiet = new Client({ stateDir: clientDir, broadcast: { targets: [{ address: '127.0.0.1', port: 9 }] } })
    try {
      await assert.rejects(quiet.remoteEval('1', undefined, { broadcastTimeoutMs: 300 }), (err: Error & { code?: string }) => err.code === 'NO_WILLING_SERVER' && /within 300 ms/.test(err.message))
    } finally {
      quiet.close()
    }
  })

  test('busy nodes answer later, so work spreads; gagged nodes never offer', async () => {
    const results = await Promise.all(Array.from({ length: 6 }, async () => await client.evalDetailed(busyFor(300), undefined)))
    const used = new Set(results.map(r => r.node))
    assert.ok(used.size >= 2, `spread over ${[...used].join(', ')}`)
    const self = (n: TestNode): Client => new Client({ stateDir: n.stateDir })
    for (const n of nodes) { const c = self(n); await c.policy(n.host, { gag: ['broadcast'] }); c.close() }
    try {
      await assert.rejects(client.remoteEval('1', undefined), (err: Error & { code?: string }) => err.code === 'NO_WILLING_SERVER' && /within 1500 ms/.test(err.message))
      const fan = await client.remoteEvalAll('1', { timeout: 1500 })
      assert.deepEqual(fan.outcomes.map(o => [o.node, o.status]).sort(), nodes.map(n => [n.name, 'refused']).sort())
      assert.ok(fan.outcomes.every(o => /gag broadcast/.test(o.rule ?? '')))
      // The declines show in the nodes' counters and trace.
      const d = await client.describe(nodes[0]!.host) as { broadcast: { declined: number } }
      assert.ok(d.broadcast.declined > 0)
    } finally {
      // Ungagged also after a failure here, so the tests after this one meet the nodes as they expect.
      for (const n of nodes) { const c = self(n); await c.policy(n.host, { ungag: ['broadcast'] }); c.close() }
    }
  })

  test('fan-out collects every node\'s outcome; reduce folds values; quorum stops early', async () => {
    const r = await client.remoteEvalAll('[1, 2, 3].length', { timeout: 3000, reduce: (acc, v) => (acc as number) + (v as number), initial: 0 })
    assert.equal(r.outcomes.filter(o => o.status === 'ok').length, 3)
    assert.equal(r.value, 9)
    const errs = await client.remoteEvalAll('throw new Error("each fails")', { timeout: 3000 })
    assert.ok(errs.outcomes.length === 3 && errs.outcomes.every(o => o.status === 'error' && /each fails/.test(o.error?.message ?? '')))
    const seen: string[] = []
    for await (const o of client.evalAllStream('"streamed"', { timeout: 3000 })) seen.push(o.node)
    assert.equal(seen.length, 3)
    const q = await client.remoteEvalAll('"q"', { timeout: 3000, quorum: 1 })
    assert.ok(q.outcomes.filter(o => o.status === 'ok').length >= 1)
  })

  test('hostile datagrams are dropped and counted, and the node keeps offering', async () => {
    const target = nodes[0]!
    const sock = createSocket('udp4')
    const stranger = ephemeralIdentity('stranger')
    const send = async (buf: Buffer): Promise<void> => await new Promise(resolve => sock.send(buf, target.port, '127.0.0.1', () => resolve()))
    const before = (await client.describe(target.host) as { broadcast: { datagrams: { dropped: Record<string, number> } } }).broadcast.datagrams.dropped
    await send(Buffer.from('not cbor at all'))
    await send(sealDatagram(stranger, new TrustStore(tempDir(), stranger), { kind: 'query', txn: `${stranger.id}:1`, mode: 'one' }))
    const clientTrust = client.trust
    const good = sealDatagram(client.identity, clientTrust, { kind: 'query', txn: `${client.identity.id}:999999`, mode: 'one' })
    await send(good)
    await send(good) // replay
    sock.close()
    const dropped = await eventually(async () => {
      const d = (await client.describe(target.host) as { broadcast: { datagrams: { dropped: Record<string, number> } } }).broadcast.datagrams.dropped
      return d.replayed > before.replayed! ? d : undefined
    }, 'the node to count the replay') as Record<string, number>
    assert.equal(dropped.malformed, before.malformed! + 1)
    assert.equal(dropped.untrusted, before.untrusted! + 1)
    assert.equal(dropped.replayed, before.replayed! + 1)
    assert.equal(await client.remoteEval('"still offering"', undefined), 'still offering')
  })
})

test('without a host or a broadcast configuration, a call is a clear error', async () => {
  const dir = tempDir()
  writeFileSync(join(dir, 'node.name'), 'lonely\n')
  const c = new Client({ stateDir: dir })
  await assert.rejects(c.remoteEval('1'), (err: RemoteEvalError) => err.code === 'UNKNOWN_HOST' && /broadcast is not configured/.test(err.message))
  c.close()
})

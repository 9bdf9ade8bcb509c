/**
 * The mesh over NATS, on loopback: real nodes (`evalmesh serve --nats`) and a real
 * 3-server nats-server cluster with a small max_payload (so that large forms and results
 * travel in many chunks). Directed requests by node name, broadcast and fan-out, the
 * follow-up requests, peers, untrusted keys, hostile NATS messages, a node dying
 * mid-evaluation, a nats-server dying mid-run. The two-LAN version is nats-lan.test.ts.
 */
import { after, before, describe, test } from 'node:test'
import assert from 'node:assert/strict'
import { Client, RemoteEvalError, type EvalResult } from '@evalmesh/client'
import { NatsCarrier, STREAM_DATA } from '@evalmesh/nats'
import { EvalMeshError, decodeValue, encodeValue } from '@evalmesh/protocol'
import { addTrustedKey, loadIdentity, trustLine } from '@evalmesh/trust'
import { busyFor, eventually, newMesh, runCli, startNode, tempDir, type TestNode } from './support/node.js'
import { skipUnlessNatsServer, startNatsCluster, type NatsCluster } from './support/nats.js'

const skip = skipUnlessNatsServer()
const codeOf = (err: unknown): string | undefined => (err as { code?: string }).code

describe('the mesh over NATS, on loopback', { skip }, () => {
  const meshDir = newMesh()
  let cluster: NatsCluster
  let nodes: TestNode[] = []
  let client: Client
  const clientDir = meshDir()
  const urls = (): string => cluster.urls().join(',')
  const node = (name: string): TestNode => nodes.find(n => n.name === name)!

  before(async () => {
    cluster = await startNatsCluster(3, { maxPayload: 64 * 1024 })
    // Each node is given the servers in a different order, so they sit on different servers.
    nodes = await Promise.all(['a', 'b', 'c'].map(async (name, i) => {
      const servers = [...cluster.urls().slice(i), ...cluster.urls().slice(0, i)].join(',')
      return await startNode(['--nats', servers, '--concurrency', '4', '--log-level', 'debug'], { stateDir: meshDir(), name })
    }))
    client = new Client({ stateDir: clientDir, nats: { servers: cluster.urls() }, broadcastTimeoutMs: 5000 })
    // Presence: every node has seen the other two.
    for (const n of nodes) {
      await eventually(async () => (await client.request(n.host, { kind: 'peers' })).filter(p => p.source === 'nats').length === 2, `${n.name} to see the others on NATS`)
    }
  })
  after(async () => {
    client?.close()
    await Promise.all(nodes.map(async n => await n.stop()))
    await cluster?.stop()
  })

  test('a directed request to a node name reaches it through NATS; status, result, describe and abort follow it', async () => {
    const r = await client.evalDetailed('6 * 7', 'a') as EvalResult & { value: unknown }
    assert.equal(r.value, 42)
    assert.equal(r.node, 'a')
    const [record] = await client.status('a', { id: r.txn })
    assert.equal(record?.state, 'done')
    assert.equal(record?.mode, 'directed')
    assert.equal((await client.fetchResult(r.txn, 'a')).value, 42)
    const described = await client.describe('b')
    assert.equal(described.name, 'b')
    assert.ok(described.capabilities.includes('nats'))
    assert.equal(described.nats?.mesh, 'default')
    assert.equal(described.nats?.connected, true)
    assert.equal(described.nats?.peers, 2)
    assert.ok(cluster.servers.some(s => described.nats?.server.endsWith(`:${s.port}`)), `on one of the cluster's servers: ${described.nats?.server}`)
    const long = await client.evalDetailed(busyFor(20_000), 'c', { wait: false })
    const aborted = await client.remoteAbort(long.txn, 'c', { reason: 'test' })
    assert.equal(aborted.txn, long.txn)
    await assert.rejects(client.fetchResult(long.txn, 'c', { wait: true }), (err: RemoteEvalError) => err.code === 'ABORTED')
  })

  test('many clients connecting through NATS at once all get in (more than one TCP address\'s share of handshakes)', async () => {
    const many = Array.from({ length: 24 }, () => new Client({ stateDir: clientDir, nats: { servers: cluster.urls() } }))
    try {
      const values = await Promise.all(many.map(async (c, i) => await c.remoteEval(`${i} * 2`, 'a')))
      assert.deepEqual(values, many.map((_, i) => i * 2))
    } finally { for (const c of many) c.close() }
  })

  test('a name no node on the backbone has is a clear CONNECT_FAILED', async () => {
    await assert.rejects(client.remoteEval('1', 'nobody'), (err: EvalMeshError) => err.code === 'CONNECT_FAILED' && /nobody/.test(err.message))
  })

  test('a broadcast runs on exactly one node, and fan-out reaches every node', async () => {
    const results = await Promise.all(Array.from({ length: 12 }, async (_, i) => await client.evalDetailed(`${i} + 1`, undefined) as EvalResult & { value: unknown }))
    for (const [i, r] of results.entries()) {
      assert.equal(r.value, i + 1)
      const holders: string[] = []
      for (const n of nodes) {
        const recs = await client.status(n.name, { id: r.txn })
        if (recs.length > 0) { holders.push(n.name); assert.equal(recs[0]!.mode, 'broadcast') }
      }
      assert.deepEqual(holders, [r.node])
      // Where it ran is a name a follow-up request reaches (through NATS).
      assert.equal(r.host, r.node)
    }
    const all = await client.remoteEvalAll('"here"', { timeout: 8000 })
    assert.deepEqual(all.outcomes.map(o => [o.node, o.status, o.value]).sort(), [['a', 'ok', 'here'], ['b', 'ok', 'here'], ['c', 'ok', 'here']])
  })

  test('forms and results far larger than the servers\' max_payload travel in chunks', async () => {
    const big = 'x'.repeat(700 * 1024)
    assert.equal(await client.remoteEval(`${JSON.stringify(big)}.length`, 'b'), big.length)
    const value = await client.remoteEval('"y".repeat(3 * 1024 * 1024)', undefined) as string
    assert.equal(value.length, 3 * 1024 * 1024)
    assert.ok(/^y+$/.test(value))
  })

  test('peers lists the nodes seen through NATS, marked as such; the CLI takes --nats', async () => {
    const peers = await runCli(['peers', '--host', node('a').host], { stateDir: clientDir })
    assert.equal(peers.code, 0, peers.stderr)
    for (const name of ['b', 'c']) assert.match(peers.stdout, new RegExp(`^${name}\\s+\\(via nats\\)\\s+\\S+\\s+1\\s+nats\\s`, 'm'))
    const json = JSON.parse((await runCli(['peers', '--host', node('a').host, '--json'], { stateDir: clientDir })).stdout) as { value: Array<{ name: string, source: string }> }
    assert.deepEqual(json.value.filter(p => p.source === 'nats').map(p => p.name).sort(), ['b', 'c'])
    const directed = await runCli(['eval', '6 * 7', '--host', 'c', '--nats', urls()], { stateDir: clientDir })
    assert.equal(directed.code, 0, directed.stderr)
    assert.equal(directed.stdout.trim(), '42')
    const broadcast = await runCli(['eval', '"anyone"', '--nats', urls()], { stateDir: clientDir })
    assert.equal(broadcast.code, 0, broadcast.stderr)
    assert.equal(broadcast.stdout.trim(), "'anyone'")
    // From node a's own state dir, a knows b only through NATS: the client must be on NATS too.
    const unrouted = await runCli(['eval', '1', '--host', 'b'], { stateDir: node('a').stateDir })
    assert.notEqual(unrouted.code, 0)
    assert.match(unrouted.stderr, /UNKNOWN_HOST.*seen only on a NATS backbone.*--nats/)
    const routed = await runCli(['eval', '"via a\'s table"', '--host', 'b', '--nats', urls()], { stateDir: node('a').stateDir })
    assert.equal(routed.code, 0, routed.stderr)
    assert.equal(routed.stdout.trim(), '"via a\'s table"')
    const fanOut = await runCli(['eval', '2 ** 10', '--all', '--nats', urls()], { stateDir: clientDir })
    assert.equal(fanOut.code, 0, fanOut.stderr)
    for (const name of ['a', 'b', 'c']) assert.match(fanOut.stdout, new RegExp(`^${name}\\s+ok\\s+1024$`, 'm'))
  })

  test('untrusted keys are refused across NATS, both ways', async () => {
    // A client whose key no node trusts, though it trusts node a: a refuses the handshake.
    const strangerDir = tempDir()
    addTrustedKey(strangerDir, trustLine(loadIdentity(node('a').stateDir)))
    const stranger = new Client({ stateDir: strangerDir, nats: { servers: cluster.urls() }, broadcastTimeoutMs: 1500 })
    try {
      await assert.rejects(stranger.remoteEval('1', 'a'), (err: RemoteEvalError) => err.code === 'UNTRUSTED_PEER' && /does not trust/.test(err.message))
      // Its broadcasts are dropped by every node: nobody offers.
      await assert.rejects(stranger.remoteEval('1', undefined), (err: EvalMeshError) => err.code === 'NO_WILLING_SERVER')
    } finally { stranger.close() }
    // A node on the backbone whose key this client does not trust: never used, never listed.
    const rogue = await startNode(['--nats', urls()], { stateDir: tempDir(), name: 'rogue' })
    try {
      await assert.rejects(client.remoteEval('1', 'rogue'), (err: EvalMeshError) => codeOf(err) === 'UNTRUSTED_PEER' || codeOf(err.cause) === 'UNTRUSTED_PEER')
      const all = await client.remoteEvalAll('1', { timeout: 3000 })
      assert.deepEqual(all.outcomes.map(o => o.node).sort(), ['a', 'b', 'c'])
      const seen = await client.request(node('a').host, { kind: 'peers' })
      assert.ok(!seen.some(p => p.name === 'rogue'), 'a does not list the untrusted node')
    } finally { await rogue.stop() }
  })

  test('meshes sharing a backbone stay apart (--nats-mesh)', async () => {
    const other = await startNode(['--nats', urls(), '--nats-mesh', 'lab'], { stateDir: meshDir(), name: 'other' })
    const labClient = new Client({ stateDir: clientDir, nats: { servers: cluster.urls(), mesh: 'lab' }, broadcastTimeoutMs: 3000 })
    try {
      assert.equal(await labClient.remoteEval('"lab"', 'other'), 'lab')
      await assert.rejects(client.remoteEval('1', 'other'), (err: EvalMeshError) => err.code === 'CONNECT_FAILED')
      await assert.rejects(labClient.remoteEval('1', 'a'), (err: EvalMeshError) => err.code === 'CONNECT_FAILED')
      const all = await labClient.remoteEvalAll('1', { timeout: 3000 })
      assert.deepEqual(all.outcomes.map(o => o.node), ['other'])
    } finally {
      labClient.close()
      await other.stop()
    }
  })

  test('garbage, wrong sequence numbers and bad opens on NATS are dropped with a logged reason; the node keeps serving', async () => {
    const raw = await NatsCarrier.connect({ servers: cluster.urls() })
    try {
      const a = loadIdentity(node('a').stateDir)
      const s = raw.subjects
      raw.publish(s.openName('a'), Buffer.from('not cbor at all'), '_INBOX.x')
      raw.publish(s.openId(a.id), encodeValue({ v: 1, inbox: 'evalmesh.default.bcast' }), '_INBOX.y')
      raw.publish(s.broadcast, Buffer.from([0xff, 0x00, 0x13]), '_INBOX.z')
      raw.publish(s.presence, Buffer.alloc(900, 7))
      // A stream opened properly, then fed a message out of sequence: the stream dies, the node lives.
      const reply = await raw.nc.request(s.openName('a'), encodeValue({ v: 1, inbox: raw.inbox(() => {}) }), { timeout: 3000 })
      const inbox = (decodeValue(reply.data) as { inbox: string }).inbox
      raw.publish(inbox, Buffer.from([1, 2]))
      const bad = Buffer.alloc(9); bad[0] = STREAM_DATA; bad.writeUInt32BE(7, 1)
      raw.publish(inbox, bad)
      await raw.nc.flush()
      const log = (): string => node('a').output()
      await eventually(() => /NATS message on evalmesh\.default\.open\.name\.a dropped \(malformed\)/.test(log()), 'the bad open to be logged')
      await eventually(() => /dropped \(malformed\): a stream message of 2 bytes is shorter than its header/.test(log()), 'the short message to be logged')
      await eventually(() => /dropped \(sequence\): stream message 7 arrived when 0 was due/.test(log()), 'the wrong sequence number to be logged')
      await eventually(() => /datagram from nats:0 dropped \(malformed\)/.test(log()), 'the garbage query to be logged')
      assert.equal(await client.remoteEval('"still here"', 'a'), 'still here')
    } finally { await raw.close() }
  })

  test('a node that dies mid-evaluation: the waiting client gets LOST, not a hang', async () => {
    const doomed = await startNode(['--nats', urls()], { stateDir: meshDir(), name: 'doomed' })
    await eventually(async () => (await client.describe('doomed')).name === 'doomed', 'doomed to answer')
    const pending = client.remoteEval(busyFor(60_000), 'doomed')
    await eventually(async () => (await client.status('doomed', { which: 'running' })).length === 1, 'the evaluation to start')
    await doomed.stop('SIGKILL')
    await assert.rejects(pending, (err: EvalMeshError) => err.code === 'LOST' && /doomed/.test(err.message))
  })

  test('a nats-server dies mid-run: requests in flight finish or end LOST or timed out, and later ones get through', async () => {
    const outcomes: string[] = []
    let stop = false
    const loop = async (k: number): Promise<void> => {
      for (let i = 0; i < 150 && !stop; i++) {
        try {
          const host = i % 2 === 0 ? undefined : nodes[(i + k) % nodes.length]!.name
          await client.remoteEval(busyFor(20), host, { timeoutMs: 15_000 })
          outcomes.push('ok')
        } catch (err) {
          outcomes.push(codeOf(err) ?? String(err))
        }
      }
    }
    const loops = [0, 1, 2, 3].map(async k => await loop(k))
    await eventually(() => outcomes.length >= 40, 'some requests before the kill', 30_000)
    await cluster.servers[0]!.kill()
    await eventually(() => outcomes.length >= 160, 'requests after the kill', 60_000)
    stop = true
    await Promise.all(loops)
    if (process.env.NATS_TEST_DEBUG === '1') console.error('outcomes', outcomes.length, outcomes.filter(o => o !== 'ok'))
    const odd = outcomes.filter(o => !['ok', 'LOST', 'CLIENT_TIMEOUT', 'CONNECT_FAILED', 'NO_WILLING_SERVER'].includes(o))
    assert.deepEqual(odd, [], 'every request ends ok, LOST, timed out or unplaced')
    // After the kill, things work again: directed to every node, and a broadcast.
    for (const n of nodes) await eventually(async () => await client.remoteEval('"back"', n.name) === 'back', `${n.name} reachable again`, 20_000)
    await eventually(async () => await client.remoteEval('"back"', undefined) === 'back', 'a broadcast to get through again', 20_000)
  })
})

/**
 * Two LANs that cannot reach each other, joined only by a NATS backbone (issue 14): two
 * labs on their own bridges (198.18.1.0/24 and 198.18.2.0/24), and a backbone namespace
 * on both bridges that forwards nothing, running a 3-server nats-server cluster. Each LAN
 * host runs a node with `serve --lan --nats`; a client process on LAN A (and one on LAN B)
 * uses the LAN and NATS at once. Exactly-once over 1,000 broadcasts counted from the
 * nodes' done records, fan-out over both LANs, directed requests across them, a
 * nats-server killed mid-run, untrusted keys refused across NATS.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { copyFileSync, mkdtempSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { createMeshKey } from '@evalmesh/trust'
import { canUseNamespaces, createBackbone, createLab, skipUnlessNamespaces, type Lab } from './support/netlab.js'
import { eventually, tempDir } from './support/node.js'
import { DRIVER, Driver, startLabNode, type LabNode } from './support/lan.js'
import { skipUnlessNatsServer, startNatsCluster, type NatsCluster } from './support/nats.js'

const PER_LAN = 3
const NATS_PORTS = { client: [4222, 4223, 4224], cluster: [6222, 6223, 6224] }

test('two LANs joined only by a NATS cluster', { skip: skipUnlessNamespaces(canUseNamespaces()) || skipUnlessNatsServer(), timeout: 300_000 }, async (t) => {
  const tag = process.pid % 10000
  const labA = createLab(PER_LAN, `emna${tag}a`, { subnet: 1 })
  const labB = createLab(PER_LAN, `emna${tag}b`, { subnet: 2 })
  const backbone = createBackbone([labA, labB], `emna${tag}n`)
  let cluster: NatsCluster | undefined
  const drivers: Driver[] = []
  try {
    cluster = await startNatsCluster(3, { listen: '0.0.0.0', ports: NATS_PORTS, exec: (argv, opts) => backbone.exec(argv, opts) })
    // Each LAN reaches the cluster on the backbone's address on that LAN.
    const urlsFor = (k: number): string => cluster!.urls(backbone.addresses[k]).join(',')
    const meshDir = mkdtempSync(join(tmpdir(), 'evalmesh-mesh-'))
    createMeshKey(meshDir)
    const start = async (lab: Lab, k: number, prefix: string): Promise<LabNode[]> => await Promise.all(lab.hosts.map(async (_h, i) =>
      await startLabNode(lab, i, meshDir, { name: `${prefix}${i + 1}`, lan: true, args: ['--nats', urlsFor(k)] })))
    const nodes = [...await start(labA, 0, 'a'), ...await start(labB, 1, 'b')]
    const names = nodes.map(n => n.name).sort()
    const driverFor = (lab: Lab, k: number, dir: string): Driver => {
      const d = new Driver(lab.exec(lab.hosts[0]!, [process.execPath, '--no-node-snapshot', DRIVER, dir, lab.hosts[0]!.address, urlsFor(k)], { stdio: ['pipe', 'pipe', 'pipe'] }))
      drivers.push(d)
      return d
    }
    const clientDir = tempDir(); copyFileSync(join(meshDir, 'mesh.key'), join(clientDir, 'mesh.key'))
    const a = driverFor(labA, 0, clientDir)
    const b = driverFor(labB, 1, clientDir)

    await t.test('the LANs cannot reach each other directly; each node sees the other LAN\'s nodes through NATS', async () => {
      const direct = await a.send({ op: 'direct', host: nodes.find(n => n.name === 'b1')!.host, form: '1' })
      assert.equal(direct.ok, false)
      assert.equal(direct.code, 'CONNECT_FAILED')
      await eventually(async () => {
        const peers = (await a.send({ op: 'peers', host: nodes.find(n => n.name === 'a1')!.host })).peers as Array<{ name: string, source: string }>
        return ['b1', 'b2', 'b3'].every(name => peers.some(p => p.name === name && p.source === 'nats')) &&
          ['a2', 'a3'].every(name => peers.some(p => p.name === name && p.source === 'mdns'))
      }, 'a1 to list b1-b3 via NATS and a2, a3 via mDNS', 30_000)
    })

    await t.test('directed requests cross the LANs by node name, both ways', async () => {
      for (const name of ['b1', 'b2', 'b3']) {
        const r = await a.send({ op: 'direct', host: name, form: '"from A"' })
        assert.equal(r.ok, true, JSON.stringify(r)); assert.equal(r.node, name); assert.equal(r.value, 'from A')
      }
      for (const name of ['a1', 'a2', 'a3']) {
        const r = await b.send({ op: 'direct', host: name, form: '"from B"' })
        assert.equal(r.ok, true, JSON.stringify(r)); assert.equal(r.node, name); assert.equal(r.value, 'from B')
      }
    })

    await t.test('fan-out reaches every node of both LANs', async () => {
      const r = await a.send({ op: 'all', form: '"hi"', timeout: 8000 })
      assert.deepEqual(r.outcomes.map((o: { node: string, status: string }) => `${o.node}:${o.status}`).sort(), names.map(n => `${n}:ok`))
    })

    const countDone = async (txns: Set<string>): Promise<Map<string, string[]>> => {
      const ranOn = new Map<string, string[]>()
      for (const n of nodes) {
        // Every node's done list, asked by name (through NATS for the other LAN's nodes).
        const s = await a.send({ op: 'status', host: n.name })
        assert.equal(s.ok, true, JSON.stringify(s))
        for (const rec of s.records as Array<{ txn: string, mode: string }>) {
          if (!txns.has(rec.txn)) continue
          assert.equal(rec.mode, 'broadcast')
          ranOn.set(rec.txn, [...(ranOn.get(rec.txn) ?? []), n.name])
        }
      }
      return ranOn
    }

    await t.test('1,000 broadcasts from LAN A each run on exactly one node of the two LANs (from the nodes\' done records)', async () => {
      const r = await a.send({ op: 'many', n: 1000, concurrency: 16, form: '6 * 7' })
      const failed = r.results.filter((x: { error?: string }) => x.error !== undefined)
      assert.deepEqual(failed, [], 'every broadcast found a willing node')
      const txns = new Set<string>(r.results.map((x: { txn: string }) => x.txn))
      assert.equal(txns.size, 1000)
      const ranOn = await countDone(txns)
      const notExactlyOnce = [...txns].filter(txn => ranOn.get(txn)?.length !== 1)
      assert.deepEqual(notExactlyOnce, [], 'each txn appears in exactly one node\'s done list')
      for (const x of r.results) assert.deepEqual(ranOn.get(x.txn), [x.node])
      t.diagnostic(`ran on: ${[...new Set([...ranOn.values()].flat())].sort().join(', ')}`)
    })

    await t.test('broadcasts from LAN B with LAN B\'s nodes gagging broadcast run on LAN A, through NATS', async () => {
      for (const name of ['b1', 'b2', 'b3']) {
        const dir = nodes.find(n => n.name === name)!.stateDir
        const g = await b.send({ op: 'policy', host: nodes.find(n => n.name === name)!.host, stateDir: dir, change: { gag: ['broadcast'] } })
        assert.equal(g.ok, true, JSON.stringify(g))
      }
      try {
        const r = await b.send({ op: 'many', n: 100, concurrency: 8, form: '1' })
        assert.deepEqual(r.results.filter((x: { error?: string }) => x.error !== undefined), [])
        const txns = new Set<string>(r.results.map((x: { txn: string }) => x.txn))
        const ranOn = await countDone(txns)
        assert.deepEqual([...txns].filter(txn => ranOn.get(txn)?.length !== 1), [], 'exactly once')
        assert.ok([...ranOn.values()].flat().every(n => n.startsWith('a')), 'only LAN A nodes ran them')
      } finally {
        for (const name of ['b1', 'b2', 'b3']) {
          const n = nodes.find(x => x.name === name)!
          await b.send({ op: 'policy', host: n.host, stateDir: n.stateDir, change: { ungag: ['broadcast'] } })
        }
      }
    })

    await t.test('untrusted keys are refused across NATS', async () => {
      const strangerDir = tempDir()
      const r = await a.send({ op: 'direct', host: 'b2', form: '1', stateDir: strangerDir })
      assert.equal(r.ok, false)
      assert.equal(r.code, 'UNTRUSTED_PEER', JSON.stringify(r))
      const one = await a.send({ op: 'one', form: '1', stateDir: strangerDir, timeoutMs: 2000 })
      assert.equal(one.ok, false)
      assert.equal(one.code, 'NO_WILLING_SERVER', JSON.stringify(one))
    })

    await t.test('a nats-server killed mid-run: every broadcast ends (ran once, or a clear error), and the mesh carries on', async () => {
      // 400 runs of 50 ms on 8 at a time take 2.5 s at the very least: the kill lands mid-run.
      const run = a.send({ op: 'many', n: 400, concurrency: 8, form: '{ const u = Date.now() + 50; while (Date.now() < u) {} ; 1 }', timeoutMs: 20_000 })
      // The server LAN A's client is on: its connection, and the streams over it, must move.
      const on = (await a.send({ op: 'natsServer' })).server as string
      const victim = cluster!.servers.find(s => on.endsWith(`:${s.port}`))!
      await new Promise(resolve => setTimeout(resolve, 1000))
      await victim.kill()
      t.diagnostic(`killed ${victim.name} (${on}), the client's server`)
      const r = await run
      const errors = r.results.filter((x: { error?: string }) => x.error !== undefined).map((x: { error: string }) => x.error)
      assert.deepEqual(errors.filter((e: string) => !['LOST', 'CLIENT_TIMEOUT', 'CONNECT_FAILED', 'NO_WILLING_SERVER'].includes(e)), [], 'only clear errors')
      t.diagnostic(`${r.results.length - errors.length} ran, errors: ${errors.join(', ') || 'none'}`)
      // None ran twice; each that answered ok ran exactly once.
      const txns = new Set<string>(r.results.filter((x: { txn?: string }) => x.txn !== undefined).map((x: { txn: string }) => x.txn))
      const ranOn = await countDone(txns)
      assert.deepEqual([...ranOn.entries()].filter(([, on]) => on.length > 1), [], 'at most once')
      for (const x of r.results.filter((y: { error?: string }) => y.error === undefined)) assert.deepEqual(ranOn.get(x.txn), [x.node])
      // Every node is reachable from the other LAN again, and fan-out reaches them all.
      for (const name of ['b1', 'b2', 'b3']) await eventually(async () => (await a.send({ op: 'direct', host: name, form: '2' })).value === 2, `${name} from LAN A after the kill`, 30_000)
      await eventually(async () => (await a.send({ op: 'all', form: '1', timeout: 6000 })).outcomes.filter((o: { status: string }) => o.status === 'ok').length === nodes.length, 'fan-out over both LANs after the kill', 30_000)
    })
  } finally {
    for (const d of drivers) d.proc.stdin?.end()
    await cluster?.stop().catch(() => {})
    backbone.destroy()
    labA.destroy()
    labB.destroy()
  }
})

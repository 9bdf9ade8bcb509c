/**
 * Broadcast, fan-out, admission policy and discovery across a simulated LAN: nine
 * hosts in network namespaces on a bridge (test/support/netlab.ts), one evalmesh node
 * per host, and a client process on the first host. The same checks run twice: on an
 * IPv4 LAN (198.18.0.0/15, group 239.255.66.80, mDNS on 224.0.0.251) and on an IPv6-only
 * one (2001:db8::/64, group ff12::6680, mDNS on ff02::fb; issue 12).
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { mkdtempSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { addTrustedKey, createMeshKey, loadIdentity, trustLine } from '@evalmesh/trust'
import { canUseNamespaces, createLab, skipUnlessNamespaces } from './support/netlab.js'
import { CLI, busyFor, eventually } from './support/node.js'
import { DRIVER, Driver, startLabNode, stateDirWith, type LabNode } from './support/lan.js'

const HOSTS = 9 // eight start at once; the ninth starts late

for (const family of ['IPv4', 'IPv6'] as const) {
  test(`broadcast on a simulated ${family} LAN`, { skip: skipUnlessNamespaces(canUseNamespaces()), timeout: 300_000 }, async (t) => {
    const lab = createLab(HOSTS, `embc${process.pid % 10000}${family === 'IPv4' ? 'x' : 'y'}`, { ipv6: family === 'IPv6' })
    const meshDir = mkdtempSync(join(tmpdir(), 'evalmesh-mesh-'))
    createMeshKey(meshDir)
    const nodes: LabNode[] = []
    try {
      // h8 serves TLS (serve --tls): it says so in mDNS TXT caps and in its offers.
      nodes.push(...await Promise.all(Array.from({ length: HOSTS - 1 }, async (_, i) => await startLabNode(lab, i, meshDir, i === HOSTS - 2 ? { args: ['--tls'] } : {}))))
      const driverDir = stateDirWith(meshDir, 'driver')
      // Nodes name a peer by what they know of its key, never by its hello: on the mesh key
      // alone the driver is its node id; h4 knows its key by the label "driver".
      const driverIdentity = loadIdentity(driverDir, { create: true, name: 'driver' })
      addTrustedKey(nodes.find(n => n.name === 'h4')!.stateDir, trustLine(driverIdentity))
      const driverProc = lab.exec(lab.hosts[0]!, [process.execPath, '--no-node-snapshot', DRIVER, driverDir, lab.hosts[0]!.address], { stdio: ['pipe', 'pipe', 'pipe'] })
      const driver = new Driver(driverProc)
      const byName = (name: string): LabNode => nodes.find(n => n.name === name)!

      await t.test('1,000 broadcast evaluations each run on exactly one node (from the nodes\' done records)', async () => {
        const r = await driver.send({ op: 'many', n: 1000, concurrency: 16, form: '6 * 7' })
        const failed = r.results.filter((x: any) => x.error !== undefined)
        assert.deepEqual(failed, [], 'every broadcast found a willing node')
        const txns = new Set<string>(r.results.map((x: any) => x.txn))
        assert.equal(txns.size, 1000)
        const ranOn = new Map<string, string[]>()
        for (const n of nodes) {
          const s = await driver.send({ op: 'status', host: n.host })
          for (const rec of s.records) {
            if (!txns.has(rec.txn)) continue
            assert.equal(rec.mode, 'broadcast')
            ranOn.set(rec.txn, [...(ranOn.get(rec.txn) ?? []), n.name])
          }
        }
        const notExactlyOnce = [...txns].filter(txn => ranOn.get(txn)?.length !== 1)
        assert.deepEqual(notExactlyOnce, [], 'each txn appears in exactly one node\'s done list')
        // The client's answers agree with the records.
        for (const x of r.results) assert.deepEqual(ranOn.get(x.txn), [x.node])
        const used = new Set([...ranOn.values()].flat())
        assert.ok(used.size >= 2, `work spread over more than one node (used: ${[...used].join(', ')})`)
      })

      await t.test('the CLI reaches a node by the name its local node discovered, with TLS when the node advertises it', async () => {
        const h1 = byName('h1')
        await eventually(async () => (await driver.send({ op: 'peers', host: h1.host })).peers.some((p: any) => p.name === 'h8'), 'h1 to discover h8', 20_000)
        // The CLI on h1, from h1's state dir: h1 is its local node, and no peers file names h3 or h8.
        const cli = async (...args: string[]): Promise<{ code: number | null, stdout: string, stderr: string }> => {
          const child = lab.exec(lab.hosts[0]!, [process.execPath, '--no-node-snapshot', CLI, ...args, '--state-dir', h1.stateDir, '--json'])
          let stdout = ''; let stderr = ''
          child.stdout!.on('data', (d: Buffer) => { stdout += String(d) })
          child.stderr!.on('data', (d: Buffer) => { stderr += String(d) })
          const code = await new Promise<number | null>(resolve => child.once('exit', resolve))
          return { code, stdout, stderr }
        }
        const plain = await cli('describe', '--host', 'h3')
        assert.equal(plain.code, 0, plain.stderr)
        const d3 = JSON.parse(plain.stdout).value
        assert.equal(d3.name, 'h3')
        assert.deepEqual(d3.connection, { tls: false, integrity: true }, 'plain TCP between hosts carries frame integrity')
        const tls = await cli('describe', '--host', 'h8')
        assert.equal(tls.code, 0, tls.stderr)
        assert.deepEqual(JSON.parse(tls.stdout).value.connection, { tls: true, integrity: false }, 'TLS chosen from what discovery advertised')
        assert.equal(JSON.parse((await cli('eval', '6 * 7', '--host', 'h8')).stdout).value, 42)
        const unknown = await cli('eval', '1', '--host', 'nobody')
        assert.equal(unknown.code, 1)
        assert.equal(JSON.parse(unknown.stdout).error.code, 'UNKNOWN_HOST')
        assert.match(JSON.parse(unknown.stdout).error.message, /"nobody" .*did not discover it/)
      })

      await t.test('fan-out reaches every willing node', async () => {
        const r = await driver.send({ op: 'all', form: '"hi from " + 1', timeout: 5000 })
        assert.ok(r.ok, r.message)
        const ok = r.outcomes.filter((o: any) => o.status === 'ok').map((o: any) => o.node).sort()
        assert.deepEqual(ok, nodes.map(n => n.name).sort())
      })

      await t.test('hosts and gags: broadcast, directed, named peers and self', async () => {
        const h2 = byName('h2'); const h3 = byName('h3'); const h4 = byName('h4'); const h5 = byName('h5')
        // Policy changes need the node's own key (or an explicitly trusted one): use each node's.
        await driver.send({ op: 'policy', host: h2.host, stateDir: h2.stateDir, change: { gag: ['broadcast'] } })
        await driver.send({ op: 'policy', host: h3.host, stateDir: h3.stateDir, change: { hosts: ['directed'] } })
        await driver.send({ op: 'policy', host: h4.host, stateDir: h4.stateDir, change: { gag: ['driver'] } })
        await driver.send({ op: 'policy', host: h5.host, stateDir: h5.stateDir, change: { gag: ['self'] } })

        const all = await driver.send({ op: 'all', form: '1', timeout: 4000 })
        const status = Object.fromEntries(all.outcomes.map((o: any) => [o.node, o]))
        assert.equal(status.h2?.status, 'refused'); assert.match(status.h2.rule, /gag broadcast/)
        assert.equal(status.h3?.status, 'refused'); assert.match(status.h3.rule, /no service for broadcasts/)
        assert.equal(status.h4?.status, 'refused'); assert.match(status.h4.rule, /gag driver/)
        assert.equal(status.h5?.status, 'ok', 'gag self does not refuse other nodes')

        const many = await driver.send({ op: 'many', n: 100, concurrency: 8, form: '1' })
        const landed = new Set(many.results.map((x: any) => x.node))
        for (const name of ['h2', 'h3', 'h4']) assert.ok(!landed.has(name), `${name} ran a broadcast it should have declined`)

        // Directed requests: h2 and h3 still serve them; h4 refuses the gagged peer by name.
        assert.equal((await driver.send({ op: 'direct', host: h2.host, form: '2' })).value, 2)
        assert.equal((await driver.send({ op: 'direct', host: h3.host, form: '3' })).value, 3)
        const refused = await driver.send({ op: 'direct', host: h4.host, form: '4' })
        assert.equal(refused.code, 'REFUSED'); assert.match(refused.message, /gag driver/)
        // gag self: h5 refuses its own key, directed and broadcast; another node takes the broadcast.
        const self = await driver.send({ op: 'direct', host: h5.host, form: '5', stateDir: h5.stateDir })
        assert.equal(self.code, 'REFUSED'); assert.match(self.message, /gag self/)
        const selfBroadcast = await driver.send({ op: 'one', form: '"taken"', stateDir: h5.stateDir })
        assert.equal(selfBroadcast.value, 'taken')
        assert.notEqual(selfBroadcast.node, 'h5')
        // The decision shows in the declining node's status counters and trace.
        for (const n of [h2, h3, h4, h5]) await driver.send({ op: 'policy', host: n.host, stateDir: n.stateDir, change: { hosts: [], gags: [] } })
      })

      await t.test('a node killed mid-evaluation gives its client a prompt "lost" error; the others carry on', async () => {
        const long = driver.send({ op: 'one', form: busyFor(20_000) })
        const victim = await eventually(async () => {
          for (const n of nodes) {
            const s = await driver.send({ op: 'status', host: n.host, which: 'running' })
            if (s.records?.length > 0) return n
          }
          return undefined
        }, 'the long evaluation to start somewhere', 20_000)
        victim.proc.kill('SIGKILL')
        const r = await long
        assert.equal(r.code, 'LOST', JSON.stringify(r))
        assert.match(r.message, new RegExp(victim.name))
        const after = await driver.send({ op: 'many', n: 50, concurrency: 8, form: '1' })
        assert.deepEqual(after.results.filter((x: any) => x.error !== undefined), [])
        assert.ok(after.results.every((x: any) => x.node !== victim.name))
        nodes.splice(nodes.indexOf(victim), 1)
      })

      await t.test('a node started late with a bare --lan is discovered and used; a stopped node disappears', async () => {
        const late = await startLabNode(lab, HOSTS - 1, meshDir, { lan: true })
        nodes.push(late)
        assert.ok(late.output.some(l => l.includes(`listening on ${late.host} (LAN ${late.address}`)), `--lan found ${late.address}:\n${late.output.join('\n')}`)
        const watcher = nodes[0]!
        await eventually(async () => (await driver.send({ op: 'peers', host: watcher.host })).peers.some((p: any) => p.name === late.name), `${watcher.name} to discover ${late.name}`, 20_000)
        const all = await driver.send({ op: 'all', form: '1', timeout: 4000 })
        assert.ok(all.outcomes.some((o: any) => o.node === late.name && o.status === 'ok'), `${late.name} took part in the fan-out`)
        late.proc.kill('SIGTERM')
        await eventually(async () => !(await driver.send({ op: 'peers', host: watcher.host })).peers.some((p: any) => p.name === late.name), `${late.name} to leave ${watcher.name}'s peer table`, 20_000)
        nodes.pop()
      })

      await t.test('a node whose name is taken on the LAN says so and is advertised as NAME-2', async () => {
        const owner = nodes[0]!
        const twin = await startLabNode(lab, HOSTS - 1, meshDir, { name: owner.name })
        nodes.push(twin)
        const warning = `mDNS: the name ${owner.name} is taken on this LAN (by ${owner.address}); advertising this node as ${owner.name}-2`
        await eventually(() => twin.output.some(l => l.includes(warning)), `the warning, in:\n${twin.output.join('\n')}`, 20_000)
        assert.equal(twin.output.filter(l => l.includes(warning)).length, 1, `the conflict is said once:\n${twin.output.join('\n')}`)
        const watcher = nodes[1]!
        const peers = await eventually(async () => {
          const list = (await driver.send({ op: 'peers', host: watcher.host })).peers as Array<{ name: string, address: string }>
          return list.some(p => p.name === `${owner.name}-2`) && list
        }, `${watcher.name} to list ${owner.name}-2`, 20_000)
        assert.equal(peers.find(p => p.name === `${owner.name}-2`)?.address, twin.address)
        assert.equal(peers.find(p => p.name === owner.name)?.address, owner.address, 'the owner keeps its name')
        twin.proc.kill('SIGTERM')
        await eventually(async () => !(await driver.send({ op: 'peers', host: watcher.host })).peers.some((p: any) => p.name === `${owner.name}-2`), `${owner.name}-2 to leave`, 20_000)
        const after = (await driver.send({ op: 'peers', host: watcher.host })).peers as Array<{ name: string }>
        assert.ok(after.some(p => p.name === owner.name), 'the twin\'s goodbye did not take the owner with it')
        nodes.pop()
      })

      driverProc.stdin!.end()
    } finally {
      for (const n of nodes) n.proc.kill('SIGTERM')
      await new Promise(resolve => setTimeout(resolve, 500))
      lab.destroy()
    }
  })
}

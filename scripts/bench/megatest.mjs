// The Megatest typical CI workload (spec §5: one run, 200 item tests, 5 steps each)
// replayed through the mesh (remoteApply('megatest.<command>') to a node serving the
// area) and, in the same run, directly against SQLite in-process; then 32 concurrent
// clients through the mesh. Client in this process; the node in its own.
//
//   node --no-node-snapshot scripts/bench/megatest.mjs [--quick]
import { rmSync } from 'node:fs'
import { Client } from '../../packages/client/dist/src/index.js'
import { createMegatestService } from '../../packages/megatest/dist/src/index.js'
import { runTypicalWorkload } from './megatest-workload.mjs'
import { fmt, printTable, startNode, tempDir } from './lib.mjs'

const KEYS = ['RELEASE', 'PLATFORM']

/** `clients` clients at once, each replaying its own run of the workload; bounded by count and maxMs. */
async function concurrentClients (node, { clients, tests, steps, maxMs }) {
  const pool = Array.from({ length: clients }, () => new Client({ stateDir: node.stateDir, busyRetries: 50 }))
  try {
    await Promise.all(pool.map(async c => await c.remoteApply('megatest.get-keys', ['bench'], node.host))) // connect, handshake
    const stop = Date.now() + maxMs
    const t = process.hrtime.bigint()
    const results = await Promise.all(pool.map(async (c, i) => await runTypicalWorkload(async (cmd, params) => {
      if (Date.now() > stop) throw new Error(`concurrent-client benchmark exceeded ${maxMs} ms`)
      return await c.remoteApply(`megatest.${cmd}`, ['bench', ...params], node.host)
    }, { tests, steps, concurrency: 1, runname: `c32-${process.pid}-${i}` })))
    const seconds = Number(process.hrtime.bigint() - t) / 1e9
    const calls = results.reduce((n, r) => n + r.calls, 0)
    return { calls, seconds, perSecond: calls / seconds, busyRetries: results.reduce((n, r) => n + r.busyRetries, 0) }
  } finally {
    for (const c of pool) c.close()
  }
}

export async function benchMegatest ({ quick = false } = {}) {
  const tests = quick ? 50 : 200
  const steps = 5
  const concurrency = 8
  const meshDir = tempDir('evalmesh-bench-mt-mesh-')
  const localDir = tempDir('evalmesh-bench-mt-local-')
  // The load limit is raised so that 32 clients measure throughput, not back-off.
  const node = await startNode(['--area', `bench=${meshDir}`, '--keys', KEYS.join(','), '--megatest-load-limit', '256', '--concurrency', '64', '--queue', '4096'])
  const client = new Client({ stateDir: node.stateDir })
  const svc = createMegatestService({ areas: [{ name: 'bench', dir: localDir, keys: KEYS }], loadLimit: 256 })
  try {
    await client.remoteApply('megatest.get-keys', ['bench'], node.host)
    const viaMesh = await runTypicalWorkload(async (cmd, params) => await client.remoteApply(`megatest.${cmd}`, ['bench', ...params], node.host), { tests, steps, concurrency })
    const inProcess = await runTypicalWorkload(async (cmd, params) => await svc.callOrThrow('bench', cmd, params), { tests, steps, concurrency })
    const c32 = await concurrentClients(node, { clients: 32, tests: quick ? 4 : 12, steps, maxMs: 120_000 })

    const rate = r => r.calls / r.seconds
    printTable(`Megatest typical CI workload (1 run, ${tests} item tests x ${steps} steps, ${concurrency} test streams), same run`, ['measure', 'in-process SQLite', 'through the mesh', 'ratio', 'target'], [
      ['API calls', fmt(inProcess.calls), fmt(viaMesh.calls), '', ''],
      ['seconds', fmt(inProcess.seconds, 2), fmt(viaMesh.seconds, 2), fmt(viaMesh.seconds / inProcess.seconds, 2) + 'x', ''],
      ['calls/s', fmt(rate(inProcess)), fmt(rate(viaMesh)), fmt(rate(viaMesh) / rate(inProcess), 3) + 'x', ''],
      ['run ends', JSON.stringify(inProcess.runState), JSON.stringify(viaMesh.runState), '', ''],
      ['32 concurrent clients: calls/s', '', fmt(c32.perSecond), '', '>= 10,000/s'],
      ['32 clients: calls, busy retries', '', `${fmt(c32.calls)}, ${fmt(c32.busyRetries)}`, '', '']
    ])
    return { viaMesh, inProcess, c32 }
  } finally {
    client.close()
    svc.close()
    await node.stop()
    rmSync(meshDir, { recursive: true, force: true })
    rmSync(localDir, { recursive: true, force: true })
  }
}

if (import.meta.url === `file://${process.argv[1]}`) await benchMegatest({ quick: process.argv.includes('--quick') })

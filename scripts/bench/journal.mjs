// The cost of durable transactions (issue 13): directed remoteEval('1+1') throughput
// with 64 in flight and sequential latency, on a node that journals every transaction
// (the default) and on one started --in-memory, in the same run, alternating twice.
import { Client } from '@evalmesh/client'
import { fmt, latency, printTable, startNode, throughput } from './lib.mjs'

async function measure (args, { quick }) {
  const node = await startNode(args)
  const client = new Client({ stateDir: node.stateDir })
  try {
    await client.remoteEval('1+1', node.host)
    const lat = await latency(() => client.remoteEval('1+1', node.host), { count: quick ? 1000 : 4000, warmup: 200 })
    const tp = await throughput(() => client.remoteEval('1+1', node.host), { total: quick ? 10_000 : 40_000, inflight: 64, maxMs: quick ? 3000 : 8000 })
    return { p50: lat.p50, perSecond: tp.perSecond }
  } finally {
    client.close()
    await node.stop()
  }
}

export async function benchJournal ({ quick = false } = {}) {
  console.log('\nDurable transactions: the same directed load on a journalling node and an --in-memory one')
  const runs = { journal: [], memory: [] }
  for (let round = 0; round < 2; round++) {
    runs.journal.push(await measure([], { quick }))
    runs.memory.push(await measure(['--in-memory'], { quick }))
  }
  const best = rs => ({ p50: Math.min(...rs.map(r => r.p50)), perSecond: Math.max(...rs.map(r => r.perSecond)) })
  const j = best(runs.journal); const m = best(runs.memory)
  printTable('best of two rounds each', ['node', 'p50 µs', 'evals/s, 64 in flight'], [
    ['in memory (baseline)', fmt(m.p50), fmt(m.perSecond)],
    ['journalling (default)', fmt(j.p50), fmt(j.perSecond)]
  ])
  console.log(`journalling throughput / in-memory: ${fmt(j.perSecond / m.perSecond, 2)}x (target: at least 0.90x)`)
}

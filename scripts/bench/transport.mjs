// The cost of transport protection (issue 12): the directed bench, remoteEval('1+1')
// sequential latency and throughput with 64 in flight, plus a 256 KiB result, over plain
// TCP, plain TCP with frame integrity (PROTOCOL.md §2.4, forced on loopback) and TLS 1.3
// (`serve --tls`, §2.5), in one run, alternating twice, on loopback.
import { Client } from '@evalmesh/client'
import { fmt, latency, printTable, startNode, throughput } from './lib.mjs'

const VARIANTS = [
  { name: 'plain TCP (loopback default)', serve: [], client: {} },
  { name: 'TCP + frame integrity (HMAC-SHA256)', serve: ['--integrity', 'always'], client: { integrity: 'always' } },
  { name: 'TLS 1.3 (serve --tls)', serve: ['--tls'], client: { tls: true } }
]

async function measure (variant, { quick }) {
  const node = await startNode(['--in-memory', ...variant.serve])
  const client = new Client({ stateDir: node.stateDir, ...variant.client })
  try {
    await client.remoteEval('1+1', node.host)
    const lat = await latency(() => client.remoteEval('1+1', node.host), { count: quick ? 1000 : 4000, warmup: 200 })
    const big = await latency(() => client.remoteEval('"x".repeat(262144)', node.host), { count: quick ? 100 : 400, warmup: 20 })
    const tp = await throughput(() => client.remoteEval('1+1', node.host), { total: quick ? 10_000 : 40_000, inflight: 64, maxMs: quick ? 3000 : 8000 })
    return { p50: lat.p50, bigP50: big.p50, perSecond: tp.perSecond }
  } finally {
    client.close()
    await node.stop()
  }
}

export async function benchTransport ({ quick = false } = {}) {
  console.log('\nTransport protection: the same directed load over plain TCP, with frame integrity, and over TLS')
  const runs = VARIANTS.map(() => [])
  for (let round = 0; round < 2; round++) {
    for (const [i, v] of VARIANTS.entries()) runs[i].push(await measure(v, { quick }))
  }
  const best = rs => ({ p50: Math.min(...rs.map(r => r.p50)), bigP50: Math.min(...rs.map(r => r.bigP50)), perSecond: Math.max(...rs.map(r => r.perSecond)) })
  const results = runs.map(best)
  const base = results[0]
  printTable('best of two rounds each, same run', ['transport', '1+1 p50 µs', '256 KiB result p50 µs', 'evals/s, 64 in flight', 'vs plain'],
    VARIANTS.map((v, i) => [v.name, fmt(results[i].p50), fmt(results[i].bigP50), fmt(results[i].perSecond), `${fmt(results[i].perSecond / base.perSecond, 2)}x`]))
}

if (import.meta.url === `file://${process.argv[1]}`) await benchTransport({ quick: process.argv.includes('--quick') })

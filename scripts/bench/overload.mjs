// Overload (issue 9): open-loop arrivals at 10x what the node completes, with the
// default time-bounded queue and, in the same run, with waiting left unbounded (the
// old behaviour). Reports the latency of accepted work, how much was refused BUSY with
// what retry-after, and the latency of a trivial `1+1` another client sends meanwhile.
import { Client } from '@evalmesh/client'
import { addTrustedKey, loadIdentity, trustLine } from '@evalmesh/trust'
import { fmt, percentile, printTable, startNode, tempDir } from './lib.mjs'

const WORK = '{ const until = Date.now() + 5; while (Date.now() < until) {} ; 1 }'

async function capacity (client, host, ms) {
  let done = 0
  const end = Date.now() + ms
  await Promise.all(Array.from({ length: 16 }, async (_, i) => {
    while (Date.now() < end) { await client.remoteEval(WORK, host, { session: `c${i}` }); done++ }
  }))
  return done / (ms / 1000)
}

async function overload (nodeArgs, { quick }) {
  const node = await startNode(['--concurrency', '4', '--timeout', '10000', ...nodeArgs])
  const load = new Client({ stateDir: node.stateDir, busyRetries: 0 })
  // The probe is a second client, with a key of its own that the node trusts.
  const probeDir = tempDir()
  const probe = new Client({ stateDir: probeDir })
  addTrustedKey(node.stateDir, trustLine(probe.identity))
  addTrustedKey(probeDir, trustLine(loadIdentity(node.stateDir)))
  try {
    const rate = await capacity(load, node.host, quick ? 1000 : 2000)
    const offered = rate * 10
    const seconds = quick ? 1.5 : 3
    const total = Math.min(20_000, Math.round(offered * seconds))
    const accepted = []
    const retryAfter = []
    let busy = 0; let failed = 0
    const probes = []
    const start = Date.now()
    const inflight = []
    let sent = 0
    const probeTimer = setInterval(() => {
      const t0 = performance.now()
      probes.push(probe.remoteEval('1 + 1', node.host, { session: 'probe' }).then(() => performance.now() - t0, () => NaN))
    }, 100)
    while (sent < total && Date.now() - start < seconds * 1000 + 2000) {
      const due = Math.min(total, Math.floor(((Date.now() - start) / 1000) * offered))
      for (; sent < due; sent++) {
        const t0 = performance.now()
        inflight.push(load.remoteEval(WORK, node.host).then(
          () => { accepted.push(performance.now() - t0) },
          err => { if (err.code === 'BUSY') { busy++; retryAfter.push(err.data?.retryAfterMs ?? 0) } else failed++ }
        ))
      }
      await new Promise(resolve => setTimeout(resolve, 5))
    }
    clearInterval(probeTimer)
    await Promise.all(inflight)
    const probeMs = (await Promise.all(probes)).filter(Number.isFinite).sort((a, b) => a - b)
    accepted.sort((a, b) => a - b)
    retryAfter.sort((a, b) => a - b)
    return { rate, offered, sent, accepted, busy, failed, retryAfter, probeMs }
  } finally {
    load.close(); probe.close()
    await node.stop()
  }
}

export async function benchOverload ({ quick = false } = {}) {
  console.log('\nOverload: open-loop arrivals at 10x capacity (5 ms forms, concurrency 4); a second client sends 1+1 every 100 ms')
  const bounded = await overload([], { quick })
  const unbounded = await overload(['--queue', '100000', '--quota', 'maxQueueWaitMs=3600000', '--quota', 'queuedPerClient=100000'], { quick })
  const row = (name, r) => [
    name, fmt(r.rate), fmt(r.offered), fmt(r.sent), fmt(r.accepted.length), fmt(r.busy), fmt(r.failed),
    fmt(percentile(r.accepted, 0.5)), fmt(percentile(r.accepted, 0.99)),
    fmt(percentile(r.retryAfter, 0.5)), fmt(percentile(r.probeMs, 0.5), 1), fmt(percentile(r.probeMs, 0.99), 1)
  ]
  printTable('accepted work and a trivial probe under 10x overload (ms)',
    ['queue', 'capacity/s', 'offered/s', 'sent', 'accepted', 'BUSY', 'other errors', 'accepted p50', 'accepted p99', 'retry-after p50', 'probe p50', 'probe p99'],
    [row('time-bounded (default)', bounded), row('unbounded (baseline)', unbounded)])
  const ratio = percentile(bounded.accepted, 0.99) / Math.max(1, percentile(bounded.accepted, 0.5))
  console.log(`accepted p99 / p50 with the default queue: ${fmt(ratio, 1)}x; probe p99 ${fmt(percentile(bounded.probeMs, 0.99), 1)} ms vs ${fmt(percentile(unbounded.probeMs, 0.99), 1)} ms unbounded`)
}

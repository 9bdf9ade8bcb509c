#!/usr/bin/env node
// Throughput of sandbox.run('1+1') with a fixed number of runs in flight, in one
// session and spread over several. Bounded in count and time.
// Usage: node packages/sandbox/bench/sandbox-bench.mjs [runs=20000] [inflight=64]
import { performance } from 'node:perf_hooks'
import { createSandbox } from '../dist/src/index.js'

const total = Number(process.argv[2] ?? 20000)
const inflight = Number(process.argv[3] ?? 64)
const limits = { timeoutMs: 1000, memoryMb: 64, resultBytes: 1 << 20, outputBytes: 1 << 16 }
const sandbox = createSandbox({ limits, grants: ['evalserver.status'], hostCall: async () => ({ ok: true }) })
await sandbox.start()

async function measure (label, sessions, form) {
  let sent = 0
  let done = 0
  let failed = 0
  const deadline = Date.now() + 30_000
  const t0 = performance.now()
  await new Promise(resolve => {
    const next = () => {
      if (sent >= total || Date.now() > deadline) {
        if (done === sent) resolve()
        return
      }
      const i = sent++
      sandbox.run({ txn: `b/${i}`, session: `bench/${i % sessions}`, form, limits }).then(r => {
        if (!r.ok) failed++
        done++
        next()
      })
    }
    for (let i = 0; i < inflight; i++) next()
  })
  const s = (performance.now() - t0) / 1000
  console.log(`${label.padEnd(44)} ${String(done).padStart(6)} runs ${(done / s).toFixed(0).padStart(7)} runs/s  failed ${failed}`)
}

// Warm up the sessions and V8's compilation cache.
await measure('warm-up', 8, '1+1')
await measure(`'1+1', ${inflight} in flight, 1 session`, 1, '1+1')
await measure(`'1+1', ${inflight} in flight, 8 sessions`, 8, '1+1')
await measure(`'globalThis.x = (globalThis.x|0) + 1', ${inflight} in flight, 1 session`, 1, 'globalThis.x = (globalThis.x|0) + 1')
await measure(`'await evalserver.status()', ${inflight}, 8 sess`, 8, 'await evalserver.status()')
await sandbox.stop()

// Runs inside the first lab host: measures directed and broadcast round trips and
// counts where 1,000 broadcasts ran. Prints one JSON line.
//   node --no-node-snapshot broadcast-driver.mjs STATE_DIR LAN_ADDR DIRECT_HOST HOSTS_JSON N_SAMPLES N_ONCE
import { Client } from '../../packages/client/dist/src/index.js'
import { latency } from './lib.mjs'

const [stateDir, lan, directHost, hostsJson, samples, once] = process.argv.slice(2)
const hosts = JSON.parse(hostsJson)
const client = new Client({ stateDir, broadcast: { interface: lan }, busyRetries: 20 })
const out = {}
await client.remoteEval('1+1', directHost)
out.directed = await latency(() => client.remoteEval('1+1', directHost), { count: Number(samples), warmup: 50 })
out.broadcast = await latency(() => client.remoteEval('1+1'), { count: Number(samples), warmup: 50 })
const txns = new Map()
let next = 0
let failed = 0
const errors = {}
await Promise.all(Array.from({ length: 16 }, async () => {
  while (next < Number(once)) {
    next++
    try { const r = await client.evalDetailed('1+1'); txns.set(r.txn, 0) } catch (err) { failed++; errors[err.code] = (errors[err.code] ?? 0) + 1; errors.last = err.message }
  }
}))
for (const h of hosts) {
  for (const rec of await client.status(h, { which: 'done' })) {
    if (txns.has(rec.txn)) txns.set(rec.txn, txns.get(rec.txn) + 1)
  }
}
const stats = {}
for (const h of hosts) {
  const b = (await client.describe(h)).broadcast
  for (const [k, v] of Object.entries(b)) if (typeof v === 'number') stats[k] = (stats[k] ?? 0) + v
  for (const [k, v] of Object.entries(b.datagrams.dropped)) stats['dropped.' + k] = (stats['dropped.' + k] ?? 0) + v
}
out.nodeStats = stats
out.clientDatagrams = client.broadcastCounters?.() ?? null
const counts = [...txns.values()]
out.once = { asked: Number(once), answered: txns.size, failed, exactlyOnce: counts.filter(c => c === 1).length, twice: counts.filter(c => c > 1).length, none: counts.filter(c => c === 0).length, errors }
client.close()
console.log(JSON.stringify(out))
process.exit(0)

// The mesh over NATS (issue 14), all in one run on loopback with one nats-server:
// directed remoteEval('1+1') through NATS beside the same node over direct TCP and beside
// a raw NATS request/reply (the baseline); then broadcast with 32 nodes on NATS beside the
// same raw request/reply. Round trips p50/p99 and throughput with requests in flight.
import { fork, spawn, spawnSync } from 'node:child_process'
import { createServer } from 'node:net'
import { join } from 'node:path'
import { Client } from '../../packages/client/dist/src/index.js'
import { NatsCarrier } from '../../packages/nats/dist/src/index.js'
import { ROOT, fmt, latency, meshStateDirs, printTable, startNode, throughput } from './lib.mjs'

export function canRunNats () {
  const r = spawnSync('nats-server', ['--version'])
  return r.error === undefined && r.status === 0 ? undefined : 'nats-server is not installed (apt-get install nats-server)'
}

async function freePort () {
  return await new Promise((resolve, reject) => {
    const s = createServer()
    s.once('error', reject)
    s.listen(0, '127.0.0.1', () => { const { port } = s.address(); s.close(() => resolve(port)) })
  })
}

async function startNatsServer () {
  const port = await freePort()
  const proc = spawn('nats-server', ['-a', '127.0.0.1', '-p', String(port)], { stdio: ['ignore', 'pipe', 'pipe'] })
  let out = ''
  proc.stderr.on('data', d => { out += d })
  await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`nats-server did not start:\n${out}`)), 10_000)
    proc.stderr.on('data', () => { if (/Server is ready/.test(out)) { clearTimeout(timer); resolve() } })
    proc.once('exit', c => { clearTimeout(timer); reject(new Error(`nats-server exited ${c}:\n${out}`)) })
  })
  return { url: `nats://127.0.0.1:${port}`, stop: () => new Promise(resolve => { proc.once('exit', resolve); proc.kill('SIGTERM') }) }
}

export async function benchNats ({ quick = false } = {}) {
  const why = canRunNats()
  if (why !== undefined) { console.log(`\nNATS: skipped (${why})`); return }
  const n = quick ? 0.2 : 1
  const hosts = quick ? 8 : 32
  const server = await startNatsServer()
  const stateFor = meshStateDirs()
  const echo = fork(join(ROOT, 'scripts', 'bench', 'nats-echo.mjs'), [server.url], { stdio: 'ignore' })
  const nodes = []
  const clients = []
  let raw
  try {
    await new Promise(resolve => echo.once('message', resolve))
    raw = await NatsCarrier.connect({ servers: [server.url] })
    const payload = Buffer.from([0, 0, 0, 4, 0x31, 0x2b, 0x31, 0x0a])
    const rawCall = () => raw.nc.request('bench.echo', payload, { timeout: 5000 })

    // ---- directed: one node, over NATS and over TCP ----
    const first = await startNode(['--nats', server.url, '--concurrency', '64', '--name', 'n1'], stateFor('n1'))
    nodes.push(first)
    const viaTcp = new Client({ stateDir: stateFor('client-tcp') })
    // Frame integrity is always on over NATS; on loopback TCP it is off unless asked for.
    const viaTcpTagged = new Client({ stateDir: stateFor('client-tcp-tagged'), integrity: 'always' })
    const viaNats = new Client({ stateDir: stateFor('client-nats'), nats: { servers: [server.url] } })
    clients.push(viaTcp, viaTcpTagged, viaNats)
    const calls = {
      raw: rawCall,
      tcp: () => viaTcp.remoteEval('1+1', first.host),
      tagged: () => viaTcpTagged.remoteEval('1+1', first.host),
      nats: () => viaNats.remoteEval('1+1', 'n1')
    }
    for (const k of ['tcp', 'tagged', 'nats']) await calls[k]()
    const lat = {}
    const tp = {}
    for (const [k, call] of Object.entries(calls)) lat[k] = await latency(call, { count: (k === 'raw' ? 5000 : 3000) * n })
    for (const [k, call] of Object.entries(calls)) tp[k] = await throughput(call, { total: (k === 'raw' ? 50_000 : 20_000) * n, inflight: 64 })
    const row = (label, get, digits, inverse) => [label, ...['raw', 'tcp', 'tagged', 'nats'].map(k => fmt(get(k), digits)),
      fmt(get('nats') / get('raw'), inverse ? 3 : 2) + 'x', fmt(get('nats') / get('tagged'), inverse ? 3 : 2) + 'x']
    printTable('Directed remoteEval("1+1") through NATS vs direct TCP vs raw NATS request/reply, same run (one nats-server on loopback)',
      ['measure', 'raw NATS req/reply', 'remoteEval TCP', 'TCP + integrity', 'remoteEval NATS', 'NATS / raw', 'NATS / TCP+integrity'], [
        row('round trip p50 (µs)', k => lat[k].p50, 1, false),
        row('round trip p99 (µs)', k => lat[k].p99, 1, false),
        row('throughput, 64 in flight (/s)', k => tp[k].perSecond, 0, true)
      ])
    console.log('target: directed over NATS p50 <= 1.5x raw NATS request/reply')

    // ---- a node dying mid-evaluation: how long until the waiting client hears LOST ----
    const deaths = []
    for (let round = 0; round < 3; round++) {
      const name = `victim${round}`
      const victim = await startNode(['--nats', server.url, '--name', name], stateFor(name))
      await viaNats.remoteEval('1', name)
      const pending = viaNats.remoteEval('{ const u = Date.now() + 60000; while (Date.now() < u) {} }', name).then(() => 'finished', err => err.code)
      await new Promise(resolve => setTimeout(resolve, 300))
      const t = process.hrtime.bigint()
      process.kill(victim.pid, 'SIGKILL')
      const code = await pending
      deaths.push({ ms: Number(process.hrtime.bigint() - t) / 1e6, code })
      await victim.stop()
    }
    printTable('A node killed (SIGKILL) mid-evaluation: until the client waiting through NATS gets its error, same run',
      ['round', 'error', 'ms after the kill', 'target'], deaths.map((d, i) => [String(i + 1), d.code, fmt(d.ms, 0), '< 2000 ms']))

    // ---- broadcast: `hosts` nodes on NATS ----
    for (let i = 2; i <= hosts; i += 8) {
      const batch = Array.from({ length: Math.min(8, hosts - i + 1) }, (_, k) => `n${i + k}`)
      nodes.push(...await Promise.all(batch.map(async name => await startNode(['--nats', server.url, '--concurrency', '4', '--name', name], stateFor(name)))))
    }
    const bc = new Client({ stateDir: stateFor('client-bc'), nats: { servers: [server.url] }, broadcastTimeoutMs: 10_000 })
    // The same nodes asked by UDP unicast instead (each takes queries on its port): how much
    // of a broadcast's cost is NATS, and how much is every node answering every query.
    const udp = new Client({ stateDir: stateFor('client-udp'), broadcast: { targets: nodes.map(x => ({ address: '127.0.0.1', port: x.port })) }, broadcastTimeoutMs: 10_000 })
    clients.push(bc, udp)
    const bcCall = () => bc.remoteEval('1+1', undefined)
    const udpCall = () => udp.remoteEval('1+1', undefined)
    for (let i = 0; i < 20; i++) { await bcCall(); await udpCall() } // streams and connections to the nodes that win offers
    const rawLat2 = await latency(rawCall, { count: 2000 * n })
    const bcLat = await latency(bcCall, { count: 500 * n, warmup: 50 })
    const udpLat = await latency(udpCall, { count: 500 * n, warmup: 50 })
    const rawTp2 = await throughput(rawCall, { total: 20_000 * n, inflight: 16 })
    const bcTp = await throughput(bcCall, { total: 2000 * n, inflight: 16 })
    const udpTp = await throughput(udpCall, { total: 2000 * n, inflight: 16 })
    const all = await bc.remoteEvalAll('1', { timeout: 10_000 })
    printTable(`Broadcast remoteEval("1+1") with ${hosts} nodes on NATS vs raw NATS request/reply, and vs the same nodes asked over UDP, same run`,
      ['measure', 'raw NATS req/reply', 'broadcast NATS', 'broadcast UDP', 'NATS / raw', 'NATS / UDP'], [
        ['round trip p50 (µs)', fmt(rawLat2.p50, 1), fmt(bcLat.p50, 1), fmt(udpLat.p50, 1), fmt(bcLat.p50 / rawLat2.p50, 2) + 'x', fmt(bcLat.p50 / udpLat.p50, 2) + 'x'],
        ['round trip p99 (µs)', fmt(rawLat2.p99, 1), fmt(bcLat.p99, 1), fmt(udpLat.p99, 1), fmt(bcLat.p99 / rawLat2.p99, 2) + 'x', fmt(bcLat.p99 / udpLat.p99, 2) + 'x'],
        ['throughput, 16 in flight (/s)', fmt(rawTp2.perSecond), fmt(bcTp.perSecond), fmt(udpTp.perSecond), fmt(bcTp.perSecond / rawTp2.perSecond, 3) + 'x', fmt(bcTp.perSecond / udpTp.perSecond, 3) + 'x'],
        ['fan-out over NATS: nodes answering ok', '', `${all.outcomes.filter(o => o.status === 'ok').length} / ${hosts}`, '', '', '']
      ])
    console.log('target: broadcast over NATS with 32 nodes p50 <= 3x raw NATS request/reply')
    return { lat, tp, deaths, bcLat, bcTp, udpLat, udpTp }
  } finally {
    for (const c of clients) c.close()
    await raw?.close()
    echo.kill()
    await Promise.all(nodes.map(async x => await x.stop()))
    await server.stop()
  }
}

if (import.meta.url === `file://${process.argv[1]}`) await benchNats({ quick: process.argv.includes('--quick') })

// A client process of the peers benchmark for the Node systems (evalmesh, CDP).
//   node node-client.mjs '<json config>'
// config: { system: 'evalmesh'|'cdp'|'echo', target, stateDir?, wsModule?, mode: 'lat'|'tp',
//           work: 'trivial'|'named'|'realistic'|'realistic-local'|'ping'|'apply'|'echo', warmup, count, maxMs, inflight, ms }
// 'named' is `n = 1 + 1` in a session of its own: a form that names a variable, so it runs
// in the client's sandbox process, where a pure form such as `1+1` is answered by the node.
// The latency line also has the client's CPU per call (`cpuUs`).
// It connects, checks one answer, warms up, prints "ready", waits for a line on stdin,
// measures, prints one JSON line and exits. Every loop is bounded in count and time.
import { connect } from 'node:net'
import { isDeepStrictEqual } from 'node:util'
import { TRIVIAL, realisticExpected, realisticForm } from './forms.mjs'

const cfg = JSON.parse(process.argv[2])
const percentile = (sorted, p) => sorted[Math.min(sorted.length - 1, Math.floor(p / 100 * sorted.length))]

async function evalmeshCaller () {
  const { Client } = await import('../../../packages/client/dist/src/index.js')
  const client = new Client({ stateDir: cfg.stateDir })
  const form = cfg.work === 'realistic' ? realisticForm() : cfg.work === 'realistic-local' ? realisticForm({ hostCall: false }) : TRIVIAL
  let call
  if (cfg.work === 'ping') call = () => client.ping(cfg.target)
  else if (cfg.work === 'apply') call = () => client.remoteApply('noop', [], cfg.target)
  else if (cfg.work === 'named') call = () => client.remoteEval('n = 1 + 1', cfg.target, { session: 'named' })
  else call = () => client.remoteEval(form, cfg.target)
  const first = await call()
  if ((cfg.work === 'trivial' || cfg.work === 'named') && first !== 2) throw new Error(`evalmesh answered ${JSON.stringify(first)} to 1+1`)
  if (cfg.work.startsWith('realistic') && !isDeepStrictEqual(first, realisticExpected())) throw new Error(`evalmesh answered the realistic form wrongly: ${JSON.stringify(first)}`)
  return { call, close: () => client.close() }
}

async function cdpCaller () {
  let ws
  if (cfg.wsModule) {
    const { default: WebSocket } = await import(cfg.wsModule)
    ws = new WebSocket(cfg.target, { perMessageDeflate: false })
    ws.binaryType = 'nodebuffer'
    await new Promise((resolve, reject) => { ws.once('open', resolve); ws.once('error', reject) })
    ws._socket.setNoDelay(true)
  } else {
    ws = new globalThis.WebSocket(cfg.target) // Node's built-in (undici) client
    await new Promise((resolve, reject) => { ws.onopen = resolve; ws.onerror = reject })
  }
  const pending = new Map()
  let id = 0
  const onMessage = (data) => {
    const m = JSON.parse(typeof data === 'string' ? data : data.toString())
    const p = pending.get(m.id)
    if (p === undefined) return
    pending.delete(m.id)
    if (m.error) p.reject(new Error(m.error.message))
    else if (m.result.exceptionDetails) p.reject(new Error(m.result.exceptionDetails.exception?.description ?? m.result.exceptionDetails.text))
    else p.resolve(m.result.result.value)
  }
  if (cfg.wsModule) ws.on('message', onMessage)
  else ws.onmessage = (e) => onMessage(e.data)
  const params = cfg.work === 'realistic'
    ? { expression: realisticForm(), returnByValue: true, awaitPromise: true }
    : { expression: TRIVIAL, returnByValue: true }
  const call = () => new Promise((resolve, reject) => {
    const i = ++id
    pending.set(i, { resolve, reject })
    ws.send(JSON.stringify({ id: i, method: 'Runtime.evaluate', params }))
  })
  const first = await call()
  if (cfg.work === 'trivial' && first !== 2) throw new Error(`CDP answered ${JSON.stringify(first)} to 1+1`)
  if (cfg.work.startsWith('realistic') && !isDeepStrictEqual(first, realisticExpected())) throw new Error(`CDP answered the realistic form wrongly: ${JSON.stringify(first)}`)
  return { call, close: () => ws.close() }
}

/** The raw TCP echo of scripts/bench/echo-server.mjs: a 4-byte length prefix and "1+1\n". */
async function echoCaller () {
  const [host, port] = cfg.target.split(':')
  const socket = connect({ port: Number(port), host, noDelay: true })
  await new Promise((resolve, reject) => { socket.once('connect', resolve); socket.once('error', reject) })
  const waiting = []
  let buf = Buffer.alloc(0)
  socket.on('data', (chunk) => {
    buf = buf.length === 0 ? chunk : Buffer.concat([buf, chunk])
    while (buf.length >= 4 && buf.length >= 4 + buf.readUInt32BE(0)) {
      buf = buf.subarray(4 + buf.readUInt32BE(0))
      waiting.shift()()
    }
  })
  const frame = Buffer.from([0, 0, 0, 4, 0x31, 0x2b, 0x31, 0x0a])
  return { call: () => new Promise(resolve => { waiting.push(resolve); socket.write(frame) }), close: () => socket.destroy() }
}

async function latency (call) {
  const samples = []
  const cpu = process.cpuUsage()
  const stop = Date.now() + cfg.maxMs
  for (let i = 0; i < cfg.count && Date.now() < stop; i++) {
    const t = process.hrtime.bigint()
    await call()
    samples.push(Number(process.hrtime.bigint() - t) / 1000)
  }
  const used = process.cpuUsage(cpu)
  samples.sort((a, b) => a - b)
  return { n: samples.length, p50: percentile(samples, 50), p99: percentile(samples, 99), cpuUs: (used.user + used.system) / samples.length }
}

async function throughput (call) {
  let done = 0
  const t = process.hrtime.bigint()
  const stop = Date.now() + cfg.ms
  await Promise.all(Array.from({ length: cfg.inflight }, async () => {
    while (Date.now() < stop) { await call(); done++ }
  }))
  return { n: done, seconds: Number(process.hrtime.bigint() - t) / 1e9 }
}

const caller = await ({ evalmesh: evalmeshCaller, cdp: cdpCaller, echo: echoCaller })[cfg.system]()
if (cfg.mode === 'tp') {
  const stop = Date.now() + cfg.maxMs
  await Promise.all(Array.from({ length: cfg.inflight }, async () => {
    for (let i = 0; i < Math.ceil(cfg.warmup / cfg.inflight) && Date.now() < stop; i++) await caller.call()
  }))
} else {
  for (let i = 0; i < cfg.warmup; i++) await caller.call()
}
process.stdout.write('ready\n')
await new Promise(resolve => process.stdin.once('data', resolve))
const result = cfg.mode === 'tp' ? await throughput(caller.call) : await latency(caller.call)
process.stdout.write(JSON.stringify(result) + '\n')
caller.close()
process.exit(0)

// Directed remoteEval('1+1') against a raw TCP echo of a 4-byte length-prefixed frame,
// measured in the same run: round trip p50/p99 on an open connection, and throughput
// with 64 requests in flight. Client in this process; node and echo server in their own.
import { fork } from 'node:child_process'
import { createRequire } from 'node:module'
import { connect } from 'node:net'
import { join } from 'node:path'
import { Client } from '../../packages/client/dist/src/index.js'
import { createSandbox } from '../../packages/sandbox/dist/src/index.js'
import { ROOT, fmt, latency, printTable, startNode, throughput } from './lib.mjs'

async function echoClient (port) {
  const socket = connect({ port, host: '127.0.0.1', noDelay: true })
  await new Promise((resolve, reject) => { socket.once('connect', resolve); socket.once('error', reject) })
  const waiting = []
  let buf = Buffer.alloc(0)
  socket.on('data', (chunk) => {
    buf = buf.length === 0 ? chunk : Buffer.concat([buf, chunk])
    while (buf.length >= 4 && buf.length >= 4 + buf.readUInt32BE(0)) {
      const len = buf.readUInt32BE(0)
      buf = buf.subarray(4 + len)
      waiting.shift()()
    }
  })
  const frame = Buffer.from([0, 0, 0, 4, 0x31, 0x2b, 0x31, 0x0a])
  return {
    call: () => new Promise(resolve => { waiting.push(resolve); socket.write(frame) }),
    close: () => socket.destroy()
  }
}

/**
 * The hops a remoteEval cannot avoid while the isolate lives in its own killable
 * process (issue 2): an IPC round trip to a child and an async isolated-vm call (async so
 * that the sandbox process stays free to take an abort), each measured alone.
 */
export async function whereTheTimeGoes (echoProc, { count }) {
  const message = [1, 'session', '1+1', 30000, 128, 16777216, 65536]
  const ipc = await latency(() => new Promise(resolve => { echoProc.once('message', resolve); echoProc.send(message) }), { count })
  const ivm = createRequire(join(ROOT, 'packages', 'sandbox', 'package.json'))('isolated-vm')
  const isolate = new ivm.Isolate({ memoryLimit: 128 })
  const context = isolate.createContextSync()
  const ivmLat = await latency(() => context.eval('1+1', { timeout: 30000 }), { count })
  isolate.dispose()
  const limits = { timeoutMs: 30000, memoryMb: 128, resultBytes: 16777216, outputBytes: 65536 }
  const sandbox = createSandbox({ limits, grants: [], hostCall: async () => undefined })
  await sandbox.start()
  let seq = 0
  const runLat = (form, session) => latency(async () => {
    const r = await sandbox.run({ txn: `bench:${++seq}`, session, form, limits })
    if (!r.ok) throw new Error(`sandbox.run failed: ${r.error.code} ${r.error.message}`)
  }, { count })
  // A pure form is answered in this process (sandbox/src/inline.ts); one that names a variable goes to a sandbox process.
  const sandboxLat = await runLat('1+1', 'bench/pure')
  const sandboxNamed = await runLat('n = 1+1', 'bench/named')
  await sandbox.stop()
  return { ipc, ivm: ivmLat, sandbox: sandboxLat, sandboxNamed }
}

export async function benchDirected ({ quick = false } = {}) {
  const n = quick ? 0.2 : 1
  const echoProc = fork(join(ROOT, 'scripts', 'bench', 'echo-server.mjs'), [], { stdio: 'ignore', serialization: 'advanced' })
  const echoPort = await new Promise(resolve => echoProc.once('message', m => resolve(m.port)))
  const node = await startNode(['--concurrency', '64'])
  const client = new Client({ stateDir: node.stateDir })
  try {
    const echo = await echoClient(echoPort)
    await client.remoteEval('1+1', node.host) // connect, handshake, first isolate
    const evalCall = () => client.remoteEval('1+1', node.host)

    const echoLat = await latency(echo.call, { count: 5000 * n })
    const evalLat = await latency(evalCall, { count: 5000 * n })
    const echoTp = await throughput(echo.call, { total: 100_000 * n, inflight: 64 })
    const evalTp = await throughput(evalCall, { total: 50_000 * n, inflight: 64 })
    echo.close()

    printTable('Directed remoteEval("1+1") vs raw TCP echo (4-byte length-prefixed frame), same run', ['measure', 'raw echo', 'remoteEval', 'ratio', 'target'], [
      ['round trip p50 (µs)', fmt(echoLat.p50, 1), fmt(evalLat.p50, 1), fmt(evalLat.p50 / echoLat.p50, 2) + 'x', '<= 1.5x'],
      ['round trip p99 (µs)', fmt(echoLat.p99, 1), fmt(evalLat.p99, 1), fmt(evalLat.p99 / echoLat.p99, 2) + 'x', ''],
      ['throughput, 64 in flight (/s)', fmt(echoTp.perSecond), fmt(evalTp.perSecond), fmt(evalTp.perSecond / echoTp.perSecond, 3) + 'x', '>= 30,000/s']
    ])
    const parts = await whereTheTimeGoes(echoProc, { count: 5000 * n })
    const floor = echoLat.p50 + parts.ipc.p50 + parts.ivm.p50
    printTable('Where a remoteEval round trip goes (p50, µs, same run)', ['hop', 'p50 (µs)', 'x raw echo'], [
      ['client <-> node over TCP (the raw echo)', fmt(echoLat.p50, 1), '1.00x'],
      ['node <-> sandbox process over IPC (echo)', fmt(parts.ipc.p50, 1), fmt(parts.ipc.p50 / echoLat.p50, 2) + 'x'],
      ['isolated-vm async call into an isolate', fmt(parts.ivm.p50, 1), fmt(parts.ivm.p50 / echoLat.p50, 2) + 'x'],
      ['floor of a form run in a sandbox process: the three above', fmt(floor, 1), fmt(floor / echoLat.p50, 2) + 'x'],
      ['sandbox.run("1+1") from this process (a pure form: the caller\'s own isolate)', fmt(parts.sandbox.p50, 1), fmt(parts.sandbox.p50 / echoLat.p50, 2) + 'x'],
      ['sandbox.run("n = 1+1") from this process (IPC and isolate)', fmt(parts.sandboxNamed.p50, 1), fmt(parts.sandboxNamed.p50 / echoLat.p50, 2) + 'x'],
      ['remoteEval("1+1"), all of it', fmt(evalLat.p50, 1), fmt(evalLat.p50 / echoLat.p50, 2) + 'x']
    ])
    return { echoLat, evalLat, echoTp, evalTp, parts }
  } finally {
    client.close()
    await node.stop()
    echoProc.kill()
  }
}

if (import.meta.url === `file://${process.argv[1]}`) await benchDirected({ quick: process.argv.includes('--quick') })

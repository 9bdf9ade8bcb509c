#!/usr/bin/env node
// How fast does a LAN of evalmesh nodes converge? Builds a simulated LAN of N network
// namespaces (scripts/netlab.sh; root only), runs one discovery node per host
// (packages/discovery/dist/test/fixtures/runner.js), and prints:
//   cold start:  all N started together -> every node lists the N-1 others
//   late join:   N-1 converged, then the last one starts -> all N list each other
//                (measured from spawning the last node; the target is within 2 s)
// Times come from the nodes' own event timestamps (one machine, one clock).
// The lab is removed at the end, also on error or Ctrl-C.
//
//   node scripts/bench/discovery-bench.mjs [--hosts 32] [--rounds 3]
import { spawn, spawnSync } from 'node:child_process'
import { existsSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { createInterface } from 'node:readline'
import { fileURLToPath } from 'node:url'
import { parseArgs } from 'node:util'

const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..')
const netlab = join(root, 'scripts', 'netlab.sh')
const runner = join(root, 'packages', 'discovery', 'dist', 'test', 'fixtures', 'runner.js')
const { values } = parseArgs({ options: { hosts: { type: 'string', default: '32' }, rounds: { type: 'string', default: '3' } } })
const N = Number(values.hosts)
const ROUNDS = Number(values.rounds)
const PREFIX = `embench${process.pid}_`
const DEADLINE_MS = 30_000 // per phase; the whole run is bounded by phases x this

if (!Number.isInteger(N) || N < 2 || N > 250) { console.error('--hosts must be 2..250'); process.exit(2) }
if (!Number.isInteger(ROUNDS) || ROUNDS < 1 || ROUNDS > 20) { console.error('--rounds must be 1..20'); process.exit(2) }
if (process.getuid?.() !== 0) { console.error('discovery-bench: needs root (network namespaces)'); process.exit(2) }
if (!existsSync(runner)) { console.error(`discovery-bench: ${runner} missing; run: npx tsc -b packages/discovery`); process.exit(2) }

const children = new Set()
let cleaned = false
function cleanup () {
  if (cleaned) return
  cleaned = true
  for (const c of children) if (c.exitCode === null && c.signalCode === null) { try { process.kill(c.pid, 'SIGKILL') } catch {} }
  spawnSync('bash', [netlab, 'down', '--prefix', PREFIX], { stdio: 'ignore' })
}
process.on('exit', cleanup)
for (const sig of ['SIGINT', 'SIGTERM']) process.once(sig, () => { cleanup(); process.kill(process.pid, sig) })

const addr = i => `198.18.${Math.floor(i / 256)}.${i % 256}`
const nodes = new Map() // i -> { child, peers: Map<name, t>, ready, waiters }

function startNode (i) {
  const child = spawn('ip', ['netns', 'exec', `${PREFIX}${i}`, process.execPath, runner,
    '--address', addr(i), '--name', `n${i}`, '--ttl', '120'], { stdio: ['ignore', 'pipe', 'inherit'] })
  children.add(child)
  const node = { child, peers: new Map(), ready: undefined, stopped: false, waiters: new Set() }
  createInterface({ input: child.stdout }).on('line', line => {
    let m
    try { m = JSON.parse(line) } catch { return }
    if (m.ev === 'ready') node.ready = m.t
    if (process.env.BENCH_DEBUG && m.peer?.name === `n${N}`) console.error(`n${i}: ${m.ev} n${N} at ${m.t}`)
    if (m.ev === 'appear') node.peers.set(m.peer.name, m.t)
    if (m.ev === 'disappear') node.peers.delete(m.peer.name)
    if (m.ev === 'stopped') node.stopped = true
    for (const w of node.waiters) w()
  })
  child.once('exit', () => { children.delete(child); for (const w of node.waiters) w() })
  nodes.set(i, node)
  return node
}

function until (pred, what) {
  return new Promise((resolve, reject) => {
    const check = () => { if (pred()) { done(); resolve() } }
    const timer = setTimeout(() => { done(); reject(new Error(`timed out after ${DEADLINE_MS} ms waiting for ${what}`)) }, DEADLINE_MS)
    const done = () => { clearTimeout(timer); for (const n of nodes.values()) n.waiters.delete(check) }
    for (const n of nodes.values()) n.waiters.add(check)
    check()
  })
}

const allSee = ids => ids.every(i => ids.every(j => i === j || nodes.get(i).peers.has(`n${j}`)))
/** When the last needed appear event happened: the moment the mesh was complete. */
const completedAt = ids => Math.max(...ids.flatMap(i => ids.filter(j => j !== i).map(j => nodes.get(i).peers.get(`n${j}`))))
const range = (a, b) => Array.from({ length: b - a + 1 }, (_, k) => a + k)

try {
  const t0 = Date.now()
  const up = spawnSync('bash', [netlab, 'up', String(N), '--prefix', PREFIX], { encoding: 'utf8' })
  if (up.status !== 0) throw new Error(`netlab up failed: ${up.stderr}`)
  console.log(`lab: ${N} hosts up in ${Date.now() - t0} ms`)

  const all = range(1, N)
  const startCold = Date.now()
  for (const i of all) startNode(i)
  await until(() => allSee(all), `all ${N} nodes to see each other`)
  console.log(`cold start: all ${N} nodes list the other ${N - 1} ${completedAt(all) - startCold} ms after the first spawn`)

  const late = []
  for (let r = 0; r < ROUNDS; r++) {
    const last = nodes.get(N)
    last.child.kill('SIGTERM')
    await until(() => last.stopped && range(1, N - 1).every(i => !nodes.get(i).peers.has(`n${N}`)), `n${N} to leave`)
      .catch(err => { throw new Error(`${err.message} (stopped: ${last.stopped}; still listed by ${range(1, N - 1).filter(i => nodes.get(i).peers.has(`n${N}`)).map(i => `n${i}`).join(',')})`) })
    const spawnedAt = Date.now()
    const node = startNode(N)
    await until(() => allSee(all), `all ${N} nodes to see each other again`)
    const ms = completedAt(all) - spawnedAt
    late.push(ms)
    console.log(`late join round ${r + 1}: all ${N} list each other ${ms} ms after spawning n${N} (${completedAt(all) - node.ready} ms after it was ready)`)
  }
  late.sort((a, b) => a - b)
  console.log(`late join: median ${late[Math.floor(late.length / 2)]} ms, max ${late[late.length - 1]} ms over ${ROUNDS} rounds (target: within 2000 ms)`)
} catch (err) {
  console.error(`discovery-bench: ${err.message}`)
  process.exitCode = 1
} finally {
  cleanup()
}

// Broadcast on a simulated LAN (network namespaces; root only): round trip of a broadcast
// remoteEval('1+1') with 8 and 32 hosts, beside a directed remoteEval to one node of the
// same lab (the baseline, same run), and exactly-once counts of 1,000 broadcasts taken
// from the nodes' done records. The lab is removed at the end, also on error.
import { spawn, spawnSync } from 'node:child_process'
import { join } from 'node:path'
import { createInterface } from 'node:readline'
import { CLI, ROOT, fmt, meshStateDirs, printTable } from './lib.mjs'

const netlab = join(ROOT, 'scripts', 'netlab.sh')
const driver = join(ROOT, 'scripts', 'bench', 'broadcast-driver.mjs')

export function canRunLab () {
  if (process.getuid?.() !== 0) return 'needs root (network namespaces)'
  if (spawnSync('ip', ['netns', 'list']).status !== 0) return 'ip netns is not available'
  return undefined
}

async function runLab (n, { samples, once }) {
  const prefix = `embb${process.pid % 10000}n${n}x`
  const children = []
  const up = spawnSync('bash', [netlab, 'up', String(n), '--prefix', prefix], { encoding: 'utf8', env: { ...process.env, NETLAB_QUIET: '1' } })
  if (up.status !== 0) throw new Error(`netlab up failed: ${up.stderr}`)
  try {
    const stateFor = meshStateDirs()
    const addr = (i) => `198.18.${Math.floor(i / 256)}.${i % 256}`
    await Promise.all(Array.from({ length: n }, (_, k) => new Promise((resolve, reject) => {
      const i = k + 1
      const p = spawn('ip', ['netns', 'exec', `${prefix}${i}`, process.execPath, '--no-node-snapshot', CLI, 'serve', '--listen', addr(i), '--name', `h${i}`, '--state-dir', stateFor(`h${i}`), '--concurrency', '16'], { stdio: ['ignore', 'pipe', 'pipe'] })
      children.push(p)
      const timer = setTimeout(() => reject(new Error(`h${i} did not start in 180 s`)), 180_000)
      createInterface({ input: p.stdout }).on('line', (l) => { if (/listening on/.test(l)) { clearTimeout(timer); resolve() } })
      p.once('exit', (c) => { clearTimeout(timer); reject(new Error(`h${i} exited ${c}`)) })
    })))
    const hosts = Array.from({ length: n }, (_, k) => `${addr(k + 1)}:6680`)
    const d = spawn('ip', ['netns', 'exec', `${prefix}1`, process.execPath, '--no-node-snapshot', driver, stateFor('bench'), addr(1), hosts[1], JSON.stringify(hosts), String(samples), String(once)], { stdio: ['ignore', 'pipe', 'inherit'] })
    children.push(d)
    let line = ''
    createInterface({ input: d.stdout }).on('line', (l) => { line = l })
    const code = await new Promise(resolve => d.once('exit', resolve))
    if (code !== 0) throw new Error(`driver exited ${code}`)
    return JSON.parse(line)
  } finally {
    for (const c of children) if (c.exitCode === null && c.signalCode === null) { try { process.kill(c.pid, 'SIGTERM') } catch {} }
    await new Promise(resolve => setTimeout(resolve, 1000))
    for (const c of children) if (c.exitCode === null && c.signalCode === null) { try { process.kill(c.pid, 'SIGKILL') } catch {} }
    spawnSync('bash', [netlab, 'down', '--prefix', prefix], { stdio: 'ignore' })
  }
}

export async function benchBroadcast ({ quick = false } = {}) {
  const why = canRunLab()
  if (why !== undefined) { console.log(`\nBroadcast on a simulated LAN: skipped (${why})`); return }
  const rows = []
  for (const n of (process.env.BENCH_HOSTS ?? '8,32').split(',').map(Number)) {
    const r = await runLab(n, { samples: quick ? 200 : 1000, once: 1000 })
    if (r.once.failed > 0 || r.once.none > 0) {
      console.log(`  ${n} hosts: ${r.once.failed} broadcasts failed (${JSON.stringify(r.once.errors)}), ${r.once.none} not found in any done list`)
      console.log(`  node statistics (summed): ${JSON.stringify(r.nodeStats)}`)
      console.log(`  client datagrams: ${JSON.stringify(r.clientDatagrams)}`)
    }
    rows.push([String(n), fmt(r.directed.p50 / 1000, 2), fmt(r.broadcast.p50 / 1000, 2), fmt(r.broadcast.p99 / 1000, 2),
      fmt(r.broadcast.p50 / r.directed.p50, 2) + 'x', `${r.once.exactlyOnce}/${r.once.asked}` + (r.once.twice > 0 ? ` (${r.once.twice} twice!)` : ''), '< 3 ms'])
  }
  printTable('Broadcast remoteEval("1+1") on a simulated LAN vs directed to one node of the same lab, same run', ['hosts', 'directed p50 (ms)', 'broadcast p50 (ms)', 'broadcast p99 (ms)', 'ratio', 'ran exactly once', 'target p50'], rows)
}

if (import.meta.url === `file://${process.argv[1]}`) await benchBroadcast({ quick: process.argv.includes('--quick') })

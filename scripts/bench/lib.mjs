// Shared helpers for the benchmarks: percentiles, bounded load loops, child nodes.
import { spawn } from 'node:child_process'
import { copyFileSync, mkdtempSync, writeFileSync } from 'node:fs'
import { createMeshKey } from '../../packages/trust/dist/src/index.js'
import { tmpdir } from 'node:os'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'

export const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..')
export const CLI = join(ROOT, 'apps', 'cli', 'bin', 'evalmesh.js')

export function percentile (sorted, p) {
  if (sorted.length === 0) return NaN
  return sorted[Math.min(sorted.length - 1, Math.floor(p / 100 * sorted.length))]
}

/** Sequential round trips: `count` calls (after `warmup`), bounded by `maxMs`. Returns µs samples. */
export async function latency (fn, { count = 5000, warmup = 500, maxMs = 20_000 } = {}) {
  for (let i = 0; i < warmup; i++) await fn()
  const samples = []
  const stop = Date.now() + maxMs
  for (let i = 0; i < count && Date.now() < stop; i++) {
    const t = process.hrtime.bigint()
    await fn()
    samples.push(Number(process.hrtime.bigint() - t) / 1000)
  }
  samples.sort((a, b) => a - b)
  return { n: samples.length, p50: percentile(samples, 50), p99: percentile(samples, 99) }
}

/** `total` calls with `inflight` outstanding at once, bounded by `maxMs`. Returns calls/s. */
export async function throughput (fn, { total = 50_000, inflight = 64, maxMs = 30_000 } = {}) {
  let started = 0
  let done = 0
  const stop = Date.now() + maxMs
  const t = process.hrtime.bigint()
  await Promise.all(Array.from({ length: inflight }, async () => {
    while (started < total && Date.now() < stop) { started++; await fn(); done++ }
  }))
  const seconds = Number(process.hrtime.bigint() - t) / 1e9
  return { n: done, perSecond: done / seconds, seconds }
}

export function tempDir (prefix = 'evalmesh-bench-') {
  return mkdtempSync(join(tmpdir(), prefix))
}

/** A new mesh key, and a maker of named state dirs holding it: their nodes and clients trust each other. */
export function meshStateDirs () {
  const meshDir = tempDir('evalmesh-bench-mesh-')
  createMeshKey(meshDir)
  return (name) => {
    const d = tempDir(`evalmesh-bench-${name}-`)
    copyFileSync(join(meshDir, 'mesh.key'), join(d, 'mesh.key'))
    writeFileSync(join(d, 'node.name'), name + '\n')
    return d
  }
}

/** Start `evalmesh serve` in a child process; resolves with { host, port, pid, stateDir, stop }. */
export async function startNode (args = [], stateDir = tempDir(), nodeFlags = []) {
  const proc = spawn(process.execPath, ['--no-node-snapshot', ...nodeFlags, CLI, 'serve', '--port', '0', '--state-dir', stateDir, ...args], { stdio: ['ignore', 'pipe', 'pipe'] })
  let out = ''
  proc.stdout.on('data', c => { out += c })
  proc.stderr.on('data', c => { out += c })
  const port = await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('node did not start:\n' + out)), 20_000)
    proc.stdout.on('data', () => { const m = /listening on [^\s]+:(\d+)/.exec(out); if (m) { clearTimeout(timer); resolve(Number(m[1])) } })
    proc.once('exit', code => { clearTimeout(timer); reject(new Error(`node exited ${code}:\n${out}`)) })
  })
  return {
    port, stateDir, host: `127.0.0.1:${port}`, pid: proc.pid,
    stop: () => proc.exitCode !== null || proc.signalCode !== null
      ? Promise.resolve()
      : new Promise(resolve => { proc.once('exit', resolve); proc.kill('SIGTERM'); setTimeout(() => proc.kill('SIGKILL'), 10_000).unref() })
  }
}

export function fmt (n, digits = 0) {
  return Number.isFinite(n) ? n.toLocaleString('en-US', { maximumFractionDigits: digits, minimumFractionDigits: digits }) : 'n/a'
}

export function printTable (title, headers, rows) {
  const widths = headers.map((h, i) => Math.max(h.length, ...rows.map(r => String(r[i]).length)))
  console.log(`\n${title}`)
  console.log('| ' + headers.map((h, i) => h.padEnd(widths[i])).join(' | ') + ' |')
  console.log('|' + widths.map(w => '-'.repeat(w + 2)).join('|') + '|')
  for (const r of rows) console.log('| ' + r.map((c, i) => String(c).padEnd(widths[i])).join(' | ') + ' |')
}

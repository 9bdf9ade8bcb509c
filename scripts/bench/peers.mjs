// `npm run bench -- peers`: evalmesh beside the peers that do the same job, measured in
// the same run by one method (issue 9):
//   - Erlang/OTP erpc:call between two local nodes (Debian erlang-base; epmd on 127.0.0.1);
//   - RPyC classic, conn.eval (Debian python3-rpyc);
//   - the Node inspector's Runtime.evaluate (CDP) over a WebSocket (`ws` from npm);
//   - evalmesh remoteEval to a real node (as configured by default: busy-polling on; a
//     table at the end measures it on and off, with the CPU per call each costs).
// For each: 200 warm-up calls, then 2,000 sequential `1+1` calls on one open connection
// (p50/p99); a closed loop of 5 s with 64 calls outstanding from one client on one
// connection; the same with 8 client processes, 8 outstanding each; and the realistic
// ~1 KB form of peers/forms.mjs (sequential, p50/p99). Every client is a process of its
// own (peers/*-client.*), as is every server; nothing listens beyond 127.0.0.1.
// As root, missing Debian packages are installed with apt-get; otherwise a peer whose
// package is missing is skipped with the reason. `ws` goes into ~/.cache/evalmesh-bench
// (outside the tracked tree). Every process this starts is stopped by its pid at the end,
// also after an error.
import { fork, spawn, spawnSync } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { existsSync, mkdirSync, readFileSync } from 'node:fs'
import { createServer } from 'node:net'
import { cpus, homedir, loadavg } from 'node:os'
import { join } from 'node:path'
import { whereTheTimeGoes } from './directed.mjs'
import { ROOT, fmt, printTable, startNode } from './lib.mjs'
import { realisticPython } from './peers/forms.mjs'

const HERE = join(ROOT, 'scripts', 'bench', 'peers')
const PYTHON = existsSync('/usr/bin/python3') ? '/usr/bin/python3' : 'python3'

/** Every child this section starts, to stop by pid. */
class Children {
  #all = new Set()
  spawn (cmd, args, opts = {}) {
    const child = spawn(cmd, args, { stdio: ['pipe', 'pipe', 'pipe'], ...opts })
    this.#all.add(child)
    child.once('exit', () => this.#all.delete(child))
    child.once('error', () => this.#all.delete(child))
    return child
  }

  add (child) { this.#all.add(child); child.once('exit', () => this.#all.delete(child)) }

  async stopAll () {
    await Promise.all([...this.#all].map(child => new Promise(resolve => {
      if (child.exitCode !== null || child.signalCode !== null) { resolve(); return }
      const hard = setTimeout(() => { try { process.kill(child.pid, 'SIGKILL') } catch {} }, 3000)
      child.once('exit', () => { clearTimeout(hard); resolve() })
      try { process.kill(child.pid, 'SIGTERM') } catch { clearTimeout(hard); resolve() }
    })))
  }
}

/** Resolves with the first match of `re` in the child's stream, or rejects after `ms`. */
function waitFor (stream, re, ms, what) {
  return new Promise((resolve, reject) => {
    let out = ''
    const timer = setTimeout(() => { stream.off('data', on); reject(new Error(`${what}: no answer within ${ms} ms:\n${out}`)) }, ms)
    const on = (c) => {
      out += c
      const m = re.exec(out)
      if (m) { clearTimeout(timer); stream.off('data', on); resolve(m) }
    }
    stream.on('data', on)
  })
}

function freePort () {
  return new Promise((resolve, reject) => {
    const s = createServer()
    s.once('error', reject)
    s.listen(0, '127.0.0.1', () => { const { port } = s.address(); s.close(() => resolve(port)) })
  })
}

/** Install Debian packages when `ok()` is false: as root only; returns why not, or undefined. */
function ensureDebian (packages, ok) {
  if (ok()) return undefined
  if (process.getuid?.() !== 0) return `not root, so cannot apt-get install ${packages.join(' ')}`
  const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' }
  const install = () => spawnSync('apt-get', ['install', '-y', '-qq', ...packages], { env, stdio: ['ignore', 'ignore', 'pipe'], timeout: 600_000 })
  console.log(`[peers] apt-get install ${packages.join(' ')} ...`)
  let r = install()
  if (r.status !== 0) {
    spawnSync('apt-get', ['update', '-qq'], { env, stdio: 'ignore', timeout: 300_000 })
    r = install()
  }
  if (ok()) return undefined
  return `apt-get install ${packages.join(' ')} failed: ${String(r.stderr ?? r.error ?? '').trim().split('\n').pop()}`
}

const has = (cmd, args) => { const r = spawnSync(cmd, args, { stdio: 'ignore', timeout: 30_000 }); return r.status === 0 }

/** The `ws` client, installed outside the tracked tree; undefined when npm cannot get it. */
function ensureWs () {
  const dir = process.env.EVALMESH_BENCH_CACHE ?? join(homedir(), '.cache', 'evalmesh-bench')
  const entry = join(dir, 'node_modules', 'ws', 'wrapper.mjs')
  if (existsSync(entry)) return entry
  mkdirSync(dir, { recursive: true })
  console.log(`[peers] npm install ws into ${dir} ...`)
  spawnSync('npm', ['install', '--no-save', '--no-package-lock', '--no-audit', '--no-fund', '--prefix', dir, 'ws@8'], { stdio: ['ignore', 'ignore', 'inherit'], timeout: 300_000 })
  return existsSync(entry) ? entry : undefined
}

/**
 * Run `k` client processes made by `make(i)` together: wait until every one is warm and
 * says "ready", release them at once, and collect each one's JSON line.
 */
async function together (children, k, make, timeoutMs) {
  const procs = Array.from({ length: k }, (_, i) => { const [cmd, args, env] = make(i); return children.spawn(cmd, args, { env: { ...process.env, ...env } }) })
  const errs = procs.map(p => { let e = ''; p.stderr.on('data', c => { e += c }); return () => e })
  const lines = procs.map((p, i) => {
    let out = ''
    return new Promise((resolve, reject) => {
      p.stdout.on('data', c => { out += c })
      p.once('exit', code => {
        const m = /^\{.*\}$/m.exec(out)
        if (m) resolve(JSON.parse(m[0]))
        else reject(new Error(`client ${i} exited ${code} without a result:\n${out}${errs[i]()}`))
      })
    })
  })
  lines.forEach(l => l.catch(() => {}))
  try {
    const early = new Promise((_resolve, reject) => lines.forEach(l => l.then(() => reject(new Error('a client finished before the start')), reject)))
    early.catch(() => {})
    await Promise.race([Promise.all(procs.map(p => waitFor(p.stdout, /^ready$/m, timeoutMs, 'client warm-up'))), early])
    for (const p of procs) p.stdin.write('go\n')
    const timer = setTimeout(() => { for (const p of procs) { try { process.kill(p.pid, 'SIGKILL') } catch {} } }, timeoutMs)
    try { return await Promise.all(lines) } finally { clearTimeout(timer) }
  } finally {
    for (const p of procs) { if (p.exitCode === null) { try { process.kill(p.pid, 'SIGKILL') } catch {} } }
  }
}

/** The four measurements of one system, given how to start one of its clients. */
async function measure (children, name, client, m) {
  const out = {}
  const step = async (key, fn) => {
    try { out[key] = await fn() } catch (err) { out[key] = { error: String(err.message ?? err).split('\n')[0] }; console.log(`[peers] ${name} ${key}: ${out[key].error}`) }
  }
  const tp = (rs) => ({ perSecond: rs.reduce((a, r) => a + r.n, 0) / Math.max(...rs.map(r => r.seconds)), n: rs.reduce((a, r) => a + r.n, 0) })
  await step('lat', async () => (await together(children, 1, () => client('lat', 'trivial', m.warmup, m.count, m.maxMs), m.maxMs + 60_000))[0])
  await step('tp64', async () => tp(await together(children, 1, () => client('tp', 'trivial', m.warmup, 64, m.windowMs), m.windowMs + 60_000)))
  await step('tp8', async () => tp(await together(children, 8, () => client('tp', 'trivial', m.warmup, 8, m.windowMs), m.windowMs + 60_000)))
  await step('real', async () => (await together(children, 1, () => client('lat', 'realistic', m.warmup, m.count, m.maxMs), m.maxMs + 60_000))[0])
  console.log(`[peers] ${name}: done`)
  return out
}

function nodeClient (cfg, nodeFlags = [], env = {}) {
  return (mode, work, warmup, n, ms) => [process.execPath, [...nodeFlags, join(HERE, 'node-client.mjs'), JSON.stringify({
    ...cfg, mode, work, warmup, ...(mode === 'lat' ? { count: n, maxMs: ms } : { inflight: n, ms, maxMs: 30_000 })
  })], env]
}

/** A process's CPU time so far in µs, from /proc (clock ticks of 10 ms), or undefined off Linux. */
function cpuMicrosOf (pid) {
  try {
    const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ')
    return (Number(fields[11]) + Number(fields[12])) * 10_000
  } catch { return undefined }
}

/**
 * Sequential `1+1` with the node's CPU per call measured beside it, on two fresh nodes (so
 * that the form is pure in a fresh session on both): one as configured by default
 * (busy-polling on), one with it off (`--busy-poll 0`, and the client's
 * EVALMESH_BUSY_POLL_US=0), alternated.
 */
async function busyPollCost (children, m) {
  const on = await startNode(['--concurrency', '64'])
  const off = await startNode(['--concurrency', '64', '--busy-poll', '0']).catch(async err => { await on.stop(); throw err })
  try {
    const out = {}
    for (const [key, node, env] of [['on', on, {}], ['off', off, { EVALMESH_BUSY_POLL_US: '0' }], ['on2', on, {}], ['off2', off, { EVALMESH_BUSY_POLL_US: '0' }]]) {
      const make = nodeClient({ system: 'evalmesh', target: node.host, stateDir: node.stateDir }, [], env)
      const before = cpuMicrosOf(node.pid)
      try {
        const r = (await together(children, 1, () => make('lat', 'trivial', m.warmup, m.count, m.maxMs), m.maxMs + 60_000))[0]
        const after = cpuMicrosOf(node.pid)
        // The node's figure includes the client's warm-up calls, spread over the measured ones.
        out[key] = { ...r, nodeCpuUs: before === undefined || after === undefined ? undefined : (after - before) / (r.n + m.warmup + 1) }
      } catch (err) { out[key] = { error: String(err.message).split('\n')[0] } }
    }
    return out
  } finally { await Promise.all([on.stop(), off.stop()]) }
}

/** Node 20's (V8 11.3's) default --interrupt-budget. */
const V8_DEFAULT_BUDGET = 67584

/**
 * What the early tier-up (packages/sandbox/src/tier-up.ts) buys a fresh node: `1+1` and the
 * realistic form, sequential, on fresh nodes started as usual and with V8's default budget
 * given explicitly (`node --interrupt-budget=67584`, which the node and its sandbox
 * processes then keep), alternated.
 */
async function tierUpCost (children, m) {
  const out = {}
  for (const [key, flags] of [['early', []], ['v8', [`--interrupt-budget=${V8_DEFAULT_BUDGET}`]], ['early2', []], ['v82', [`--interrupt-budget=${V8_DEFAULT_BUDGET}`]]]) {
    const node = await startNode(['--concurrency', '64', '--functions', join(HERE, 'fns.mjs')], undefined, flags)
    try {
      const make = nodeClient({ system: 'evalmesh', target: node.host, stateDir: node.stateDir })
      out[key] = {}
      for (const work of ['trivial', 'realistic']) {
        try {
          out[key][work] = (await together(children, 1, () => make('lat', work, m.warmup, m.count, m.maxMs), m.maxMs + 60_000))[0]
        } catch (err) { out[key][work] = { error: String(err.message).split('\n')[0] } }
      }
    } finally { await node.stop() }
  }
  return out
}
// ---- the systems ------------------------------------------------------------------

async function setupEvalmesh (children) {
  const node = await startNode(['--concurrency', '64', '--functions', join(HERE, 'fns.mjs')])
  return { client: nodeClient({ system: 'evalmesh', target: node.host, stateDir: node.stateDir }), node, stop: () => node.stop() }
}

async function setupCdp (children) {
  let wsModule = ensureWs()
  let flags = []
  if (wsModule === undefined) {
    if (typeof globalThis.WebSocket === 'function') wsModule = null
    else if (has(process.execPath, ['--experimental-websocket', '-e', 'if (typeof WebSocket !== "function") process.exit(1)'])) { wsModule = null; flags = ['--experimental-websocket'] } else return { skip: 'npm could not install ws, and this Node has no built-in WebSocket' }
    console.log('[peers] CDP: ws not available; using Node\'s built-in WebSocket')
  }
  const target = children.spawn(process.execPath, ['--inspect=127.0.0.1:0', join(HERE, 'cdp-target.mjs')])
  target.stdout.resume()
  const m = await waitFor(target.stderr, /Debugger listening on (ws:\/\/127\.0\.0\.1:\d+\/\S+)/, 20_000, 'node --inspect')
  target.stderr.resume()
  return { client: nodeClient({ system: 'cdp', target: m[1], wsModule }, flags), wsModule }
}

async function setupErpc (children) {
  const why = ensureDebian(['erlang-base'], () => has('erl', ['-noshell', '-eval', 'halt().']) && has('sh', ['-c', 'command -v escript && command -v epmd']))
  if (why !== undefined) return { skip: why }
  const port = await freePort()
  const cookie = 'evalmesh_bench_' + randomBytes(6).toString('hex')
  const env = { ERL_EPMD_ADDRESS: '127.0.0.1', ERL_EPMD_PORT: String(port) }
  const epmd = children.spawn('epmd', ['-address', '127.0.0.1', '-port', String(port)], { env: { ...process.env, ...env } })
  epmd.stdout.resume(); epmd.stderr.resume()
  await new Promise(resolve => setTimeout(resolve, 300))
  const dist = ['-setcookie', cookie, '-start_epmd', 'false', '-kernel', 'inet_dist_use_interface', '{127,0,0,1}']
  const server = `evalmesh_bench_srv${process.pid}@127.0.0.1`
  const srv = children.spawn('erl', ['-noshell', '-noinput', '-name', server, ...dist, '-eval', 'io:format("up~n")'], { env: { ...process.env, ...env } })
  srv.stderr.resume()
  await waitFor(srv.stdout, /^up$/m, 30_000, 'erl')
  srv.stdout.resume()
  const release = spawnSync('erl', ['-noshell', '-eval', 'io:format("~s", [erlang:system_info(otp_release)]), halt().'], { encoding: 'utf8' }).stdout
  let seq = 0
  return {
    otp: release,
    client: (mode, work, warmup, n, ms) => ['escript', [join(HERE, 'erpc_client.escript'), server, mode, work, String(warmup), String(n), String(ms)],
      { ...env, ERL_FLAGS: `-name evalmesh_bench_c${process.pid}_${++seq}@127.0.0.1 ${dist.join(' ')}` }]
  }
}

async function setupRpyc (children) {
  const why = ensureDebian(['python3-rpyc'], () => has(PYTHON, ['-c', 'import rpyc']))
  if (why !== undefined) return { skip: why }
  const srv = children.spawn(PYTHON, [join(HERE, 'rpyc_server.py')])
  srv.stderr.resume()
  const port = (await waitFor(srv.stdout, /^(\d+)$/m, 20_000, 'rpyc server'))[1]
  srv.stdout.resume()
  const version = spawnSync(PYTHON, ['-c', 'import rpyc; print(rpyc.__version__, end="")'], { encoding: 'utf8' }).stdout
  return {
    version,
    client: (mode, work, warmup, n, ms) => [PYTHON, [join(HERE, 'rpyc_client.py'), port, mode, work, String(warmup), String(n), String(ms)], { RPYC_REALISTIC: realisticPython() }]
  }
}

/** evalmesh's hops, each measured alone in this run (see the hop table). */
async function evalmeshHops (children, em, m) {
  const echoProc = fork(join(ROOT, 'scripts', 'bench', 'echo-server.mjs'), [], { stdio: 'ignore', serialization: 'advanced' })
  children.add(echoProc)
  const echoPort = await new Promise(resolve => echoProc.once('message', msg => resolve(msg.port)))
  const one = async (cfg) => (await together(children, 1, () => nodeClient(cfg)('lat', cfg.work, m.warmup, m.count, m.maxMs), m.maxMs + 60_000))[0]
  const base = { system: 'evalmesh', target: em.node.host, stateDir: em.node.stateDir }
  const out = {}
  for (const [key, cfg] of [['echo', { system: 'echo', target: `127.0.0.1:${echoPort}`, work: 'echo' }], ['ping', { ...base, work: 'ping' }], ['apply', { ...base, work: 'apply' }], ['named', { ...base, work: 'named' }], ['realLocal', { ...base, work: 'realistic-local' }]]) {
    try { out[key] = await one(cfg) } catch (err) { out[key] = { error: String(err.message).split('\n')[0] } }
  }
  try { Object.assign(out, await whereTheTimeGoes(echoProc, { count: m.count })) } catch (err) { out.partsError = String(err.message).split('\n')[0] }
  try { out.busyPoll = await busyPollCost(children, m) } catch (err) { out.busyPoll = { error: String(err.message).split('\n')[0] } }
  try { out.tierUp = await tierUpCost(children, m) } catch (err) { out.tierUp = { error: String(err.message).split('\n')[0] } }
  return out
}

// ---- the report -------------------------------------------------------------------

/** Each system's best of the rounds, measure by measure: the lowest p50, the highest rate. */
function bestOf (rounds) {
  const best = {}
  for (const got of rounds) {
    for (const [name, r] of Object.entries(got)) {
      const b = best[name] ??= {}
      for (const [key, v] of Object.entries(r)) {
        const old = b[key]
        const better = old === undefined || old.error !== undefined ||
          (v.p50 !== undefined && old.p50 !== undefined && v.p50 < old.p50) ||
          (v.perSecond !== undefined && old.perSecond !== undefined && v.perSecond > old.perSecond)
        if (better && (v.error === undefined || old === undefined)) b[key] = v
      }
    }
  }
  return best
}

const us = (r, k = 'p50') => r?.[k] !== undefined ? fmt(r[k], 1) : (r?.error ? 'error' : 'n/a')
const ps = (r) => r?.perSecond !== undefined ? fmt(r.perSecond) : (r?.error ? 'error' : 'n/a')

function verdicts (R, skipped) {
  const em = R.evalmesh ?? {}
  const target = (label, ours, theirs, peer, goal, lowerIsBetter, limit, unit) => {
    if (ours === undefined || theirs === undefined) {
      const why = skipped[peer] ?? (ours === undefined ? 'evalmesh measurement failed' : `${peer} measurement failed`)
      return [label, ours === undefined ? 'n/a' : fmt(ours, unit === 'µs' ? 1 : 0), theirs === undefined ? 'n/a' : fmt(theirs, unit === 'µs' ? 1 : 0), 'n/a', goal, `not measured (${why})`]
    }
    const ratio = ours / theirs
    const met = lowerIsBetter ? ratio <= limit : ratio >= limit
    return [label, fmt(ours, unit === 'µs' ? 1 : 0), fmt(theirs, unit === 'µs' ? 1 : 0), fmt(ratio, 2) + 'x', goal, met ? 'MET' : 'missed']
  }
  return [
    target('1+1 p50 (µs) vs erpc', em.lat?.p50, R.erpc?.lat?.p50, 'erpc', '<= 1.5x', true, 1.5, 'µs'),
    target('64 in flight, one conn (/s) vs erpc', em.tp64?.perSecond, R.erpc?.tp64?.perSecond, 'erpc', '>= 1.0x', false, 1.0, '/s'),
    target('8 client procs (/s) vs erpc', em.tp8?.perSecond, R.erpc?.tp8?.perSecond, 'erpc', '>= 1.5x', false, 1.5, '/s'),
    target('realistic ~1 KB form p50 (µs) vs CDP', em.real?.p50, R.cdp?.real?.p50, 'cdp', '<= 1.5x', true, 1.5, 'µs')
  ]
}

function bestPeer (R, pick, lowerIsBetter, among = ['erpc', 'cdp', 'rpyc']) {
  let best
  for (const name of among) {
    const v = pick(R[name] ?? {})
    if (v === undefined) continue
    if (best === undefined || (lowerIsBetter ? v < best.v : v > best.v)) best = { name, v }
  }
  return best
}

const LABEL = { evalmesh: 'evalmesh remoteEval', erpc: 'Erlang erpc:call', cdp: 'CDP Runtime.evaluate', rpyc: 'RPyC classic eval' }

function report (R, skipped, hops, m) {
  printTable(`Peers, same run${m.rounds > 1 ? `, best of ${m.rounds} rounds each` : ''}: 1+1 (${m.count} sequential after ${m.warmup} warm-up), ${m.windowMs / 1000} s closed loops, realistic ~1 KB form`,
    ['system', '1+1 p50 µs', '1+1 p99 µs', '64 in flight /s', '8 procs x 8 /s', 'realistic p50 µs', 'realistic p99 µs'],
    ['erpc', 'cdp', 'rpyc', 'evalmesh'].map(name => skipped[name] !== undefined
      ? [LABEL[name], 'skipped', '', '', '', '', `(${skipped[name]})`]
      : [LABEL[name], us(R[name]?.lat), us(R[name]?.lat, 'p99'), ps(R[name]?.tp64), ps(R[name]?.tp8), us(R[name]?.real), us(R[name]?.real, 'p99')]))

  const em = R.evalmesh ?? {}
  const rows = []
  for (const [label, pick, lower, digits, among] of [
    ['1+1 p50 (µs)', r => r.lat?.p50, true, 1], ['1+1 p99 (µs)', r => r.lat?.p99, true, 1],
    ['64 in flight (/s)', r => r.tp64?.perSecond, false, 0], ['8 procs x 8 (/s)', r => r.tp8?.perSecond, false, 0],
    // erpc's realistic call evaluates no source, so the best peer here is among those that do
    ['realistic p50 (µs), source-evaluating peers', r => r.real?.p50, true, 1, ['cdp', 'rpyc']]]) {
    const best = bestPeer(R, pick, lower, among)
    const ours = pick(em)
    rows.push([label, best ? `${best.name} ${fmt(best.v, digits)}` : 'n/a', ours === undefined ? 'n/a' : fmt(ours, digits),
      best && ours !== undefined ? fmt(ours / best.v, 2) + 'x' : 'n/a'])
  }
  printTable('evalmesh / best peer, each measure', ['measure', 'best peer', 'evalmesh', 'ratio'], rows)

  printTable('Targets (issue 9), ratios evalmesh / peer, same run', ['target', 'evalmesh', 'peer', 'ratio', 'goal', 'verdict'], verdicts(R, skipped))

  if (hops !== undefined) {
    const e = hops.echo?.p50
    const row = (label, v, prev) => [label, v === undefined ? 'n/a' : fmt(v, 1), v !== undefined && prev !== undefined ? (v >= prev ? '+' : '') + fmt(v - prev, 1) : '', v !== undefined && e ? fmt(v / e, 2) + 'x' : '']
    printTable('Where an evalmesh request goes (p50 µs, the last round; each row measured alone, from its own client process unless noted)', ['hop', 'p50 µs', 'added', 'x raw echo'], [
      row('raw TCP echo, Node, 4-byte frame (sleeps between frames: no busy-polling)', e),
      row('ping: + auth\'d connection, frame encode/decode, no txn', hops.ping?.p50, e),
      row('remoteApply noop: + admission, txn table, scheduling, a node-side call', hops.apply?.p50, hops.ping?.p50),
      row('remoteEval 1+1: + a pure form in the node\'s own isolate', hops.lat?.p50, hops.apply?.p50),
      row('remoteEval n = 1 + 1: + the sandbox process (IPC hop, isolate call)', hops.named?.p50, hops.apply?.p50),
      row('realistic form without the fns call: + 1.2 KB form, 0.9 KB result', hops.realLocal?.p50, hops.named?.p50),
      row('realistic form: + one fns host call (sandbox -> node -> sandbox)', hops.real?.p50, hops.realLocal?.p50),
      row('  node <-> sandbox IPC echo alone (from the bench process)', hops.ipc?.p50),
      row('  isolated-vm async call alone (in the bench process)', hops.ivm?.p50),
      row('  sandbox.run 1+1 alone (a pure form: no IPC, from the bench process)', hops.sandbox?.p50),
      row('  sandbox.run n = 1 + 1 alone (IPC + isolate, from the bench process)', hops.sandboxNamed?.p50)
    ])
    if (hops.partsError) console.log(`(sandbox hop measurements failed: ${hops.partsError})`)
    const bp = hops.busyPoll ?? {}
    if (bp.error !== undefined) console.log(`(busy-polling measurements failed: ${bp.error})`)
    else {
      const cpu = v => v === undefined ? 'n/a' : fmt(v, 1)
      printTable('Busy-polling (serve --busy-poll, EVALMESH_BUSY_POLL_US): remoteEval 1+1 sequential, on and off, alternated; CPU per call from /proc (node) and cpuUsage (client)',
        ['setting', 'p50 µs', 'p99 µs', 'node CPU µs/call', 'client CPU µs/call'],
        [['on (default)', bp.on], ['off (0)', bp.off], ['on (default), again', bp.on2], ['off (0), again', bp.off2]].map(([label, r]) =>
          [label, us(r), us(r, 'p99'), cpu(r?.nodeCpuUs), cpu(r?.cpuUs)]))
    }
    const tu = hops.tierUp ?? {}
    if (tu.error !== undefined) console.log(`(tier-up measurements failed: ${tu.error})`)
    else {
      printTable(`Early tier-up (tier-up.ts) on a fresh node: sequential, ${m.count} after ${m.warmup} warm-up, alternated with V8's default budget`,
        ['node', '1+1 p50 µs', '1+1 p99 µs', 'realistic p50 µs', 'realistic p99 µs'],
        [['early tier-up (default)', tu.early], [`V8 default (--interrupt-budget=${V8_DEFAULT_BUDGET})`, tu.v8], ['early tier-up, again', tu.early2], ['V8 default, again', tu.v82]].map(([label, r]) =>
          [label, us(r?.trivial), us(r?.trivial, 'p99'), us(r?.realistic), us(r?.realistic, 'p99')]))
    }
  }
}

export async function benchPeers ({ quick = false } = {}) {
  const m = { warmup: 200, count: quick ? 500 : 2000, maxMs: 20_000, windowMs: quick ? 1500 : 5000, rounds: quick ? 1 : 2 }
  console.log(`\nPeers: evalmesh beside Erlang erpc, CDP Runtime.evaluate and RPyC, same run (${quick ? 'quick' : 'full'}; ${cpus().length} CPUs, load average ${loadavg()[0].toFixed(2)} at the start)`)
  const children = new Children()
  const R = {}
  const rounds = []
  const skipped = {}
  const notes = {}
  let hops
  const onSignal = () => { children.stopAll().finally(() => process.exit(130)) }
  process.once('SIGINT', onSignal)
  process.once('SIGTERM', onSignal)
  try {
    // Rounds, each system on fresh servers in each, the order reversed every other round:
    // the host's speed drifts over minutes (BENCHMARKS.md), and a system measured only in a
    // slow stretch would lose by it. Each system's best round counts, for every system alike.
    const systems = [['erpc', setupErpc], ['cdp', setupCdp], ['rpyc', setupRpyc], ['evalmesh', setupEvalmesh]]
    for (let round = 0; round < m.rounds; round++) {
      const last = round === m.rounds - 1
      const order = round % 2 === 0 ? systems : [...systems].reverse()
      const got = {}
      for (const [name, setup] of order) {
        if (skipped[name] !== undefined) continue
        let sys
        try { sys = await setup(children) } catch (err) { sys = { skip: `could not start: ${String(err.message).split('\n')[0]}` } }
        if (sys.skip !== undefined) { skipped[name] = sys.skip; console.log(`[peers] ${LABEL[name]}: skipped (${sys.skip})`); continue }
        notes[name] = sys
        try {
          got[name] = await measure(children, name, sys.client, m)
          if (name === 'evalmesh' && last) hops = await evalmeshHops(children, sys, m)
        } finally {
          await sys.stop?.()
        }
      }
      rounds.push(got)
      if (m.rounds > 1) console.log(`[peers] round ${round + 1} of ${m.rounds}: ` + verdicts(got, skipped).map(v => `${v[0].split(' (')[0]} ${v[3]}`).join('; '))
    }
    Object.assign(R, bestOf(rounds))
    // The hop table is one round's: its own measurements and that round's 1+1 and realistic.
    if (hops !== undefined) Object.assign(hops, { lat: rounds.at(-1).evalmesh?.lat, real: rounds.at(-1).evalmesh?.real })
    const versions = [notes.erpc?.otp && `OTP ${notes.erpc.otp}`, notes.rpyc?.version && `RPyC ${notes.rpyc.version}`,
      notes.cdp && `CDP over ${notes.cdp.wsModule ? 'ws' : 'built-in WebSocket'}`, `Node ${process.version}`].filter(Boolean).join(', ')
    console.log(`[peers] ${versions}`)
    report(R, skipped, hops, m)
    console.log('\nrealistic: evalmesh and CDP evaluate the same JS form (peers/forms.mjs); erpc calls lists:sort on the same 16 items as Erlang terms (no source evaluated); RPyC evaluates the equivalent Python expression, returning JSON text.')
    return { R, skipped, hops }
  } finally {
    process.off('SIGINT', onSignal)
    process.off('SIGTERM', onSignal)
    await children.stopAll()
  }
}

if (import.meta.url === `file://${process.argv[1]}`) await benchPeers({ quick: process.argv.includes('--quick') })

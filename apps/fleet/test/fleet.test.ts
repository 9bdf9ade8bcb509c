/**
 * `evalmesh fleet` with real processes: the evalmesh command in child processes, nodes
 * on loopback ports, a supervisor. Every process a test starts is stopped by pid in its
 * finally (the pid files of its run dir, the supervisor's pid).
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { spawn, type ChildProcess } from 'node:child_process'
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs'
import { createServer } from 'node:net'
import { tmpdir } from 'node:os'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { Client } from '@evalmesh/client'
import { controlCommand } from '@evalmesh/fleet'

const root = (() => {
  let dir = dirname(fileURLToPath(import.meta.url))
  while (!existsSync(join(dir, 'apps', 'cli', 'package.json'))) dir = dirname(dir)
  return dir
})()
const BIN = join(root, 'apps', 'cli', 'bin', 'evalmesh.js')

interface Run { code: number | null, stdout: string, stderr: string }

interface Fleet {
  dir: string
  stateDir: string
  runDir: string
  config: string
  fleet: (...args: string[]) => Promise<Run>
  json: <T = any>(...args: string[]) => Promise<T>
  write: (config: object) => void
  children: ChildProcess[]
  cleanup: () => Promise<void>
}

function evalmesh (stateDir: string, args: string[]): Promise<Run> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--no-node-snapshot', BIN, ...args], { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, EVALMESH_STATE_DIR: stateDir } })
    let stdout = ''
    let stderr = ''
    child.stdout.on('data', d => { stdout += d })
    child.stderr.on('data', d => { stderr += d })
    const timer = setTimeout(() => { child.kill('SIGKILL'); reject(new Error(`evalmesh ${args.join(' ')} did not finish\n${stdout}\n${stderr}`)) }, 90_000)
    child.on('close', code => { clearTimeout(timer); resolve({ code, stdout, stderr }) })
  })
}

async function freePorts (n: number): Promise<number[]> {
  const servers = await Promise.all(Array.from({ length: n }, async () => await new Promise<ReturnType<typeof createServer>>((resolve, reject) => {
    const s = createServer()
    s.once('error', reject)
    s.listen(0, '127.0.0.1', () => resolve(s))
  })))
  const ports = servers.map(s => (s.address() as { port: number }).port)
  await Promise.all(servers.map(async s => await new Promise(resolve => s.close(resolve))))
  return ports
}

/** Whether pid is a live process (a zombie, exited but not reaped, is not). */
function alive (pid: number): boolean {
  try { process.kill(pid, 0) } catch { return false }
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
    return !/^[ZX]/.test(stat.slice(stat.lastIndexOf(')') + 2))
  } catch {
    return true
  }
}

async function waitFor<T> (what: string, probe: () => Promise<T | undefined | false> | T | undefined | false, ms = 30_000, detail: () => string = () => ''): Promise<T> {
  const until = Date.now() + ms
  let last: unknown
  while (Date.now() < until) {
    try {
      const v = await probe()
      if (v !== undefined && v !== false) return v
    } catch (err) { last = err }
    await new Promise(resolve => setTimeout(resolve, 100))
  }
  throw new Error(`timed out waiting for ${what}${last !== undefined ? ` (last error: ${(last as Error).message})` : ''}\n${detail()}`)
}

function makeFleet (): Fleet {
  const dir = mkdtempSync(join(tmpdir(), 'em-fleet-'))
  const stateDir = join(dir, 'state')
  const runDir = join(dir, 'run')
  const config = join(dir, 'fleet.json')
  const children: ChildProcess[] = []
  const fleet = async (...args: string[]): Promise<Run> => await evalmesh(stateDir, ['fleet', ...args])
  return {
    dir,
    stateDir,
    runDir,
    config,
    children,
    fleet,
    json: async (...args) => {
      const r = await fleet(...args, '--json')
      assert.equal(r.code, 0, `fleet ${args.join(' ')}: ${r.stderr}`)
      const out = JSON.parse(r.stdout) as { ok: boolean, value: any }
      assert.equal(out.ok, true, r.stdout)
      return out.value
    },
    write: (c) => writeFileSync(config, JSON.stringify(c, null, 2)),
    cleanup: async () => {
      for (const c of children) if (c.pid !== undefined && c.exitCode === null && c.signalCode === null) c.kill('SIGKILL')
      if (existsSync(runDir)) {
        for (const f of readdirSync(runDir).filter(x => x.endsWith('.pid'))) {
          const pid = Number(readFileSync(join(runDir, f), 'utf8'))
          if (Number.isSafeInteger(pid) && pid > 0 && pid !== process.pid) { try { process.kill(pid, 'SIGKILL') } catch { } }
        }
      }
      await new Promise(resolve => setTimeout(resolve, 200))
      rmSync(dir, { recursive: true, force: true })
    }
  }
}

/** An eval with the node's own key (the fleet's node state dir). */
async function evalOn (stateDir: string, port: number, form: string): Promise<unknown> {
  const client = new Client({ stateDir })
  try { return await client.remoteEval(form, `127.0.0.1:${port}`, { timeoutMs: 10_000 }) } finally { client.close() }
}

function pidOf (f: Fleet, name: string): number | undefined {
  try { return Number(readFileSync(join(f.runDir, `${name}.pid`), 'utf8')) } catch { return undefined }
}

interface Row { name: string, uuid: string, status: string, pid: number | null, uptimeSeconds: number | null, restarts: number, address: string, load: { running: number, input: number, done: number, restarts: number } | null, reason: string | null }

test('a fleet of 4 nodes: loaded, started, listed and stopped by -name, -uuid and -every', async () => {
  const f = makeFleet()
  try {
    const ports = await freePorts(4)
    f.write({
      defaults: { trustFleet: true },
      nodes: [
        { name: 'area-node', port: ports[0] },
        { name: 'agent-1', port: ports[1], after: ['area-node'] },
        { name: 'agent-2', port: ports[2], after: ['area-node'] },
        { name: 'solo', port: ports[3], gags: ['broadcast'], trustFleet: false, logFormat: 'json' }
      ]
    })
    const load = await f.fleet('load', f.config)
    assert.equal(load.code, 0, load.stderr)
    assert.match(load.stdout, /loaded 4 node\(s\)/)
    const servers = await f.json<Array<{ name: string, uuid: string, address: string }>>('servers')
    assert.deepEqual(servers.map(s => s.name), ['area-node', 'agent-1', 'agent-2', 'solo'])
    assert.equal(new Set(servers.map(s => s.uuid)).size, 4)
    const uuidOf = (name: string): string => servers.find(s => s.name === name)!.uuid

    const one = await f.fleet('start', '-name', 'area-node')
    assert.equal(one.code, 0, one.stderr)
    let rows = await f.json<Row[]>('running')
    assert.deepEqual(rows.map(r => r.status), ['running', 'stopped', 'stopped', 'stopped'])

    const byUuid = await f.fleet('start', '-uuid', uuidOf('agent-1'))
    assert.equal(byUuid.code, 0, byUuid.stderr)
    const every = await f.fleet('start', '-every')
    assert.equal(every.code, 0, every.stderr)
    assert.match(every.stdout, /area-node: already running/)
    assert.match(every.stdout, /agent-1: already running/)
    assert.match(every.stdout, /agent-2: started/)

    rows = await f.json<Row[]>('running')
    assert.deepEqual(rows.map(r => r.status), ['running', 'running', 'running', 'running'])
    for (const [i, r] of rows.entries()) {
      assert.equal(r.address, `127.0.0.1:${ports[i]!}`)
      assert.ok(r.pid !== null && alive(r.pid), `${r.name} has a live pid`)
      assert.equal(r.pid, pidOf(f, r.name))
      assert.ok(r.load !== null, `${r.name}: load from describe`)
      assert.equal(r.restarts, 0)
      assert.equal(typeof r.uptimeSeconds, 'number')
    }
    assert.equal(await evalOn(join(f.dir, 'nodes', 'solo'), ports[3]!, '6 * 7'), 42)
    // trustFleet: an agent's key is trusted by the area node (labelled with its name); solo trusts nobody.
    assert.equal(await evalOn(join(f.dir, 'nodes', 'agent-1'), ports[0]!, '1 + 2'), 3)
    assert.match(readFileSync(join(f.dir, 'nodes', 'area-node', 'trusted-keys'), 'utf8'), /agent-1/)
    await assert.rejects(evalOn(join(f.dir, 'nodes', 'area-node'), ports[3]!, '1'))
    const text = await f.fleet('running')
    assert.match(text.stdout, /NAME\s+STATUS\s+PID\s+UPTIME\s+RESTARTS\s+ADDRESS\s+LOAD/)
    assert.match(text.stdout, /solo\s+running\s+\d+/)
    assert.match(readFileSync(join(f.runDir, 'solo.log'), 'utf8'), /evalmesh node "solo"/)

    const pids = Object.fromEntries(rows.map(r => [r.name, r.pid!]))
    const s1 = await f.fleet('stop', '-name', 'agent-2')
    assert.equal(s1.code, 0, s1.stderr)
    assert.ok(!alive(pids['agent-2']!))
    const s2 = await f.fleet('stop', '--uuid', uuidOf('solo'), '-murder')
    assert.equal(s2.code, 0, s2.stderr)
    assert.match(s2.stdout, /solo: killed \(SIGKILL\)/)
    rows = await f.json<Row[]>('running')
    assert.deepEqual(rows.map(r => r.status), ['running', 'running', 'stopped', 'stopped'])
    const s3 = await f.fleet('stop', '-every', '--grace', '10')
    assert.equal(s3.code, 0, s3.stderr)
    // Reverse dependency order: the agents before the area node they need.
    assert.ok(s3.stdout.indexOf('agent-1:') < s3.stdout.indexOf('area-node:'), s3.stdout)
    for (const pid of Object.values(pids)) assert.ok(!alive(pid), `pid ${pid} stopped`)
    rows = await f.json<Row[]>('running')
    assert.ok(rows.every(r => r.status === 'stopped' && r.pid === null))
    assert.ok(readdirSync(f.runDir).every(x => !x.endsWith('.pid')), 'no pid files left')

    const usage = await f.fleet('start')
    assert.equal(usage.code, 2)
    assert.match(usage.stderr, /needs -name N, -uuid U or -every/)
    const nobody = await f.fleet('stop', '-name', 'nope')
    assert.equal(nobody.code, 1)
    assert.match(nobody.stderr, /no node named "nope"/)
  } finally {
    await f.cleanup()
  }
})

test('reload: a policy change applied live over the control port, the client connection stays open', async () => {
  const f = makeFleet()
  try {
    const [port] = await freePorts(1)
    const node = { name: 'pol', port: port! }
    f.write({ nodes: [node] })
    assert.equal((await f.fleet('load', f.config)).code, 0)
    const start = await f.fleet('start', '-name', 'pol')
    assert.equal(start.code, 0, start.stderr)
    const pid = pidOf(f, 'pol')!
    const nodeDir = join(f.dir, 'nodes', 'pol')
    const host = `127.0.0.1:${port!}`

    const client = new Client({ stateDir: nodeDir })
    try {
      assert.equal(await client.remoteEval('x = 20', host), 20)
      const before = await controlCommand(nodeDir, 'status net') as { connections: Array<{ id: number }> }
      assert.equal(before.connections.length, 1)
      let closed = false
      const stream = await client.subscribe(host, () => {}, { onClose: () => { closed = true } })

      f.write({ nodes: [{ ...node, gags: ['broadcast', 'someone'], hosts: ['directed'] }] })
      assert.equal((await f.fleet('load', f.config)).code, 0)
      const reload = await f.fleet('reload', '-name', 'pol')
      assert.equal(reload.code, 0, reload.stderr)
      assert.match(reload.stdout, /pol: applied live \(no connection dropped\): hosts directed; gag broadcast someone/)

      assert.equal(pidOf(f, 'pol'), pid, 'same process')
      assert.ok(alive(pid))
      const policy = await controlCommand(nodeDir, 'status policy') as { hosts: string[], gags: string[] }
      assert.deepEqual(policy.hosts, ['directed'])
      assert.deepEqual([...policy.gags].sort(), ['broadcast', 'someone'])
      // The same connection, the same session: x is still there.
      assert.equal(await client.remoteEval('x + 1', host), 21)
      const after = await controlCommand(nodeDir, 'status net') as { connections: Array<{ id: number }> }
      assert.deepEqual(after.connections.map(c => c.id), before.connections.map(c => c.id))
      assert.equal(closed, false, 'the subscription stayed open')
      stream.close()

      // Gags taken away again, hosts back to the default.
      f.write({ nodes: [node] })
      assert.equal((await f.fleet('load', f.config)).code, 0)
      const back = await f.fleet('reload', '-every')
      assert.equal(back.code, 0, back.stderr)
      assert.match(back.stdout, /hosts default; ungag broadcast someone/)
      const same = await f.fleet('reload', '-every')
      assert.match(same.stdout, /pol: unchanged/)
      assert.equal(pidOf(f, 'pol'), pid)
    } finally {
      client.close()
    }
    assert.equal((await f.fleet('stop', '-every')).code, 0)
  } finally {
    await f.cleanup()
  }
})

test('reload: limits, quotas and functions applied live, the client keeps its connection and its session', async () => {
  const f = makeFleet()
  try {
    const [port] = await freePorts(1)
    const fns = join(f.dir, 'fns.mjs')
    writeFileSync(fns, 'export function greet (who) { return `hello ${who}` }\n')
    const node = { name: 'lim', port: port!, functions: 'fns.mjs', limits: { timeoutMs: 5000 }, quotas: { queuedPerClient: 100 } }
    f.write({ nodes: [node] })
    assert.equal((await f.fleet('load', f.config)).code, 0)
    const start = await f.fleet('start', '-name', 'lim')
    assert.equal(start.code, 0, start.stderr)
    const pid = pidOf(f, 'lim')!
    const nodeDir = join(f.dir, 'nodes', 'lim')
    const host = `127.0.0.1:${port!}`
    const client = new Client({ stateDir: nodeDir })
    try {
      assert.equal(await client.remoteEval('x = 20', host), 20)
      assert.equal(await client.remoteApply('greet', ['ann'], host), 'hello ann')
      const before = await controlCommand(nodeDir, 'status net') as { connections: Array<{ id: number }> }

      // Tighter limits, another quota, and the functions module edited in place.
      writeFileSync(fns, 'export function greet (who) { return `hi ${who}` }\nexport function wave (who) { return `bye ${who}` }\n')
      f.write({ nodes: [{ ...node, limits: { timeoutMs: 300, concurrency: 3 }, quotas: { queuedPerClient: 7, runningPerClient: 2 } }] })
      assert.equal((await f.fleet('load', f.config)).code, 0)
      const reload = await f.fleet('reload', '-name', 'lim')
      assert.equal(reload.code, 0, reload.stderr)
      assert.match(reload.stdout, /lim: applied live \(no connection dropped\): limits timeoutMs=300 concurrency=3; quota queuedPerClient=7 runningPerClient=2; functions load \S*fns\.mjs/)
      assert.equal(pidOf(f, 'lim'), pid, 'same process')

      // In effect for the next request, on the same connection, in the same session.
      await assert.rejects(client.remoteEval('const t0 = Date.now(); while (Date.now() - t0 < 3000) {}', host), (err: Error & { code?: string }) => { assert.equal(err.code, 'TIME_LIMIT', err.message); return true })
      assert.equal(await client.remoteEval('x + 1', host), 21)
      assert.equal(await client.remoteApply('greet', ['ann'], host), 'hi ann')
      assert.equal(await client.remoteApply('wave', ['bob'], host), 'bye bob')
      const d = await client.describe(host)
      assert.equal(d.limits.timeoutMs, 300)
      assert.equal(d.limits.concurrency, 3)
      assert.equal(d.quotas.queuedPerClient, 7)
      assert.equal(d.quotas.runningPerClient, 2)
      const after = await controlCommand(nodeDir, 'status net') as { connections: Array<{ id: number }> }
      assert.deepEqual(after.connections.map(c => c.id), before.connections.map(c => c.id))
      assert.match((await f.fleet('reload', '-name', 'lim')).stdout, /lim: unchanged/)

      // A quota of the sandbox cannot change in a running node: the node says so, and the
      // fleet drains and restarts it instead.
      f.write({ nodes: [{ ...node, limits: { timeoutMs: 300, concurrency: 3 }, quotas: { queuedPerClient: 7, runningPerClient: 2, sandboxProcesses: 2 } }] })
      assert.equal((await f.fleet('load', f.config)).code, 0)
      const fixed = await f.fleet('reload', '-name', 'lim')
      assert.equal(fixed.code, 0, fixed.stderr)
      assert.match(fixed.stdout, /lim: quota \(quota sandboxProcesses is the sandbox's, fixed when it started; it needs a restart\) changed: drained and restarted/)
      assert.notEqual(pidOf(f, 'lim'), pid)
      assert.equal((await client.describe(host)).quotas.sandboxProcesses, 2)
    } finally {
      client.close()
    }
    assert.equal((await f.fleet('stop', '-every')).code, 0)
  } finally {
    await f.cleanup()
  }
})

test('reload: a port change drains the node and starts it on the new port', async () => {
  const f = makeFleet()
  try {
    const [p1, p2] = await freePorts(2)
    f.write({ nodes: [{ name: 'mover', port: p1 }] })
    assert.equal((await f.fleet('load', f.config)).code, 0)
    assert.equal((await f.fleet('start', '-name', 'mover')).code, 0)
    const oldPid = pidOf(f, 'mover')!
    const nodeDir = join(f.dir, 'nodes', 'mover')
    assert.equal(await evalOn(nodeDir, p1!, '1 + 1'), 2)

    f.write({ nodes: [{ name: 'mover', port: p2 }] })
    assert.equal((await f.fleet('load', f.config)).code, 0)
    // Work running when the reload begins is finished before the node stops.
    const client = new Client({ stateDir: nodeDir })
    let reload: Run
    try {
      const long = client.remoteEval('const t0 = Date.now(); while (Date.now() - t0 < 2000) {} "finished"', `127.0.0.1:${p1!}`, { timeoutMs: 20_000 })
      await waitFor('the long eval running', async () => ((await controlCommand(nodeDir, 'status tasks')) as { running: unknown[] }).running.length === 1)
      const reloading = f.fleet('reload', '-name', 'mover', '--grace', '20')
      await waitFor('the node draining', async () => ((await controlCommand(nodeDir, 'status drain')) as { draining: unknown }).draining !== null)
      // New work is refused while it drains, with DRAINING naming where to retry: the new port.
      await assert.rejects(client.remoteEval('"new work"', `127.0.0.1:${p1!}`), (err: Error & { code?: string, data?: Record<string, unknown> }) => {
        assert.equal(err.code, 'DRAINING', err.message)
        assert.equal(err.data?.retryAt, `127.0.0.1:${p2!}`)
        assert.equal(typeof err.data?.retryAfterMs, 'number')
        assert.match(err.message, new RegExp(`node mover is draining \\(restarting on 127\\.0\\.0\\.1:${p2!}\\) and takes no new work; retry at 127\\.0\\.0\\.1:${p2!}`))
        return true
      })
      reload = await reloading
      assert.equal(await long, 'finished')
    } finally {
      client.close()
    }
    assert.equal(reload.code, 0, reload.stderr)
    assert.match(reload.stdout, /mover: port changed: drained and restarted \(old pid \d+ drained, stopped \(SIGTERM\); new pid \d+ on 127\.0\.0\.1:\d+\)/)
    const newPid = pidOf(f, 'mover')!
    assert.notEqual(newPid, oldPid)
    assert.ok(!alive(oldPid))
    assert.equal(await evalOn(nodeDir, p2!, '2 + 2'), 4)
    const rows = await f.json<Row[]>('running')
    assert.equal(rows[0]!.address, `127.0.0.1:${p2!}`)
    assert.equal(rows[0]!.pid, newPid)
    await assert.rejects(evalOn(nodeDir, p1!, '1'), 'nothing on the old port')
    assert.equal((await f.fleet('stop', '-every')).code, 0)
  } finally {
    await f.cleanup()
  }
})

test('supervise: dependency order, kill -9 brought back, a restart budget exhausted, reload under it, reverse order on SIGTERM', async (t) => {
  const f = makeFleet()
  let supervisor: ChildProcess | undefined
  try {
    const ports = await freePorts(4)
    const config = {
      defaults: { restart: { maxRestarts: 2, backoffMs: 100, windowSeconds: 60 } },
      nodes: [
        { name: 'agent', port: ports[1], after: ['area-node'] },
        { name: 'area-node', port: ports[0] },
        { name: 'broken', port: ports[2], functions: 'no-such-module.mjs' }
      ]
    }
    f.write(config)
    assert.equal((await f.fleet('load', f.config)).code, 0)
    supervisor = spawn(process.execPath, ['--no-node-snapshot', BIN, 'fleet', 'supervise'], { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, EVALMESH_STATE_DIR: f.stateDir } })
    f.children.push(supervisor)
    let said = ''
    supervisor.stderr!.on('data', d => { said += d })
    supervisor.stdout!.on('data', d => { said += d })

    const up = async (): Promise<Row[] | undefined> => {
      const rows = await f.json<Row[]>('running')
      return rows.filter(r => r.name !== 'broken').every(r => r.status === 'running' && r.load !== null) ? rows : undefined
    }
    await waitFor('area-node and agent running', up, 60_000, () => said)
    // The node can answer before the supervisor's own line about it reaches our pipe.
    await waitFor('the supervisor says agent started', () => /\bagent started/.test(said), 20_000, () => said)
    assert.ok(said.indexOf('area-node started') < said.search(/\bagent started/), said)

    // The restart budget: broken cannot start (its functions module is missing).
    const failed = await waitFor('broken marked failed', async () => (await f.json<Row[]>('running')).find(r => r.name === 'broken' && r.status === 'failed'), 60_000, () => said)
    assert.match(failed.reason!, /restart budget exhausted: 2 restart\(s\) within 60 s/)
    assert.match(failed.reason!, /no-such-module/)
    assert.match(said, /broken FAILED: restart budget exhausted/)

    // kill -9 of a supervised node: back, answering, with a restart counted.
    const victim = pidOf(f, 'agent')!
    const killedAt = Date.now()
    process.kill(victim, 'SIGKILL')
    const nodeDir = join(f.dir, 'nodes', 'agent')
    const back = await waitFor('agent back and answering', async () => {
      const pid = pidOf(f, 'agent')
      if (pid === undefined || pid === victim || !alive(pid)) return undefined
      return await evalOn(nodeDir, ports[1]!, '"back"') === 'back' ? pid : undefined
    }, 30_000, () => said)
    assert.notEqual(back, victim)
    t.diagnostic(`kill -9 to answering again: ${Date.now() - killedAt} ms`)
    assert.match(said, /agent went down \(signal SIGKILL\); restarting in 100 ms/)
    const rows = await f.json<Row[]>('running')
    assert.equal(rows.find(r => r.name === 'agent')!.restarts, 1)
    assert.equal(rows.find(r => r.name === 'area-node')!.restarts, 0)
    // The node itself knows (the supervisor told it), and says so in describe.
    assert.equal(rows.find(r => r.name === 'agent')!.load!.restarts, 1)
    assert.equal(rows.find(r => r.name === 'area-node')!.load!.restarts, 0)

    // fleet stop while supervised: it stays down (held); fleet start brings it back.
    assert.equal((await f.fleet('stop', '-name', 'agent')).code, 0)
    await new Promise(resolve => setTimeout(resolve, 1000))
    assert.equal((await f.json<Row[]>('running')).find(r => r.name === 'agent')!.status, 'stopped')
    assert.equal((await f.fleet('start', '-name', 'agent')).code, 0)
    await waitFor('supervisor watches agent again', () => /agent running \(pid \d+\), watching it/.test(said), 20_000, () => said)

    // A port change reloaded under the supervisor: restarted once, not counted as a crash, watched.
    config.nodes[0] = { ...config.nodes[0]!, port: ports[3] }
    f.write(config)
    assert.equal((await f.fleet('load', f.config)).code, 0)
    const beforeReload = pidOf(f, 'agent')!
    const reload = await f.fleet('reload', '-name', 'agent')
    assert.equal(reload.code, 0, reload.stderr)
    assert.match(reload.stdout, /agent: port changed: drained and restarted/)
    const moved = pidOf(f, 'agent')!
    assert.notEqual(moved, beforeReload)
    assert.equal(await evalOn(nodeDir, ports[3]!, '"moved"'), 'moved')
    await waitFor('supervisor watches the reloaded agent', () => new RegExp(`agent running \\(pid ${moved}\\), watching it`).test(said), 20_000, () => said)
    await new Promise(resolve => setTimeout(resolve, 500))
    assert.equal(pidOf(f, 'agent'), moved, 'the supervisor did not start a second one')
    assert.equal((await f.json<Row[]>('running')).find(r => r.name === 'agent')!.restarts, 1)

    const pids = [pidOf(f, 'agent')!, pidOf(f, 'area-node')!]
    const exited = new Promise<number | null>(resolve => supervisor!.once('exit', code => resolve(code)))
    supervisor.kill('SIGTERM')
    assert.equal(await exited, 0)
    assert.ok(said.indexOf('stopping agent') < said.indexOf('stopping area-node'), said)
    for (const pid of pids) assert.ok(!alive(pid), `pid ${pid} stopped with the supervisor`)
    assert.ok(readdirSync(f.runDir).every(x => !x.endsWith('.pid')), 'no pid files left')
  } finally {
    await f.cleanup()
  }
})

test('stale pid files: a gone process and someone else\'s process are detected and cleared', async () => {
  const f = makeFleet()
  const other = spawn(process.execPath, ['-e', 'setTimeout(() => {}, 60000)'], { stdio: 'ignore' })
  f.children.push(other)
  try {
    const [p1, p2] = await freePorts(2)
    f.write({ runDir: 'run', nodes: [{ name: 'gone', port: p1 }, { name: 'taken', port: p2 }] })
    assert.equal((await f.fleet('load', f.config)).code, 0)
    const dead = spawn(process.execPath, ['-e', ''], { stdio: 'ignore' })
    await new Promise(resolve => dead.once('exit', resolve))
    writeFileSync(join(f.runDir, 'gone.pid'), `${dead.pid!}\n`)
    writeFileSync(join(f.runDir, 'taken.pid'), `${other.pid!}\n`)

    const running = await f.fleet('running')
    assert.equal(running.code, 0, running.stderr)
    assert.match(running.stderr, new RegExp(`gone: stale pid file .*gone\\.pid cleared \\(pid ${dead.pid!} is gone\\)`))
    assert.match(running.stderr, new RegExp(`taken: stale pid file .*taken\\.pid cleared \\(pid ${other.pid!} is another program`))
    assert.match(running.stdout, /gone\s+stopped/)
    assert.ok(!existsSync(join(f.runDir, 'gone.pid')))
    assert.ok(!existsSync(join(f.runDir, 'taken.pid')))
    assert.ok(alive(other.pid!), 'someone else\'s process is left alone')

    // A stale pid file does not stop a start, and stop never signals someone else's process.
    writeFileSync(join(f.runDir, 'taken.pid'), `${other.pid!}\n`)
    const stop = await f.fleet('stop', '-name', 'taken')
    assert.match(stop.stdout, /taken: not running/)
    assert.ok(alive(other.pid!))
    writeFileSync(join(f.runDir, 'gone.pid'), `${dead.pid!}\n`)
    const start = await f.fleet('start', '-name', 'gone')
    assert.equal(start.code, 0, start.stderr)
    assert.match(start.stderr, /stale pid file/)
    const pid = pidOf(f, 'gone')!
    assert.notEqual(pid, dead.pid)
    assert.ok(alive(pid))
    assert.equal((await f.fleet('stop', '-every')).code, 0)
  } finally {
    other.kill('SIGKILL')
    await f.cleanup()
  }
})

test('the deployment log: every command with user, host, time and args; a commit message survives a reload of the config', async () => {
  const f = makeFleet()
  try {
    const [port] = await freePorts(1)
    f.write({ nodes: [{ name: 'logged', port }] })
    assert.equal((await f.fleet('load', f.config)).code, 0)
    const commit = await f.fleet('commit', '-m', 'first deployment: one node')
    assert.equal(commit.code, 0, commit.stderr)
    assert.match(commit.stdout, /committed #\d+: first deployment: one node/)
    assert.equal((await f.fleet('servers')).code, 0)
    const cfg = await f.json<{ servers: Array<{ name: string, port: number }>, configFile: string }>('config')
    assert.equal(cfg.configFile, f.config)
    assert.equal(cfg.servers[0]!.port, port)
    f.write({ nodes: [{ name: 'logged', port, gags: ['broadcast'] }] })
    assert.equal((await f.fleet('load', f.config)).code, 0)
    const noMessage = await f.fleet('commit')
    assert.equal(noMessage.code, 2)

    const log = await f.json<Array<{ id: number, at: string, user: string, host: string, command: string, args: string[], message: string | null }>>('log')
    assert.deepEqual(log.map(e => e.command), ['load', 'commit', 'servers', 'config', 'load', 'commit', 'log'])
    const c = log.find(e => e.message === 'first deployment: one node')!
    assert.deepEqual(c.args, ['commit', '-m', 'first deployment: one node'])
    for (const e of log) {
      assert.ok(e.user !== '' && e.host !== '', 'user and host')
      assert.ok(!Number.isNaN(Date.parse(e.at)), 'time')
    }
    assert.match(log[0]!.message!, /loaded 1 node\(s\)/)
    const text = await f.fleet('log', '--limit', '3')
    assert.equal(text.stdout.trim().split('\n').length, 3)
    assert.match((await f.fleet('log')).stdout, /fleet commit -m 'first deployment: one node'\s+# first deployment: one node/)
  } finally {
    await f.cleanup()
  }
})

/**
 * Megatest over the mesh: real `evalmesh serve --area` processes on real SQLite,
 * reached with remoteApply and from sandboxed forms; busy and back-off; read-only;
 * kill -9 durability; and the area-server lifecycle (Megatest's tt connect-and-start).
 */
import { after, before, describe, test } from 'node:test'
import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { existsSync, mkdirSync, readdirSync, utimesSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { Client, RemoteEvalError } from '@evalmesh/client'
import { findOrStartAreaServer } from '@evalmesh/ci-agent'
import { areaSignature, formatServinfoLine, listServers, servinfoDir } from '@evalmesh/megatest'
import { eventually, localClient, newMesh, startNode, tempDir, type TestNode } from './support/node.js'
import { runCiCli, type CliResult } from './support/ci-cli.js'

const is = (code: string, pattern?: RegExp) => (err: unknown): boolean => {
  assert.equal((err as RemoteEvalError).code, code, (err as Error).message)
  if (pattern !== undefined) assert.match((err as Error).message, pattern)
  return true
}

describe('Megatest commands over the mesh', () => {
  const dir = tempDir('evalmesh-mt-area-')
  let node: TestNode
  let client: Client
  const mt = async (command: string, ...params: unknown[]): Promise<unknown> => await client.remoteApply(`megatest.${command}`, ['ci', ...params], node.host)

  before(async () => {
    node = await startNode(['--area', `ci=${dir}`, '--keys', 'RELEASE,PLATFORM'])
    client = localClient(node)
  })
  after(async () => { client.close(); await node.stop() })

  test('a CI run recorded through remoteApply: runs, tests, roll-ups, steps, data, vars, tasks, meta', async () => {
    assert.deepEqual(await mt('get-keys'), ['RELEASE', 'PLATFORM'])
    const runId = await mt('register-run', [['RELEASE', 'v1'], ['PLATFORM', 'x86']], 'nightly', 'new', 'n/a', 'ann', '') as number
    assert.equal(await mt('register-run', { RELEASE: 'v1', PLATFORM: 'x86' }, 'nightly', 'new', 'n/a', 'ann', ''), runId, 'the same run is found again')
    assert.equal(await mt('get-target', runId), 'v1/x86')
    const info = await mt('get-run-info', runId) as { header: string[], rows: unknown[][] }
    assert.equal(info.rows[0]![info.header.indexOf('runname')], 'nightly')
    for (const item of ['a', 'b', '']) assert.equal(await mt('general-call', 'register-test', runId, runId, 'unit', item), true)
    const a = await mt('get-test-id', runId, 'unit', 'a') as number
    const b = await mt('get-test-id', runId, 'unit', 'b') as number
    const top = await mt('get-test-id', runId, 'unit', '') as number
    assert.equal(await mt('get-test-id', runId, 'unit', 'zz'), null)

    type RollUp = { toplevel: { state: string, status: string }, run: { state: string, status: string } }
    let r = await mt('set-state-status-and-roll-up-items', runId, a, null, 'RUNNING', 'n/a', null) as RollUp
    assert.equal(r.toplevel.state, 'RUNNING', 'a running item makes its toplevel RUNNING')
    await mt('teststep-set-status!', runId, a, 'compile', 'start', '-', '', '')
    assert.equal(await mt('csv->test-data', runId, a, 'perf,latency,12,10,5,ms\nperf,size,300,100,<,kb'), 2)
    await mt('teststep-set-status!', runId, a, 'compile', 'end', 'PASS', 'ok', 'compile.log')
    const steps = await mt('get-steps-for-test', runId, a) as Array<{ stepname: string, state: string, status: string }>
    assert.deepEqual(steps.map(s => [s.stepname, s.state, s.status]), [['compile', 'start', '-'], ['compile', 'end', 'PASS']])
    const data = await mt('read-test-data', runId, a, 'perf') as Array<{ variable: string, status: string }>
    assert.deepEqual(data.map(d => [d.variable, d.status]), [['latency', 'pass'], ['size', 'fail']])
    await mt('set-state-status-and-roll-up-items', runId, a, null, 'COMPLETED', 'PASS', null)
    r = await mt('set-state-status-and-roll-up-items', runId, 'unit', 'b', 'COMPLETED', 'FAIL', 'boom') as RollUp
    assert.deepEqual([r.toplevel.state, r.toplevel.status], ['COMPLETED', 'FAIL'], 'items roll up: worst status')
    assert.deepEqual([r.run.state, r.run.status], ['COMPLETED', 'FAIL'], 'and the run with them')
    const rec = await mt('get-test-info-by-id', runId, b) as { state: string, status: string, comment: string }
    assert.deepEqual([rec.state, rec.status, rec.comment], ['COMPLETED', 'FAIL', 'boom'])
    const tests = await mt('get-tests-for-run', runId, 'unit/%', [], ['FAIL'], 0, 0, false, 'testname', 'asc', 'shortlist', null, null) as Array<{ item_path: string }>
    assert.deepEqual(tests.map(t => t.item_path), ['b', ''], 'the failed item and its rolled-up toplevel (Megatest\'s list is the query\'s order reversed)')
    assert.equal(await mt('get-count-tests-running-for-run-id', runId), 0)
    const unmet = await mt('get-prereqs-not-met', runId, ['unit'], 'docs', '', 'normal', null) as unknown[]
    assert.equal(unmet.length > 0, true, 'a failed toplevel is an unmet prerequisite')
    assert.ok((await mt('get-raw-run-stats', runId) as unknown[]).length > 0)
    void top

    assert.equal(await mt('set-var', 'LAST_BUILD', '42'), '42')
    assert.equal(await mt('get-var', 'LAST_BUILD'), 42)
    assert.equal(await mt('inc-var', 'LAST_BUILD', 1), 43)
    const taskId = await mt('tasks-add', 'run-tests', 'ann', 'v1/x86', 'nightly', 'unit/%', 'key-1') as number
    assert.equal((await mt('tasks-get-last', 'v1/x86', 'nightly') as { id: number }).id, taskId)
    assert.equal(await mt('testmeta-add-record', 'unit'), true)
    await mt('testmeta-update-field', 'unit', 'jobgroup', 'fast')
    assert.equal((await mt('testmeta-get-record', 'unit') as { jobgroup: string }).jobgroup, 'fast')
    const lock = await mt('no-sync-get-lock', 'primary') as [boolean, number]
    assert.equal(lock[0], true)
    assert.equal((await mt('no-sync-get-lock', 'primary') as [boolean, number])[0], false)
    const changed = new Map(await mt('get-changed-record-ids', 0) as Array<[string, number[]]>)
    assert.ok(changed.get('tests')!.includes(a))
    assert.deepEqual(await mt('login', dir, '1.65', 'sig'), [true, 'successful login'])
    assert.equal(await mt('ping'), areaSignature(dir), 'ping answers with the area signature')
  })

  test('every command the node lists is reachable; none is unknown; bad params name the problem', async () => {
    const d = await client.describe(node.host) as { functions: string[], megatestAreas: string[] }
    assert.deepEqual(d.megatestAreas, ['ci'])
    const names = d.functions.filter(f => f.startsWith('megatest.')).map(f => f.slice('megatest.'.length))
    assert.ok(names.length >= 69, `${names.length} commands`)
    for (const name of names) {
      if (name === 'kill-server') continue // stops the node: tested with the lifecycle
      try {
        await client.remoteApply(`megatest.${name}`, ['ci'], node.host)
      } catch (err) {
        const code = (err as RemoteEvalError).code
        assert.ok(['BAD_MESSAGE', 'MEGATEST_ERROR'].includes(code), `${name}: ${code} ${(err as Error).message}`)
        assert.ok((err as Error).message.includes(name), `the error names the command: ${(err as Error).message}`)
      }
    }
    await assert.rejects(mt('get-run-info', 'one'), is('BAD_MESSAGE', /get-run-info: param 1 \(run-id\) must be an integer/))
    await assert.rejects(mt('drop-tables'), is('UNKNOWN_COMMAND', /drop-tables/))
    await assert.rejects(client.remoteApply('megatest.get-keys', ['nope'], node.host), is('UNKNOWN_AREA', /"nope".*serves: ci/))
  })

  test('the megatest built-in answers with Megatest\'s full response; forms reach the API too', async () => {
    const ok = await client.remoteApply('megatest', ['ci', 'ping'], node.host) as { status: string, errmsg: string, result: unknown, meta: { sstate?: string } }
    assert.deepEqual(ok, { status: 'ok', errmsg: '', result: areaSignature(dir), meta: { sstate: 'running' } })
    const err = await client.remoteApply('megatest', ['ci', 'no-such-command'], node.host) as { status: string, errmsg: string, meta: { code: string } }
    assert.equal(err.status, 'error')
    assert.equal(err.meta.code, 'UNKNOWN_COMMAND')
    assert.match(err.errmsg, /no-such-command/)
    const fromForm = await client.remoteEval(`
      const keys = await megatest['get-keys']('ci')
      const run = await megatest['register-run']('ci', { RELEASE: 'v9', PLATFORM: 'arm' }, 'from-form', 'new', 'n/a', 'bo', '')
      const full = await megatest.call('ci', 'get-target', run)
      ;({ keys, run, full })`, node.host) as { keys: string[], run: number, full: { status: string, result: string } }
    assert.deepEqual(fromForm.keys, ['RELEASE', 'PLATFORM'])
    assert.deepEqual([fromForm.full.status, fromForm.full.result], ['ok', 'v9/arm'])
    assert.equal(await mt('get-target', fromForm.run), 'v9/arm', 'a write from a form is visible to remoteApply')
    await assert.rejects(client.remoteEval(`await megatest['get-keys']('nope')`, node.host), (e: RemoteEvalError) => /nope/.test(e.message))
  })
})

describe('busy, read-only, durability', () => {
  test('a node past its Megatest load limit answers busy; clients back off and every call succeeds', async () => {
    const dir = tempDir('evalmesh-mt-busy-')
    const node = await startNode(['--area', `ci=${dir}`, '--keys', 'TARGET', '--megatest-load-limit', '1'])
    const clients = Array.from({ length: 6 }, () => localClient(node, { busyRetries: 30 }))
    try {
      // The raw response shows the busy answer and its wait hint (seconds).
      let busy: { status: string, result: unknown, meta: { wait?: number } } | undefined
      for (let round = 0; round < 20 && busy === undefined; round++) {
        const replies = await Promise.all(clients.flatMap(c => [0, 1, 2].map(async i => await c.remoteApply('megatest', ['ci', 'set-var', `raw-${round}-${i}`, 'x'], node.host) as { status: string, result: unknown, meta: { wait?: number } })))
        busy = replies.find(r => r.status === 'busy')
      }
      assert.ok(busy !== undefined, 'some request was answered busy')
      assert.ok(typeof busy.meta.wait === 'number' && busy.meta.wait >= 1)
      assert.equal(busy.result, busy.meta.wait)
      // Through megatest.<command>, the client retries busy answers by itself.
      const perClient = 8
      await Promise.all(clients.map(async (c, ci) => {
        await Promise.all(Array.from({ length: perClient }, async (_, i) => {
          assert.equal(await c.remoteApply('megatest.set-var', ['ci', `v-${ci}-${i}`, `${ci}:${i}`], node.host), `${ci}:${i}`)
        }))
      }))
      const check = clients[0]!
      for (let ci = 0; ci < clients.length; ci++) {
        for (let i = 0; i < perClient; i++) assert.equal(await check.remoteApply('megatest.get-var', ['ci', `v-${ci}-${i}`], node.host), `${ci}:${i}`)
      }
    } finally {
      for (const c of clients) c.close()
      await node.stop()
    }
  })

  test('a read-only node refuses every write over the mesh, naming the command, and still reads', async () => {
    const dir = tempDir('evalmesh-mt-ro-')
    const writer = await startNode(['--area', `ci=${dir}`, '--keys', 'TARGET'])
    const wc = localClient(writer)
    await wc.remoteApply('megatest.set-var', ['ci', 'seen', 'yes'], writer.host)
    wc.close()
    await writer.stop()
    const ro = await startNode(['--area', `ci=${dir}`, '--read-only'])
    const c = localClient(ro)
    try {
      assert.equal(await c.remoteApply('megatest.get-var', ['ci', 'seen'], ro.host), 'yes')
      await assert.rejects(c.remoteApply('megatest.set-var', ['ci', 'x', '1'], ro.host), is('READ_ONLY', /set-var/))
      await assert.rejects(c.remoteApply('megatest.register-run', ['ci', { TARGET: 't' }, 'r', 'new', 'n/a', 'u', ''], ro.host), is('READ_ONLY', /register-run/))
      await assert.rejects(c.remoteEval(`await megatest['del-var']('ci', 'seen')`, ro.host), (e: RemoteEvalError) => /del-var/.test(e.message) && /read-only/.test(e.message))
      const full = await c.remoteApply('megatest', ['ci', 'kill-server'], ro.host) as { status: string, meta: { code: string } }
      assert.deepEqual([full.status, full.meta.code], ['error', 'READ_ONLY'])
      assert.equal(await c.remoteApply('megatest.get-var', ['ci', 'seen'], ro.host), 'yes')
    } finally {
      c.close()
      await ro.stop()
    }
  })

  test('one primary server per area: a second writer stops serving it; a read-only node stays beside the primary', async () => {
    const dir = tempDir('evalmesh-mt-primary-')
    const member = newMesh()
    const first = await startNode(['--area', `ci=${dir}`, '--keys', 'TARGET'], { name: 'first', stateDir: member() })
    const second = await startNode(['--area', `ci=${dir}`, '--keys', 'TARGET'], { name: 'second', stateDir: member() })
    const reader = await startNode(['--area', `ci=${dir}`, '--read-only'], { name: 'reader', stateDir: member() })
    const c = new Client({ stateDir: member() })
    try {
      // Both writers register; the later one finds the earlier one heartbeating and steps down.
      await eventually(() => /Megatest area ci: first \S+ at 127\.0\.0\.1:\d+ started earlier and is its primary server; no longer serving it here/.test(second.output()),
        'the second writer to step down', 30_000)
      assert.deepEqual(listServers(dir).map(r => r.port), [first.port], 'only the primary is registered; the reader never is')
      await assert.rejects(c.remoteApply('megatest.set-var', ['ci', 'x', '1'], second.host), is('UNKNOWN_AREA'))
      assert.equal(await c.remoteEval('"still here"', second.host), 'still here', 'the node carries on')
      await c.remoteApply('megatest.set-var', ['ci', 'x', 'two'], first.host)
      assert.equal(await c.remoteApply('megatest.get-var', ['ci', 'x'], reader.host), 'two', 'the reader reads what the primary wrote')
      assert.doesNotMatch(reader.output(), /primary server/)
      assert.deepEqual(listServers(dir).map(r => r.port), [first.port])
    } finally {
      c.close()
      await Promise.all([first.stop(), second.stop(), reader.stop()])
    }
  })

  test('kill -9 right after acknowledged writes loses none of them', async () => {
    const dir = tempDir('evalmesh-mt-kill-')
    const node = await startNode(['--area', `ci=${dir}`, '--keys', 'RELEASE'])
    const c = localClient(node)
    const runId = await c.remoteApply('megatest.register-run', ['ci', { RELEASE: 'r1' }, 'durable', 'new', 'n/a', 'u', ''], node.host) as number
    const acked: string[] = []
    for (let i = 0; i < 40; i++) {
      const item = `i${i}`
      await c.remoteApply('megatest.general-call', ['ci', 'register-test', runId, runId, 't', item], node.host)
      acked.push(item)
    }
    const last = await c.remoteApply('megatest.get-test-id', ['ci', runId, 't', 'i39'], node.host) as number
    await c.remoteApply('megatest.set-state-status-and-roll-up-items', ['ci', runId, last, null, 'COMPLETED', 'PASS', 'last write'], node.host)
    node.proc.kill('SIGKILL')
    await node.stop()
    c.close()
    const again = await startNode(['--area', `ci=${dir}`])
    const c2 = localClient(again)
    try {
      const tests = await c2.remoteApply('megatest.get-tests-for-run', ['ci', runId, 't/%', [], [], 0, 0, false, 'testname', 'asc', 'shortlist', null, null], again.host) as Array<{ item_path: string }>
      assert.deepEqual(tests.map(t => t.item_path).sort(), acked.sort())
      const rec = await c2.remoteApply('megatest.get-test-info-by-id', ['ci', runId, last], again.host) as { state: string, status: string, comment: string }
      assert.deepEqual([rec.state, rec.status, rec.comment], ['COMPLETED', 'PASS', 'last write'])
    } finally {
      c2.close()
      await again.stop()
    }
  })
})

describe('area servers: Megatest\'s connect-and-start', () => {
  const stateDir = tempDir()
  const started: number[] = []
  const stopAll = (): void => {
    for (const pid of started) { try { process.kill(pid, 'SIGTERM') } catch { /* gone */ } }
  }
  after(stopAll)

  const alive = (pid: number): boolean => { try { process.kill(pid, 0); return true } catch { return false } }

  test('starts a node when none serves the area, reuses it, never starts two at once', async () => {
    const dir = tempDir('evalmesh-as-')
    const first = await findOrStartAreaServer(dir, { stateDir, idleTimeoutSeconds: 120 })
    started.push(first.registration.pid)
    assert.equal(first.started, true)
    assert.equal(first.area, dir.split('/').pop())
    assert.ok(first.log !== undefined && existsSync(first.log), 'the node logs to <area>/logs/server-<pid>.log')
    assert.match(first.log, new RegExp(`/logs/server-${first.registration.pid}\\.log$`))
    const again = await findOrStartAreaServer(dir, { stateDir })
    assert.deepEqual([again.started, again.host], [false, first.host])
    const c = new Client({ stateDir })
    try {
      assert.equal(await c.remoteApply(`megatest.ping`, [first.area], first.host), areaSignature(dir))
    } finally { c.close() }

    // Three callers at once on a fresh area: one start, one node, every caller gets it.
    const dir2 = tempDir('evalmesh-as-')
    const many = await Promise.all([0, 1, 2].map(async () => await findOrStartAreaServer(dir2, { stateDir, idleTimeoutSeconds: 120 })))
    for (const m of many) if (m.started) started.push(m.registration.pid)
    assert.equal(many.filter(m => m.started).length, 1)
    assert.equal(new Set(many.map(m => m.host)).size, 1)
    assert.equal(listServers(dir2).length, 1)
    assert.equal(readdirSync(join(dir2, 'logs')).filter(f => /^server-\d+\.log$/.test(f)).length, 1)
  })

  test('stale and dead registrations are cleaned; then a node is started', async () => {
    const dir = tempDir('evalmesh-as-')
    const sdir = servinfoDir(dir)
    mkdirSync(sdir, { recursive: true })
    // A registration nobody touched for a minute, one of a dead local process, and garbage.
    const old = join(sdir, '127.0.0.1:1-999999')
    writeFileSync(old, formatServinfoLine({ host: '127.0.0.1', port: 1, startedAt: 1, serverId: areaSignature(dir), pid: 999999, node: 'old' }) + '\n')
    const past = new Date(Date.now() - 60_000)
    utimesSync(old, past, past)
    const dead = spawn(process.execPath, ['-e', '0'])
    const deadPid = await new Promise<number>(resolve => dead.once('exit', () => resolve(dead.pid!)))
    const deadFile = join(sdir, `127.0.0.1:2-${deadPid}`)
    writeFileSync(deadFile, formatServinfoLine({ host: '127.0.0.1', port: 2, startedAt: 2, serverId: areaSignature(dir), pid: deadPid, node: 'dead' }) + '\n')
    writeFileSync(join(sdir, 'garbage'), 'not a registration\n')
    const events: string[] = []
    const found = await findOrStartAreaServer(dir, { stateDir, idleTimeoutSeconds: 120, onEvent: m => events.push(m) })
    started.push(found.registration.pid)
    assert.equal(found.started, true)
    assert.ok(!existsSync(old) && !existsSync(deadFile) && !existsSync(join(sdir, 'garbage')))
    assert.ok(events.some(e => /removed stale registration 127\.0\.0\.1:1-999999/.test(e)), events.join('\n'))
    assert.ok(events.some(e => new RegExp(`dead process ${deadPid}`).test(e)), events.join('\n'))
    assert.deepEqual(listServers(dir).map(r => r.pid), [found.registration.pid])
  })

  test('enough live servers registered, or a start under 5 s ago: no new start, and the wait is bounded', async () => {
    const dir = tempDir('evalmesh-as-')
    const sdir = servinfoDir(dir)
    mkdirSync(sdir, { recursive: true })
    // A live-looking registration (fresh mtime, this test process's pid) of a node that does not serve the area.
    const other = await startNode([])
    try {
      writeFileSync(join(sdir, `127.0.0.1:${other.port}-${process.pid}`), formatServinfoLine({ host: '127.0.0.1', port: other.port, startedAt: Date.now() / 1000, serverId: areaSignature(dir), pid: process.pid, node: 'impostor' }) + '\n')
      await assert.rejects(findOrStartAreaServer(dir, { stateDir: other.stateDir, maxServers: 1, timeoutMs: 2500 }), (err: Error & { code?: string }) =>
        err.code === 'NO_WILLING_SERVER' && /1 live server\(s\) registered \(max 1\)/.test(err.message))
      assert.ok(!existsSync(join(dir, 'logs')) || readdirSync(join(dir, 'logs')).every(f => !/^server-\d+\.log$/.test(f)), 'nothing was started')
    } finally {
      await other.stop()
    }
  })

  test('an idle node stops by itself and unregisters; kill-server stops serving the area (never the node); the CLI prints host:port', async () => {
    const dir = tempDir('evalmesh-as-')
    const idle = await findOrStartAreaServer(dir, { stateDir, idleTimeoutSeconds: 1 })
    started.push(idle.registration.pid)
    assert.equal(idle.started, true)
    await eventually(() => !alive(idle.registration.pid), 'the idle node to exit', 30_000)
    assert.deepEqual(listServers(dir), [])

    // The CLI: a fresh start (our 5 s guard is per process; this is another one).
    const out = await runCli(['area-server', dir, '--state-dir', stateDir, '--idle-timeout', '120', '--json'])
    assert.equal(out.code, 0, out.stderr)
    const j = (JSON.parse(out.stdout) as { value: { host: string, started: boolean, pid: number } }).value
    started.push(j.pid)
    assert.equal(j.started, true)
    const plain = await runCli(['area-server', dir, '--state-dir', stateDir])
    assert.equal(plain.stdout.trim(), j.host, 'a second call reuses the node')

    const c = new Client({ stateDir })
    try {
      // kill-server (an operator action: this client holds the node's key) ends the area, not
      // the node (issue 11): the area's registration goes, the node answers on, and idles out.
      assert.equal(await c.remoteApply('megatest.kill-server', [idle.area], j.host), true)
      await eventually(() => listServers(dir).length === 0, 'kill-server to unregister the area', 30_000)
      await assert.rejects(c.remoteApply('megatest.get-keys', [idle.area], j.host), (err: RemoteEvalError) => err.code === 'UNKNOWN_AREA')
      assert.ok(alive(j.pid), 'the node carries on')
    } finally { c.close() }
    process.kill(j.pid, 'SIGTERM')
    await eventually(() => !alive(j.pid), 'the node to stop on SIGTERM', 30_000)
  })
})

async function runCli (args: string[]): Promise<CliResult> {
  return await runCiCli(args, { timeoutMs: 60_000 })
}

import { test } from 'node:test'
import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { createConnection, type Socket } from 'node:net'
import { mkdtempSync, rmSync, statSync, writeFileSync, existsSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { formatTxn } from '@evalmesh/protocol'
import { ClientConnection } from '@evalmesh/transport'
import { startServer, type EvalServer } from '../src/index.js'
import { controlRequest } from '@evalmesh/client'
import { startControlPort, type ControlPort } from '../src/control-port.js'

interface Fixture { server: EvalServer, port: ControlPort, dir: string, path: string }

// The node may one day open its own control port at <state>/control.sock, so tests use their own path.
async function fixture (init: Parameters<typeof startServer>[0] = {}): Promise<Fixture> {
  const dir = mkdtempSync(join(tmpdir(), 'em-ctl-'))
  const server = await startServer({ stateDir: dir, name: 'ctlnode', port: 0, ...init })
  const path = join(dir, 'test-control.sock')
  const port = await startControlPort(server, path)
  return { server, port, dir, path }
}

async function teardown (f: Fixture): Promise<void> {
  await f.port.close()
  await f.server.stop()
  rmSync(f.dir, { recursive: true, force: true })
}

/** A line-at-a-time conversation on one control connection. */
class Session {
  readonly socket: Socket
  #buffer = ''
  #waiters: Array<(line: string) => void> = []
  #lines: string[] = []
  closed: Promise<void>

  constructor (path: string) {
    this.socket = createConnection(path)
    this.socket.setEncoding('utf8')
    this.closed = new Promise(resolve => this.socket.once('close', () => resolve()))
    this.socket.on('data', (chunk: string) => {
      this.#buffer += chunk
      let nl: number
      while ((nl = this.#buffer.indexOf('\n')) >= 0) {
        const line = this.#buffer.slice(0, nl)
        this.#buffer = this.#buffer.slice(nl + 1)
        const w = this.#waiters.shift()
        if (w !== undefined) w(line); else this.#lines.push(line)
      }
    })
  }

  async send (line: string): Promise<any> {
    this.socket.write(line + '\n')
    return await this.next()
  }

  async next (): Promise<any> {
    const line = this.#lines.shift() ?? await new Promise<string>(resolve => this.#waiters.push(resolve))
    return JSON.parse(line)
  }

  end (): void { this.socket.end() }
}

/** Submit an apply of the registered `hold` function (runs until aborted) on a raw connection. */
async function holdOn (server: EvalServer, conn: ClientConnection, tag: string, seq: number): Promise<string> {
  const txn = formatTxn({ client: `${server.id}.${tag}`, seq })
  await conn.request({ kind: 'apply', txn, fn: 'hold', args: [], wait: false })
  return txn
}

const hold = async function (this: { signal: AbortSignal }): Promise<never> {
  return await new Promise((_resolve, reject) => {
    this.signal.addEventListener('abort', () => reject(this.signal.reason), { once: true })
  })
}

test('the socket is owner-only and answers help, time and status', async () => {
  const f = await fixture()
  try {
    const st = statSync(f.path)
    assert.ok(st.isSocket())
    assert.equal(st.mode & 0o777, 0o600)

    const s = new Session(f.path)
    const help = await s.send('help')
    assert.equal(help.ok, true)
    const usages = help.commands.map((c: { usage: string }) => c.usage.split(' ')[0])
    for (const c of ['status', 'time', 'kill', 'abort', 'gag', 'ungag', 'hosts', 'trace', 'control']) assert.ok(usages.includes(c), c)

    const before = Math.floor(Date.now() / 1000)
    const time = await s.send('time')
    assert.equal(time.ok, true)
    assert.ok(time.time >= before && time.time <= Math.ceil(Date.now() / 1000))

    const tasks = await s.send('status tasks')
    assert.deepEqual({ ok: tasks.ok, total: tasks.total, running: tasks.running, input: tasks.input }, { ok: true, total: 0, running: [], input: [] })

    const policy = await s.send('status policy')
    assert.deepEqual(policy, { ok: true, hosts: ['directed', 'broadcast'], gags: [], trace: false })
    s.end()
  } finally {
    await teardown(f)
  }
})

test('malformed commands get an error naming the problem, and the port stays open', async () => {
  const f = await fixture()
  try {
    const s = new Session(f.path)
    const cases: Array<[string, RegExp]> = [
      ['frobnicate now', /unknown command "frobnicate"/],
      ['status', /"status" needs what: tasks, done, net or policy/],
      ['status sideways', /unknown status "sideways"/],
      ['kill', /"kill" needs a connection ID/],
      ['kill seven', /"seven" is not a connection id/],
      ['kill 99999', /no connection 99999/],
      ['abort', /"abort" needs a transaction id/],
      ['gag', /"gag" needs one or more names/],
      ['hosts', /"hosts" needs one or more/],
      ['trace maybe', /trace takes on, off or clear, not "maybe"/],
      ['control start', /only "control stop"/],
      ['time 12', /"time" takes no arguments/],
      ['\u0000\u00ff garbage \u001b[A', /unknown command/]
    ]
    for (const [line, error] of cases) {
      const r = await s.send(line)
      assert.equal(r.ok, false, line)
      assert.match(r.error, error, line)
    }
    // An over-long line is refused without closing the connection.
    const long = await s.send('x'.repeat(70 * 1024))
    assert.equal(long.ok, false)
    assert.match(long.error, /longer than/)
    // Blank lines are ignored; the same connection still works.
    s.socket.write('\n\n')
    assert.equal((await s.send('time')).ok, true)
    s.end()
    // And so does a fresh connection.
    assert.equal((await controlRequest(f.path, 'status net')).ok, true)
  } finally {
    await teardown(f)
  }
})

test('status net lists connections with their age; kill closes one', async () => {
  const f = await fixture()
  try {
    const conn = await ClientConnection.open({ host: '127.0.0.1', port: f.server.address.port, identity: f.server.identity, trust: f.server.trust })
    const closed = new Promise<void>(resolve => conn.once('close', () => resolve()))
    await conn.request({ kind: 'ping' })
    const net = await controlRequest(f.path, 'status net') as any
    assert.equal(net.total, 1)
    const c = net.connections[0]
    assert.equal(c.peer, 'ctlnode')
    assert.equal(c.self, true)
    assert.equal(c.address, '127.0.0.1')
    assert.equal(typeof c.seconds, 'number')
    assert.ok(c.seconds >= 0)

    const killed = await controlRequest(f.path, `kill ${c.id}`) as any
    assert.deepEqual(killed, { ok: true, killed: c.id, peer: 'ctlnode' })
    await closed
    assert.equal(conn.closed, true)
    assert.equal(((await controlRequest(f.path, 'status net')) as any).total, 0)
  } finally {
    await teardown(f)
  }
})

test('status tasks shows running and queued work; abort stops it and the done list says why', async () => {
  const f = await fixture({ concurrency: 1, functions: { hold } })
  try {
    const conn = await ClientConnection.open({ host: '127.0.0.1', port: f.server.address.port, identity: f.server.identity, trust: f.server.trust })
    const running = await holdOn(f.server, conn, 'aaaaaa', 1)
    const queued = await holdOn(f.server, conn, 'aaaaaa', 2)
    const tasks = await controlRequest(f.path, 'status tasks') as any
    assert.deepEqual(tasks.running.map((r: any) => r.txn), [running])
    assert.deepEqual(tasks.input.map((r: any) => r.txn), [queued])
    assert.equal(tasks.running[0].summary, 'hold()')

    const q = await controlRequest(f.path, `abort ${queued} operator needs the slot`) as any
    assert.deepEqual(q, { ok: true, txn: queued, aborted: true, state: 'done', reason: 'operator needs the slot' })
    // A bare sequence number works too, as EVALSERVER.ABORT took a number.
    const r = await controlRequest(f.path, 'abort 1') as any
    assert.equal(r.ok, true)
    assert.equal(r.txn, running)
    assert.equal(r.aborted, true)

    const done = await controlRequest(f.path, 'status done') as any
    const byTxn = new Map(done.done.map((d: any) => [d.txn, d]))
    assert.equal((byTxn.get(queued) as any).howStopped, 'aborted')
    assert.equal((byTxn.get(queued) as any).reason, 'operator needs the slot')
    assert.equal((byTxn.get(running) as any).howStopped, 'aborted')
    assert.equal((byTxn.get(running) as any).reason, 'aborted via the control port')

    const again = await controlRequest(f.path, `abort ${running}`) as any
    assert.equal(again.ok, true)
    assert.equal(again.aborted, false)
    assert.equal(again.reason, 'already done')
    conn.close()
  } finally {
    await teardown(f)
  }
})

test('gag, ungag, hosts and trace change the live node', async () => {
  const f = await fixture()
  try {
    const s = new Session(f.path)
    assert.deepEqual(await s.send('gag mallory broadcast'), { ok: true, hosts: ['directed', 'broadcast'], gags: ['mallory', 'broadcast'] })
    assert.deepEqual(f.server.policy.state.gags, ['mallory', 'broadcast'])
    assert.deepEqual(await s.send('ungag broadcast'), { ok: true, hosts: ['directed', 'broadcast'], gags: ['mallory'] })
    assert.deepEqual(await s.send('hosts directed alice'), { ok: true, hosts: ['directed', 'alice'], gags: ['mallory'] })
    assert.deepEqual((await s.send('hosts default')).hosts, ['directed', 'broadcast'])

    assert.equal(f.server.trace.enabled, false)
    assert.equal((await s.send('trace on')).trace, true)
    assert.equal(f.server.trace.enabled, true)
    // Tracing records what the control port changed, with who changed it.
    await s.send('gag eve')
    assert.ok(f.server.trace.since(0).some(e => e.kind === 'policy' && /control port/.test(e.detail) && /eve/.test(e.detail)))
    assert.equal((await s.send('trace clear')).ok, true)
    assert.deepEqual(f.server.trace.since(0), [])
    assert.equal((await s.send('trace off')).trace, false)
    assert.equal(f.server.trace.enabled, false)
    s.end()
  } finally {
    await teardown(f)
  }
})

test('control stop closes the port for good; the node keeps serving', async () => {
  const f = await fixture()
  try {
    const s = new Session(f.path)
    assert.deepEqual(await s.send('control stop'), { ok: true, stopped: true })
    await s.closed
    await f.port.close()
    assert.equal(f.port.closed, true)
    assert.equal(existsSync(f.path), false)
    await assert.rejects(controlRequest(f.path, 'time'), /no control port/)
    const conn = await ClientConnection.open({ host: '127.0.0.1', port: f.server.address.port, identity: f.server.identity, trust: f.server.trust })
    assert.equal(((await conn.request({ kind: 'ping' })) as any).name, 'ctlnode')
    conn.close()
  } finally {
    await teardown(f)
  }
})

test('a second port on a live socket is refused; a stale socket file is replaced; other files are left alone', async () => {
  const f = await fixture()
  try {
    await assert.rejects(startControlPort(f.server, f.path), /in use by a running node/)
    assert.equal((await controlRequest(f.path, 'time')).ok, true)

    // A socket file left by a process that was killed (nobody listens on it) is taken over.
    const stale = join(f.dir, 'stale.sock')
    const child = spawn(process.execPath, ['-e', `require('net').createServer().listen(${JSON.stringify(stale)}, () => console.log('up'))`], { stdio: ['ignore', 'pipe', 'inherit'] })
    await new Promise<void>(resolve => child.stdout!.once('data', () => resolve()))
    const exited = new Promise<void>(resolve => child.once('exit', () => resolve()))
    child.kill('SIGKILL')
    await exited
    assert.equal(statSync(stale).isSocket(), true)
    const p = await startControlPort(f.server, stale)
    assert.equal((await controlRequest(stale, 'time')).ok, true)
    await p.close()

    const regular = join(f.dir, 'not-a-socket')
    writeFileSync(regular, 'keep me')
    await assert.rejects(startControlPort(f.server, regular), /not a socket/)
    assert.equal(statSync(regular).isFile(), true)
  } finally {
    await teardown(f)
  }
})

test('the port closes itself when the node stops', async () => {
  const f = await fixture()
  await f.server.stop()
  assert.equal(f.port.closed, true)
  assert.equal(existsSync(f.path), false)
  rmSync(f.dir, { recursive: true, force: true })
})

test('the default path is control.sock in the state directory', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'em-ctl-'))
  const server = await startServer({ stateDir: dir, name: 'defpath', port: 0 })
  // If the node already opened its own port there, that one is the one to check.
  const own = existsSync(join(dir, 'control.sock'))
  const port = own ? undefined : await startControlPort(server)
  try {
    if (port !== undefined) assert.equal(port.path, join(dir, 'control.sock'))
    assert.equal((statSync(join(dir, 'control.sock')).mode & 0o777), 0o600)
    assert.equal(((await controlRequest(join(dir, 'control.sock'), 'status policy')) as any).ok, true)
  } finally {
    await port?.close()
    await server.stop()
    rmSync(dir, { recursive: true, force: true })
  }
})

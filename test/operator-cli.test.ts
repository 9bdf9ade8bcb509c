/**
 * The operator commands as a user runs them: `evalmesh trace`, `ctl`, `start` and
 * `monitor` in child processes against real nodes; the monitor and `start` on a real
 * terminal under tmux.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { spawn, spawnSync, type ChildProcess } from 'node:child_process'
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { dirname, join } from 'node:path'
import { fileURLToPath, pathToFileURL } from 'node:url'
import { Client } from '@evalmesh/client'
import { startServer, type EvalServer } from '@evalmesh/server'
import { busyFor, runCli, startNode, tempDir, type CliRun } from './support/node.js'

const root = (() => {
  let dir = dirname(fileURLToPath(import.meta.url))
  while (!existsSync(join(dir, 'apps', 'cli', 'package.json'))) dir = dirname(dir)
  return dir
})()

/** The evalmesh command exactly as a user runs it. */
function cli (): string[] {
  return ['--no-node-snapshot', join(root, 'apps', 'cli', 'bin', 'evalmesh.js')]
}

function evalmesh (dir: string, args: string[], input?: string): Promise<CliRun> {
  return runCli(args, input === undefined ? { stateDir: dir } : { stateDir: dir, input })
}

async function waitFor<T> (what: string, probe: () => T | undefined | false, ms = 30_000, detail: () => string = () => ''): Promise<T> {
  const until = Date.now() + ms
  while (Date.now() < until) {
    const v = probe()
    if (v !== undefined && v !== false) return v
    await new Promise(resolve => setTimeout(resolve, 50))
  }
  throw new Error(`timed out waiting for ${what}\n${detail()}`)
}

interface Node { dir: string, server: EvalServer, host: string, client: Client }

async function node (name = 'clinode'): Promise<Node> {
  const dir = mkdtempSync(join(tmpdir(), 'em-cli-'))
  const hold = async function (this: { signal: AbortSignal }): Promise<never> {
    return await new Promise((_resolve, reject) => this.signal.addEventListener('abort', () => reject(this.signal.reason), { once: true }))
  }
  const server = await startServer({ stateDir: dir, name, port: 0, functions: { hold } })
  return { dir, server, host: `127.0.0.1:${server.address.port}`, client: new Client({ stateDir: dir }) }
}

async function stopNode (n: Node): Promise<void> {
  n.client.close()
  await n.server.stop()
  rmSync(n.dir, { recursive: true, force: true })
}

test('evalmesh trace: --on, events with time, kind, txn, peer and detail, --json, --clear, --off', async () => {
  const n = await node()
  try {
    const off = await evalmesh(n.dir, ['trace', '--host', n.host])
    assert.equal(off.code, 0, off.stderr)
    assert.match(off.stderr, /tracing is off at .*--on turns it on/)

    const on = await evalmesh(n.dir, ['trace', '--host', n.host, '--on'])
    assert.equal(on.code, 0, on.stderr)
    assert.match(on.stderr, /tracing is now on/)
    assert.equal(n.server.trace.enabled, true)

    assert.equal(await n.client.remoteEval('3 * 3', n.host), 9)
    n.server.setPolicy({ gag: ['self'] })
    await assert.rejects(n.client.remoteEval('4 * 4', n.host), /refused/)
    n.server.setPolicy({ ungag: ['self'] })

    const json = await evalmesh(n.dir, ['trace', '--host', n.host, '--json'])
    assert.equal(json.code, 0, json.stderr)
    const events = (JSON.parse(json.stdout) as { value: { events: Array<{ kind: string, txn?: string, peer?: string, detail: string, time: number }> } }).value.events
    const served = events.find(e => e.kind === 'served' && e.detail.includes('3 * 3'))
    assert.ok(served !== undefined, json.stdout)
    assert.equal(served.peer, 'clinode')
    assert.ok(events.some(e => e.kind === 'finished' && e.txn === served.txn))
    assert.ok(events.some(e => e.kind === 'refused' && /gag self/.test(e.detail)), json.stdout)

    const text = await evalmesh(n.dir, ['trace', '--host', n.host])
    const line = text.stdout.split('\n').find(l => l.includes('served') && l.includes('3 * 3'))
    assert.match(line ?? '', /^\d\d:\d\d:\d\d\.\d{3} served +…?\S+:\d+ clinode .*3 \* 3/)

    const cleared = await evalmesh(n.dir, ['trace', '--host', n.host, '--clear', '--json'])
    assert.deepEqual((JSON.parse(cleared.stdout) as { value: { events: unknown[] } }).value.events, [])
    const offAgain = await evalmesh(n.dir, ['trace', '--host', n.host, '--off'])
    assert.match(offAgain.stderr, /tracing is now off/)
    assert.equal(n.server.trace.enabled, false)

    const bad = await evalmesh(n.dir, ['trace', '--host', n.host, '--on', '--off'])
    assert.equal(bad.code, 2)
    assert.match(bad.stderr, /give --on or --off, not both/)
  } finally {
    await stopNode(n)
  }
})

test('evalmesh trace --follow prints new events as they happen and stops on Ctrl-C', async () => {
  const n = await node()
  let child: ChildProcess | undefined
  try {
    n.server.trace.enabled = true
    child = spawn(process.execPath, [...cli(), 'trace', '--host', n.host, '--follow', '--interval', '100'], { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, EVALMESH_STATE_DIR: n.dir } })
    let out = ''
    child.stdout!.on('data', d => { out += d })
    const exited = new Promise<number | null>(resolve => child!.once('exit', code => resolve(code)))
    // Whether the eval lands before the first poll or after it, the follower prints it once.
    await n.client.remoteEval('"followed-form"', n.host)
    await waitFor('a followed event', () => out.includes('followed-form'), 30_000, () => out)
    await n.client.remoteEval('"second-form"', n.host)
    await waitFor('a later event', () => out.includes('second-form'), 30_000, () => out)
    assert.equal(out.split('\n').filter(l => l.includes('served') && l.includes('followed-form')).length, 1, out)
    await waitFor('its finish', () => out.split('\n').some(l => l.includes('finished')), 30_000, () => out)
    child.kill('SIGINT')
    assert.equal(await exited, 0)
  } finally {
    if (child !== undefined && child.exitCode === null) child.kill('SIGKILL')
    await stopNode(n)
  }
})

async function controlPortFor (server: EvalServer): Promise<{ path: string, close: () => Promise<void> }> {
  const path = join(server.stateDir, 'control.sock')
  if (existsSync(path)) return { path, close: async () => {} } // the node opened its own
  const mod = await import(pathToFileURL(join(root, 'packages/server/dist/src/control-port.js')).href) as {
    startControlPort: (s: EvalServer) => Promise<{ path: string, close: () => Promise<void> }>
  }
  return await mod.startControlPort(server)
}

test('evalmesh ctl: one command prints the JSON reply; the prompt keeps history; errors exit 1', async () => {
  const n = await node()
  const port = await controlPortFor(n.server)
  try {
    const time = await evalmesh(n.dir, ['ctl', '--state-dir', n.dir, 'time'])
    assert.equal(time.code, 0, time.stderr)
    assert.equal(typeof JSON.parse(time.stdout).value.time, 'number')

    const txn = await n.client.remoteApply('hold', [], n.host, { wait: false }) as string
    const tasks = JSON.parse((await evalmesh(n.dir, ['ctl', '--state-dir', n.dir, 'status', 'tasks'])).stdout).value
    assert.deepEqual(tasks.running.map((r: { txn: string }) => r.txn), [txn])
    const abort = await evalmesh(n.dir, ['ctl', '--state-dir', n.dir, 'abort', txn, 'from', 'the', 'ctl'])
    assert.equal(JSON.parse(abort.stdout).value.aborted, true)
    assert.equal(n.server.status('done', txn)[0]?.reason, 'from the ctl')

    const bad = await evalmesh(n.dir, ['ctl', '--state-dir', n.dir, 'frobnicate'])
    assert.equal(bad.code, 1)
    assert.deepEqual(JSON.parse(bad.stdout).error.code, 'CONTROL_ERROR')
    assert.match(JSON.parse(bad.stdout).error.message, /unknown command "frobnicate"/)

    // No command: a prompt reading lines (here from a pipe) on one connection.
    const session = await evalmesh(n.dir, ['ctl', '--state-dir', n.dir], 'gag mallory\nbogus\nstatus policy\n')
    assert.equal(session.code, 0, session.stderr)
    const replies = session.stdout.split('\n').map(l => l.replace(/^(ctl> )+/, '')).filter(l => l.startsWith('{')).map(l => JSON.parse(l))
    assert.deepEqual(replies.map(r => r.ok), [true, false, true])
    assert.deepEqual(replies[2].gags, ['mallory'])
    const history = readFileSync(join(n.dir, 'ctl_history'), 'utf8')
    assert.match(history, /gag mallory\n(.*\n)?status policy/)

    const none = await evalmesh(n.dir, ['ctl', '--socket', join(n.dir, 'nothing.sock'), 'time'])
    assert.equal(none.code, 1)
    assert.match(none.stderr, /no control port at .*nothing\.sock/)
  } finally {
    await port.close()
    await stopNode(n)
  }
})

test('evalmesh start without a terminal runs the node like serve; SIGTERM stops it', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'em-start-'))
  const child = spawn(process.execPath, [...cli(), 'start', '--port', '0', '--name', 'started', '--state-dir', dir], { stdio: ['ignore', 'pipe', 'pipe'] })
  try {
    let out = ''
    let err = ''
    child.stdout.on('data', d => { out += d })
    child.stderr.on('data', d => { err += d })
    const exited = new Promise<number | null>(resolve => child.once('exit', code => resolve(code)))
    const m = await waitFor('the listening line', () => /evalmesh node "started" .* listening on 127\.0\.0\.1:(\d+)/.exec(out) ?? undefined, 60_000, () => out + err)
    const client = new Client({ stateDir: dir })
    assert.equal(await client.remoteEval('40 + 2', `127.0.0.1:${m[1]}`), 42)
    client.close()
    child.kill('SIGTERM')
    assert.equal(await exited, 0)
    assert.match(err, /evalmesh node "started" stopped/)
  } finally {
    if (child.exitCode === null) child.kill('SIGKILL')
    rmSync(dir, { recursive: true, force: true })
  }
})

// ---- what a peer chose never acts on the terminal; Error values; waiting said -----------

/** What a hostile peer puts in a form, a reason or a message: a clear-screen and a forged line. */
const EVIL = '\x1b[2J\n fake line'

/** No raw ESC, no forged line: the text shows the escapes instead. */
function assertEscaped (text: string, what: string): void {
  assert.ok(!text.includes('\x1b'), `${what} holds a raw ESC: ${JSON.stringify(text)}`)
  assert.ok(!text.split('\n').some(l => l.startsWith(' fake line')), `${what} holds a forged line: ${JSON.stringify(text)}`)
  assert.ok(text.includes('\\x1b[2J'), `${what} shows the escape: ${JSON.stringify(text)}`)
}

test('evalmesh status, abort, eval errors and console output show what a peer chose as visible escapes; --json stays JSON', async () => {
  const n = await node()
  try {
    // A form holding a raw ESC (in a string literal), aborted with a reason holding ESC and a newline.
    const form = `"${EVIL.replace('\n', '\\n')}"; while (true) {}`
    assert.ok(form.includes('\x1b'))
    const txn = (await evalmesh(n.dir, ['eval', form, '--host', n.host, '--no-wait'])).stdout.trim()
    await waitFor('it running', () => n.server.status('running', txn).length === 1)
    const running = await evalmesh(n.dir, ['status', '--host', n.host])
    assert.equal(running.code, 0, running.stderr)
    assert.ok(running.stdout.includes(txn), running.stdout)
    assert.ok(!running.stdout.includes('\x1b'), running.stdout)
    assert.ok(running.stdout.includes('\\x1b[2J'), running.stdout)

    const abort = await evalmesh(n.dir, ['abort', txn, '--host', n.host, '--reason', EVIL])
    assert.equal(abort.code, 0, abort.stderr)
    assertEscaped(abort.stdout, 'abort')
    const status = await evalmesh(n.dir, ['status', '--host', n.host, '--which', 'done', '--id', txn])
    assert.equal(status.code, 0, status.stderr)
    assertEscaped(status.stdout, 'status')
    assert.match(status.stdout, /DONE .* aborted \(\\x1b\[2J\\n fake line\)/)
    assert.equal(status.stdout.trim().split('\n').length, 2, 'a header and one row: ' + status.stdout)

    // --json is JSON: the values come back exactly.
    const json = await evalmesh(n.dir, ['status', '--host', n.host, '--which', 'done', '--id', txn, '--json'])
    const records = (JSON.parse(json.stdout) as { ok: boolean, value: Array<{ reason: string, summary: string }> }).value
    assert.equal(records[0]!.reason, EVIL)
    assert.ok(records[0]!.summary.includes('\x1b[2J'))
    assert.ok(!json.stdout.includes('\x1b'), 'JSON writes ESC as \\u001b')

    // An error message, and the console output before it, from the node.
    const failed = await evalmesh(n.dir, ['eval', `console.log(${JSON.stringify(EVIL)}); throw new Error(${JSON.stringify(EVIL)})`, '--host', n.host])
    assert.equal(failed.code, 1)
    // The console output goes to a pipe as it is (escaped only on a terminal), then the error.
    assert.ok(failed.stderr.startsWith(EVIL + '\n'), failed.stderr)
    const error = failed.stderr.slice(EVIL.length + 1)
    assertEscaped(error, 'the error')
    assert.match(error, /^error \(on clinode, txn .*\): Error: \\x1b\[2J\\n fake line\n +at /)

    // With --raw a string value goes to a pipe byte for byte (scripts get what the form returned); bidi
    // overrides in an inspected value are escaped, since inspect leaves them.
    const raw = await evalmesh(n.dir, ['eval', JSON.stringify('a\tb'), '--host', n.host, '--raw'])
    assert.equal(raw.stdout, 'a\tb\n')
    // Without --raw a string is quoted, as the REPL shows it, so "undefined" never reads as undefined.
    const quoted = await evalmesh(n.dir, ['eval', 'typeof require', '--host', n.host])
    assert.equal(quoted.stdout, "'undefined'\n")
  } finally {
    await stopNode(n)
  }
})

test('evalmesh eval of an Error value prints "Error: e" and exits 0; --json keeps the {$error} map', async () => {
  const n = await node()
  try {
    const r = await evalmesh(n.dir, ['eval', 'new Error("e")', '--host', n.host])
    assert.equal(r.code, 0, r.stderr)
    assert.equal(r.stdout, 'Error: e\n')
    const typed = await evalmesh(n.dir, ['eval', `new TypeError(${JSON.stringify(EVIL)})`, '--host', n.host])
    assert.equal(typed.code, 0, typed.stderr)
    assertEscaped(typed.stdout, 'the Error value')
    assert.match(typed.stdout, /^TypeError: \\x1b\[2J\\n fake line\n$/)
    const nested = await evalmesh(n.dir, ['eval', '({ ok: false, why: new RangeError("r") })', '--host', n.host])
    assert.match(nested.stdout, /why: \[RangeError: r\]/)
    const json = await evalmesh(n.dir, ['eval', 'new Error("e")', '--host', n.host, '--json'])
    assert.equal(json.code, 0, json.stderr)
    assert.deepEqual(JSON.parse(json.stdout).value, { $error: { name: 'Error', message: 'e' } })
  } finally {
    await stopNode(n)
  }
})

test('evalmesh ci run and ci status show step comments and Megatest values a form chose as visible escapes', async () => {
  const areaDir = tempDir('em-cli-area-')
  const n = await startNode(['--area', `ci=${areaDir}`, '--keys', 'RELEASE'], { name: 'cinode' })
  try {
    const job = join(tempDir(), 'job.json')
    writeFileSync(job, JSON.stringify({
      area: 'ci', target: { RELEASE: 'v1' }, runname: 'hostile',
      tests: [{ name: 'evil', steps: [{ name: 's1', form: `({ status: 'FAIL', comment: ${JSON.stringify(EVIL)} })` }] }]
    }))
    const run = await evalmesh(n.stateDir, ['ci', 'run', job, '--host', n.host])
    assert.equal(run.code, 1, run.stdout + run.stderr)
    assertEscaped(run.stdout, 'ci run')
    assert.match(run.stdout, /COMPLETED +evil: FAIL \(step s1 failed: \\x1b\[2J\\n fake line\)/)
    const status = await evalmesh(n.stateDir, ['ci', 'status', 'hostile', '--host', n.host])
    assert.equal(status.code, 0, status.stderr)
    assertEscaped(status.stdout, 'ci status')
  } finally {
    await n.stop()
    rmSync(areaDir, { recursive: true, force: true })
  }
})

/** A form that keeps its session busy for `ms` milliseconds. */
const busy = (ms: number): string => `{ const until = Date.now() + ${ms}; while (Date.now() < until) {} ; 'slept ${ms}' }`

test('evalmesh eval says once on stderr what it waits for after a second: held by the run ahead in its session, or running', async () => {
  const n = await node()
  try {
    const first = await evalmesh(n.dir, ['eval', busy(4000), '--host', n.host, '--session', 's1', '--no-wait'])
    assert.equal(first.code, 0, first.stderr)
    const held = first.stdout.trim()
    const second = await evalmesh(n.dir, ['eval', '1 + 2', '--host', n.host, '--session', 's1'])
    assert.equal(second.code, 0, second.stderr)
    assert.equal(second.stdout, '3\n')
    const notices = second.stderr.split('\n').filter(l => l.includes('waiting'))
    assert.equal(notices.length, 1, second.stderr)
    assert.ok(notices[0]!.includes(`session s1, held by ${held} (running `), second.stderr)
    // It ran after the first, in the same session.
    const [a] = n.server.status('done', held)
    const [b] = n.server.status('all').filter(r => r.summary === '1 + 2')
    assert.ok(a !== undefined && b !== undefined)
    assert.ok((b.startedAt ?? 0) >= (a.endedAt ?? Infinity), 'the second started once the first was done')
    assert.equal(b.session, 's1')

    // Running for more than a second: said once, too.
    const slow = await evalmesh(n.dir, ['eval', busy(2500), '--host', n.host])
    assert.equal(slow.code, 0, slow.stderr)
    assert.equal(slow.stdout, "'slept 2500'\n")
    assert.equal(slow.stderr.split('\n').filter(l => /txn \S+ running for \d+\.\d s\.\.\./.test(l)).length, 1, slow.stderr)

    // And `result --wait` on a transaction still running.
    const later = (await evalmesh(n.dir, ['eval', busy(2500), '--host', n.host, '--no-wait'])).stdout.trim()
    const fetched = await evalmesh(n.dir, ['result', later, '--host', n.host, '--wait'])
    assert.equal(fetched.stdout, "'slept 2500'\n")
    assert.equal(fetched.stderr.split('\n').filter(l => l.includes(`txn ${later} running for `)).length, 1, fetched.stderr)

    // A quick answer says nothing.
    const quick = await evalmesh(n.dir, ['eval', '2 * 21', '--host', n.host])
    assert.equal(quick.stderr, '')
  } finally {
    await stopNode(n)
  }
})

test('EVALSERVER\'s example from the CLI: a lengthy form with no wait, then evalserver.status() and a quick form are answered while it runs', async () => {
  const n = await node()
  try {
    const loop = await evalmesh(n.dir, ['eval', 'let i = 0; while (true) i++', '--host', n.host, '--no-wait', '--timeout', '60000'])
    assert.equal(loop.code, 0, loop.stderr)
    const txn = loop.stdout.trim()
    await waitFor('the loop running', () => n.server.status('running', txn).length === 1)

    const status = await evalmesh(n.dir, ['eval', 'evalserver.status()', '--host', n.host, '--json'])
    assert.equal(status.code, 0, status.stderr)
    const reply = JSON.parse(status.stdout) as { value: Array<{ txn: string, state: string }>, session?: string }
    assert.equal(reply.value.find(r => r.txn === txn)?.state, 'running', status.stdout)
    assert.equal(reply.session, 'transient', 'the default session is busy: it ran in a transient context')

    const quick = await evalmesh(n.dir, ['eval', '6 * 7', '--host', n.host])
    assert.equal(quick.code, 0, quick.stderr)
    assert.equal(quick.stdout, '42\n')

    const table = await evalmesh(n.dir, ['status', '--host', n.host, '--which', 'running'])
    assert.match(table.stdout, new RegExp(`RUNNING +${txn.replace(/[.]/g, '\\.')} .*while \\(true\\) i\\+\\+`), table.stdout)
    // All of that while the loop ran on.
    assert.equal(n.server.status('running', txn).length, 1, 'the loop is still running')
    const aborted = await evalmesh(n.dir, ['abort', txn, '--host', n.host])
    assert.equal(aborted.code, 0, aborted.stderr)
  } finally {
    await stopNode(n)
  }
})

// ---- a real terminal: tmux ---------------------------------------------------

const hasTmux = spawnSync('tmux', ['-V']).status === 0
const tmuxSocket = `evalmesh-test-${process.pid}`
const tmux = (...args: string[]): string => {
  const r = spawnSync('tmux', ['-L', tmuxSocket, ...args], { encoding: 'utf8' })
  return r.stdout
}
const capture = (session: string): string => tmux('capture-pane', '-p', '-t', session)

function tmuxRun (session: string, dir: string, args: string[], nodeFlags: string[] = []): void {
  const argv = [process.execPath, ...nodeFlags, ...cli(), ...args].map(a => `'${a.replace(/'/g, "'\\''")}'`).join(' ')
  // The trailing echo and sleep keep the pane open after the command exits, so the test can read it.
  const cmd = `NCURSES_NO_UTF8_ACS=1 TERM=xterm-256color EVALMESH_STATE_DIR='${dir}' ${argv}; echo "EXITED $?"; sleep 30`
  spawnSync('tmux', ['-L', tmuxSocket, 'new-session', '-d', '-s', session, '-x', '120', '-y', '34', cmd])
}

test('evalmesh monitor on a real terminal (tmux): rows, d + y aborts, t traces, q restores the shell', { skip: hasTmux ? false : 'tmux is not installed (scripts/system-deps.sh installs it)' }, async () => {
  const n = await node('tmuxnode')
  try {
    const txn = await n.client.remoteApply('hold', [], n.host, { wait: false }) as string
    // No --host: the window finds the node started from the state dir, as every command does.
    tmuxRun('mon', n.dir, ['monitor', '--refresh', '200'])
    await waitFor('the running row', () => capture('mon').includes('hold()') && capture('mon').includes('running (1)'), 30_000, () => capture('mon'))
    assert.match(capture('mon'), new RegExp(`node tmuxnode \\(\\w+\\) at ${n.host.replace(/\./g, '\\.')}`))
    tmux('send-keys', '-t', 'mon', 'd')
    await waitFor('the confirmation', () => capture('mon').includes(`Abort running ${txn}`), 30_000, () => capture('mon'))
    tmux('send-keys', '-t', 'mon', 'y')
    const record = await waitFor('the abort on the node', () => n.server.status('done', txn)[0], 30_000, () => capture('mon'))
    assert.equal(record.howStopped, 'aborted')
    await waitFor('the done row', () => capture('mon').includes('done (1)') && capture('mon').includes('aborted from the'), 30_000, () => capture('mon'))
    tmux('send-keys', '-t', 'mon', 't')
    await waitFor('trace on', () => n.server.trace.enabled, 30_000, () => capture('mon'))
    tmux('resize-window', '-t', 'mon', '-x', '90', '-y', '26')
    await waitFor('the window to fit 90 columns', () => {
      const lines = capture('mon').split('\n')
      return lines.some(l => /^┌─ running \(0\) ─+┐┌─ policy ─+┐$/.test(l) && l.length === 90)
    }, 30_000, () => capture('mon'))
    tmux('send-keys', '-t', 'mon', 'q')
    const screen = await waitFor('the shell back', () => /EXITED 0/.test(capture('mon')) && capture('mon'), 60_000, () => capture('mon'))
    // The alternate screen is gone: the pane shows the normal screen, not the window.
    assert.doesNotMatch(screen, /running \(|┌─/)
  } finally {
    tmux('kill-session', '-t', 'mon')
    await stopNode(n)
  }
})

/** The pid of the program a tmux pane runs under its `sh -c` (the pane's own pid). */
function panePid (session: string): number | undefined {
  const shell = Number(tmux('display', '-p', '-t', session, '#{pane_pid}').trim())
  try {
    const kids = readFileSync(`/proc/${shell}/task/${shell}/children`, 'utf8').trim().split(/\s+/).filter(Boolean).map(Number)
    return kids[0]
  } catch { return undefined }
}

test('evalmesh monitor restores the terminal when stopped by SIGTERM and when it crashes', { skip: hasTmux ? false : 'tmux is not installed (scripts/system-deps.sh installs it)' }, async () => {
  const n = await node('exitpaths')
  try {
    // SIGTERM, as a session manager or `kill PID` sends it.
    tmuxRun('term', n.dir, ['monitor', '--host', n.host, '--refresh', '200'])
    await waitFor('the window', () => capture('term').includes('running (0)'), 30_000, () => capture('term'))
    assert.equal(tmux('display', '-p', '-t', 'term', '#{alternate_on}').trim(), '1', 'the window is on the alternate screen')
    const pid = await waitFor('the monitor pid', () => panePid('term'), 10_000)
    process.kill(pid, 'SIGTERM')
    const screen = await waitFor('the shell back', () => /EXITED \d+/.test(capture('term')) && capture('term'), 30_000, () => capture('term'))
    assert.doesNotMatch(screen, /running \(|┌─/)
    assert.equal(tmux('display', '-p', '-t', 'term', '#{alternate_on}').trim(), '0', 'left the alternate screen')
    assert.equal(tmux('display', '-p', '-t', 'term', '#{cursor_flag}').trim(), '1', 'the cursor is visible again')

    // A crash: an exception nobody catches, thrown in the monitor's process 2 s in.
    const boom = 'data:text/javascript,setTimeout(() => { throw new Error("injected crash") }, 2000)'
    tmuxRun('crash', n.dir, ['monitor', '--host', n.host, '--refresh', '200'], ['--import', boom])
    await waitFor('the window', () => capture('crash').includes('running (0)'), 30_000, () => capture('crash'))
    const after = await waitFor('the crash', () => /EXITED 1/.test(capture('crash')) && capture('crash'), 30_000, () => capture('crash'))
    assert.match(after, /injected crash/, 'the error is printed on the restored terminal')
    assert.doesNotMatch(after, /running \(|┌─/)
    assert.equal(tmux('display', '-p', '-t', 'crash', '#{alternate_on}').trim(), '0', 'left the alternate screen')
    assert.equal(tmux('display', '-p', '-t', 'crash', '#{cursor_flag}').trim(), '1', 'the cursor is visible again')
  } finally {
    tmux('kill-session', '-t', 'term')
    tmux('kill-session', '-t', 'crash')
    await stopNode(n)
  }
})

test('evalmesh start on a real terminal (tmux): the window says how to reach its node; q asks while work runs, then stops the node', { skip: hasTmux ? false : 'tmux is not installed (scripts/system-deps.sh installs it)' }, async () => {
  const dir = mkdtempSync(join(tmpdir(), 'em-start-'))
  const client = new Client({ stateDir: dir })
  try {
    tmuxRun('start', dir, ['start', '--port', '0', '--name', 'startnode', '--state-dir', dir])
    await waitFor('the window on the started node', () => /node startnode \(\w+\) at 127\.0\.0\.1:\d+ +connected/.test(capture('start')), 60_000, () => capture('start'))
    // The banner `serve` prints is inside the window, where it can be seen.
    const banner = /try: evalmesh eval '1 \+ 1' --host (127\.0\.0\.1:\d+)/.exec(capture('start'))
    assert.ok(banner !== null, capture('start'))
    const where = banner[1]!
    assert.match(capture('start'), /q stop node/)
    // With work running, q asks; n keeps the node running.
    const txn = await client.remoteEval(busyFor(60_000), where, { wait: false }) as string
    await waitFor('the running row', () => capture('start').includes('running (1)'), 30_000, () => capture('start'))
    tmux('send-keys', '-t', 'start', 'q')
    await waitFor('the question', () => /Quitting stops node "startnode", which has 1 running and 0 queued/.test(capture('start')), 30_000, () => capture('start'))
    tmux('send-keys', '-t', 'start', 'n')
    await waitFor('the answer kept', () => capture('start').includes('the node keeps running'), 30_000, () => capture('start'))
    assert.equal((await client.status(where, { id: txn }))[0]?.state, 'running')
    // q then y stops it.
    tmux('send-keys', '-t', 'start', 'q')
    await waitFor('the question again', () => capture('start').includes('Quitting stops node "startnode"'), 30_000, () => capture('start'))
    tmux('send-keys', '-t', 'start', 'y')
    const screen = await waitFor('the node to stop', () => /EXITED 0/.test(capture('start')) && capture('start'), 30_000, () => capture('start'))
    assert.match(screen, /evalmesh node "startnode" stopped/)
  } finally {
    client.close()
    tmux('kill-session', '-t', 'start')
    rmSync(dir, { recursive: true, force: true })
  }
})

test('evalmesh monitor --host with a name that names no node fails before the window opens (tmux)', { skip: hasTmux ? false : 'tmux is not installed (scripts/system-deps.sh installs it)' }, async () => {
  const dir = mkdtempSync(join(tmpdir(), 'em-nohost-'))
  try {
    tmuxRun('nohost', dir, ['monitor', '--host', 'no-such-node'])
    const screen = await waitFor('the error and the exit', () => /EXITED 1/.test(capture('nohost')) && capture('nohost'), 30_000, () => capture('nohost'))
    assert.match(screen, /UNKNOWN_HOST: "no-such-node" is neither host:port nor a known peer name/)
  } finally {
    tmux('kill-session', '-t', 'nohost')
    rmSync(dir, { recursive: true, force: true })
  }
})

test('tmux server cleanup', { skip: !hasTmux }, () => {
  tmux('kill-server')
})

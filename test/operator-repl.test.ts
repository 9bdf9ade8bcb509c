/**
 * The REPL driven through its input stream (a terminal-mode PassThrough, so Ctrl-C is
 * a real keystroke) against a real node on loopback.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { PassThrough, Writable } from 'node:stream'
import { mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Client } from '@evalmesh/client'
import { startServer, type EvalServer } from '@evalmesh/server'
import { startRepl, type Repl } from '@evalmesh/repl'
import { runCli } from './support/node.js'

interface Setup { dir: string, server: EvalServer, host: string, client: Client, repl: Repl, input: PassThrough, out: () => string, raw: () => string }

async function setup (): Promise<Setup> {
  const dir = mkdtempSync(join(tmpdir(), 'em-repl-'))
  const server = await startServer({ stateDir: dir, name: 'replnode', port: 0 })
  const host = `127.0.0.1:${server.address.port}`
  const client = new Client({ stateDir: dir })
  const input = new PassThrough()
  let written = ''
  const output = new Writable({ write (chunk: Buffer, _e, cb) { written += chunk.toString('utf8'); cb() } })
  ;(output as unknown as { columns: number }).columns = 200
  const repl = await startRepl({
    client, defaultHost: host, input, output, terminal: true,
    peers: () => ['replnode-a', 'replnode-b', 'other'],
    historyFile: join(dir, 'repl_history')
  })
  const out = (): string => written.replace(/\x1b\[[0-9;?]*[A-Za-z]/g, '').replace(/\r/g, '')
  return { dir, server, host, client, repl, input, out, raw: () => written }
}

async function teardown (s: Setup): Promise<void> {
  s.repl.server.close()
  s.client.close()
  await s.server.stop()
  rmSync(s.dir, { recursive: true, force: true })
}

async function waitFor<T> (what: string, probe: () => T | undefined | false, s?: Setup, ms = 20_000): Promise<T> {
  const until = Date.now() + ms
  while (Date.now() < until) {
    const v = probe()
    if (v !== undefined && v !== false) return v
    await new Promise(resolve => setTimeout(resolve, 40))
  }
  throw new Error(`timed out waiting for ${what}${s !== undefined ? `\n--- output ---\n${s.out()}` : ''}`)
}

async function type (s: Setup, line: string): Promise<void> {
  s.input.write(line + '\r')
  await new Promise(resolve => setTimeout(resolve, 30))
}

test('.host NAME sends plain input to the node; .host alone returns to local evaluation', async () => {
  const s = await setup()
  try {
    await type(s, `.host ${s.host}`)
    await waitFor('the switch', () => s.out().includes('plain input now evaluates on replnode'), s)
    await type(s, 'let q = 20; q + 22')
    await waitFor('42', () => s.out().includes('\n42\n'), s)
    // It ran on the node, in this client's persistent context there.
    const done = s.server.status('done')
    assert.ok(done.some(r => r.summary === 'let q = 20; q + 22' && r.howStopped === 'completed'))
    await type(s, 'q * 2')
    await waitFor('40', () => s.out().includes('\n40\n'), s)
    // Multi-line input is gathered locally and sent as one form.
    await type(s, 'function twice (x) {')
    await type(s, '  return 2 * x }')
    await type(s, 'twice(21)')
    await waitFor('twice(21) = 42 twice', () => s.out().split('\n42\n').length >= 3, s)

    await type(s, '.host')
    await waitFor('back to local', () => s.out().includes('plain input now evaluates locally'), s)
    const before = s.server.status('done').length
    await type(s, 'typeof q + "/" + typeof remoteEval')
    await waitFor('local evaluation', () => s.out().includes("'undefined/function'"), s)
    assert.equal(s.server.status('done').length, before, 'local input did not reach the node')

    // The helpers are awaitable at top level and default to the node given.
    await type(s, 'await remoteEval("6 * 7")')
    await waitFor('helper result', () => s.out().split('\n42\n').length >= 4, s)
    await type(s, '(await status()).length > 0')
    await waitFor('status()', () => s.out().includes('\ntrue\n'), s)
    await type(s, '.hosts')
    await waitFor('.hosts', () => s.out().includes('replnode-a\nreplnode-b\nother'), s)
  } finally {
    await teardown(s)
  }
})

test('a remote error prints as the remote error, with its remote stack', async () => {
  const s = await setup()
  try {
    await type(s, `.host ${s.host}`)
    await waitFor('the switch', () => s.out().includes('plain input now evaluates on'), s)
    await type(s, 'function inner () { return null.boom }')
    await type(s, 'inner()')
    const text = await waitFor('the error', () => s.out().includes('--- remote stack ---') && s.out(), s)
    assert.match(text, /Remote error on replnode \(txn [^)]+\): TypeError: Cannot read properties of null \(reading 'boom'\)/)
    const stack = text.slice(text.indexOf('--- remote stack ---'))
    assert.match(stack, /at inner/)
    assert.doesNotMatch(stack, /TypeError/, 'the stack shows frames, not the message a second time')
    // From a helper too.
    await type(s, '.host')
    await type(s, 'await remoteEval("notDefinedHere + 1")')
    await waitFor('the helper error', () => /Remote error on replnode[^\n]*ReferenceError: notDefinedHere is not defined/.test(s.out()), s)
    // The REPL is still alive.
    await type(s, '40 + 2')
    await waitFor('still alive', () => s.out().includes('\n42\n'), s)
  } finally {
    await teardown(s)
  }
})

test('Ctrl-C during a remote wait aborts the transaction on the node and keeps the REPL', async () => {
  const s = await setup()
  try {
    await type(s, `.host ${s.host}`)
    await waitFor('the switch', () => s.out().includes('plain input now evaluates on'), s)
    await type(s, 'while (true) {}')
    const running = await waitFor('the loop running on the node', () => s.server.status('running')[0], s)
    s.input.write('\x03')
    const record = await waitFor('the abort', () => s.server.status('done', running.txn)[0], s)
    assert.equal(record.howStopped, 'aborted')
    assert.equal(record.reason, 'interrupted at the REPL (Ctrl-C)')
    await waitFor('the abort reported', () => s.out().includes(`(aborting ${running.txn}`), s)
    await type(s, '1 + 1')
    await waitFor('the REPL kept going on the node', () => s.out().includes('\n2\n'), s)
    assert.equal(s.server.status('done').at(0)?.summary, '1 + 1')

    // The same for a helper awaited at top level, in local mode.
    await type(s, '.host')
    await type(s, 'await remoteEval("for (;;) {}")')
    const second = await waitFor('the second loop', () => s.server.status('running')[0], s)
    s.input.write('\x03')
    const r2 = await waitFor('the second abort', () => s.server.status('done', second.txn)[0], s)
    assert.equal(r2.howStopped, 'aborted')
    await type(s, '"still here"')
    await waitFor('still here', () => s.out().includes("'still here'"), s)
  } finally {
    await teardown(s)
  }
})

test('tab completion offers peer names after .host; history is kept in the state dir', async () => {
  const s = await setup()
  try {
    const complete = (line: string): Promise<[string[], string]> => new Promise((resolve, reject) =>
      (s.repl.server as unknown as { completer: (l: string, cb: (e: Error | null, r?: [string[], string]) => void) => void })
        .completer(line, (err, r) => err !== null ? reject(err) : resolve(r!)))
    assert.deepEqual(await complete('.host repl'), [['replnode-a', 'replnode-b'], 'repl'])
    assert.deepEqual(await complete('.host o'), [['other'], 'o'])
    // JavaScript completion still works elsewhere.
    const [js] = await complete('remoteEv')
    assert.ok(js.includes('remoteEval'))

    await type(s, '"remember me"')
    await waitFor('evaluated', () => s.out().includes("'remember me'"), s)
    const closed = s.repl.closed
    await type(s, '.exit')
    await closed
    await waitFor('history written', () => { try { return readFileSync(join(s.dir, 'repl_history'), 'utf8').includes('"remember me"') } catch { return false } })
  } finally {
    await teardown(s)
  }
})

test('values, output and errors from a node are shown escaped; an Error value reads "Error: e"', async () => {
  const s = await setup()
  try {
    await type(s, `.host ${s.host}`)
    await waitFor('the switch', () => s.out().includes('plain input now evaluates on'), s)
    await type(s, 'new Error("e")')
    await waitFor('the Error value', () => s.out().includes('\nError: e\n'), s)
    await type(s, '[new TypeError("t"), 1]')
    await waitFor('a nested Error value', () => s.out().includes('[ [TypeError: t], 1 ]'), s)
    // Hostile text: a clear-screen, a forged line and a bidi override, in a value, console output and an error.
    await type(s, 'console.log("out\\x1b[2J\\n fake out"); "val\\x1b[2J\\u202e"')
    await waitFor('the value', () => s.raw().includes("'val\\x1B[2J\\u202e'"), s)
    assert.ok(s.raw().includes('out\\x1b[2J\n fake out'), 'console output keeps its lines, escapes the rest')
    await type(s, 'throw new Error("boom\\x1b[2J\\n fake line")')
    await waitFor('the error', () => s.raw().includes('Error: boom\\x1b[2J\\n fake line'), s)
    assert.ok(!s.raw().includes('\x1b[2J'), 'no raw clear-screen reached the terminal')
    assert.ok(!s.raw().includes('\u202e'), 'no raw bidi override reached the terminal')
    // From a helper: the value is still the {$error} map for code.
    await type(s, '.host')
    await type(s, '(await remoteEval("new RangeError(\'r\')")).$error.message')
    await waitFor('the map', () => s.out().includes("\n'r'\n"), s)
    await type(s, 'await remoteEval("new RangeError(\'r2\')")')
    await waitFor('the helper value', () => s.out().includes('\nRangeError: r2\n'), s)
  } finally {
    await teardown(s)
  }
})

test('a remote wait longer than a second says once what it waits for', async () => {
  const s = await setup()
  try {
    const first = await s.client.remoteEval(`{ const until = Date.now() + 3000; while (Date.now() < until) {} ; 1 }`, s.host, { wait: false, session: 's1' }) as string
    await type(s, 'await remoteEval("1 + 2", undefined, { session: "s1" })')
    await waitFor('the result', () => s.out().includes('\n3\n'), s)
    const notices = s.out().split('\n').filter(l => l.includes('waiting'))
    assert.equal(notices.length, 1, s.out())
    assert.ok(notices[0]!.includes(`session s1, held by ${first} (running `), s.out())
  } finally {
    await teardown(s)
  }
})

test('repl --host: input already waiting when the REPL starts goes to the node, never runs here; an unreachable node is an error', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'em-repl-'))
  const server = await startServer({ stateDir: dir, name: 'replnode', port: 0 })
  const host = `127.0.0.1:${server.address.port}`
  try {
    // A script piped in: `process` exists in this process, not in the node's sandbox.
    const piped = await runCli(['repl', '--host', host], { stateDir: dir, input: 'typeof process\nx = 20\nx + 22\n' })
    assert.equal(piped.code, 0, piped.stderr)
    assert.match(piped.stdout, /'undefined'/)
    assert.doesNotMatch(piped.stdout, /'object'/)
    assert.match(piped.stdout, /42/)

    // The same through the library, the lines written before startRepl is called.
    const client = new Client({ stateDir: dir })
    const input = new PassThrough()
    let written = ''
    const output = new Writable({ write (chunk: Buffer, _e, cb) { written += chunk.toString('utf8'); cb() } })
    input.write('typeof process\n')
    const repl = await startRepl({ client, target: host, input, output, terminal: false })
    await waitFor('the answer from the node', () => /'undefined'|'object'/.exec(written)?.[0])
    assert.match(written, /'undefined'/)
    repl.server.close()

    // A node that does not answer: the REPL does not start, so nothing is evaluated here.
    const refused = new PassThrough()
    refused.write('typeof process\n')
    await assert.rejects(startRepl({ client, target: '127.0.0.1:1', input: refused, output, terminal: false }), { code: 'CONNECT_FAILED' })
    client.close()
    const cli = await runCli(['repl', '--host', '127.0.0.1:1'], { stateDir: dir, input: 'typeof process\n' })
    assert.equal(cli.code, 1)
    assert.match(cli.stderr, /cannot connect to 127\.0\.0\.1:1/)
    assert.doesNotMatch(cli.stdout, /'object'/)
  } finally {
    await server.stop()
    rmSync(dir, { recursive: true, force: true })
  }
})

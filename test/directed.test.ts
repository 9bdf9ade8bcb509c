/**
 * Directed remote evaluation end to end: real `evalmesh serve` processes, real
 * loopback sockets, real isolates.
 */
import { after, before, describe, test } from 'node:test'
import assert from 'node:assert/strict'
import { readFileSync } from 'node:fs'
import { connect } from 'node:net'
import { join } from 'node:path'
import { Client, RemoteEvalError } from '@evalmesh/client'
import { ClientConnection } from '@evalmesh/transport'
import { busyFor, eventually, localClient, runCli, startNode, tempDir, writeFile, type TestNode } from './support/node.js'

const is = (code: string, pattern?: RegExp) => (err: unknown): boolean => {
  assert.ok(err instanceof RemoteEvalError || (err as { code?: string }).code !== undefined, `not an evalmesh error: ${String(err)}`)
  assert.equal((err as RemoteEvalError).code, code, (err as Error).message)
  if (pattern !== undefined) assert.match((err as Error).message, pattern)
  return true
}

describe('one node, its own client', () => {
  let node: TestNode
  let client: Client
  before(async () => {
    const dir = tempDir()
    const fns = writeFile(dir, 'fns.mjs', `
      export function greet (who) { return 'hello ' + who + ' from ' + this.peer.name }
      export async function slow (ms) { await new Promise(r => setTimeout(r, ms)); return ms }
      export function fail () { throw new RangeError('operator function failed') }
    `)
    node = await startNode(['--functions', fns, '--timeout', '5000', '--concurrency', '4'])
    client = localClient(node)
  })
  after(async () => { client.close(); await node.stop() })

  test('evaluates a form and keeps a REPL-like context per client', async () => {
    assert.equal(await client.remoteEval('1 + 1', node.host), 2)
    await client.remoteEval('x = 5', node.host)
    assert.equal(await client.remoteEval('x + 1', node.host), 6)
    await client.remoteEval('let y = 10; const z = 1', node.host)
    assert.equal(await client.remoteEval('y + z', node.host), 11)
    // Another session is another context.
    await assert.rejects(client.remoteEval('x', node.host, { session: 'other' }), is('EVAL_ERROR', /x is not defined/))
    await client.reset(node.host)
    await assert.rejects(client.remoteEval('x', node.host), is('EVAL_ERROR', /x is not defined/))
  })

  test('a pure form (literals and operators) in a session holding nothing is answered by the node\'s own isolate, anything else by its process', async () => {
    const inline = async (): Promise<number> => (await client.describe(node.host)).sandbox?.inline ?? -1
    const before = await inline()
    assert.ok(before >= 0, 'describe counts the node\'s own runs')
    const opts = { session: 'pure-check' }
    assert.deepEqual(await client.remoteEval('[2 ** 10, 7 % 3, 1 / 0 > 0, null]', node.host, opts), [1024, 1, true, null])
    assert.equal(await inline(), before + 1)
    assert.equal(await client.remoteEval('k = 6 * 7', node.host, opts), 42)
    // The session now holds a context: even a pure form runs there, in order.
    assert.equal(await client.remoteEval('1 + 1', node.host, opts), 2)
    assert.equal(await client.remoteEval('k', node.host, opts), 42)
    assert.equal(await inline(), before + 1)
  })

  test('results are structured-cloneable values; console output comes back', async () => {
    const out = await client.evalDetailed(`console.log('hi', 42); ({ d: new Date(0), m: new Map([[1, 'a']]), s: new Set([2]), b: 10n ** 20n, u: undefined, t: new Uint16Array([7]) })`, node.host)
    assert.ok('value' in out)
    assert.deepEqual(out.value, { d: new Date(0), m: new Map([[1, 'a']]), s: new Set([2]), b: 10n ** 20n, u: undefined, t: new Uint16Array([7]) })
    assert.equal(out.output, 'hi 42\n')
    await assert.rejects(client.remoteEval('({ f () {} })', node.host), is('NOT_CLONEABLE'))
  })

  test('a remote error is raised locally with the remote name, message, code and stack', async () => {
    await assert.rejects(client.remoteEval('function inner () { throw new TypeError("bad thing") }\ninner()', node.host), (err: RemoteEvalError) => {
      assert.equal(err.code, 'EVAL_ERROR')
      assert.equal(err.remoteName, 'TypeError')
      assert.equal(err.message, 'bad thing')
      assert.match(err.remoteStack ?? '', /inner/)
      assert.doesNotMatch(err.remoteStack ?? '', /node_modules|\/work\//, 'no host paths leak')
      return true
    })
  })

  test('remoteApply calls operator functions and built-ins; unknown names are a clear error', async () => {
    assert.equal(await client.remoteApply('greet', ['ann'], node.host), 'hello ann from testnode')
    assert.equal(await client.remoteApply('slow', [20], node.host), 20)
    await assert.rejects(client.remoteApply('fail', [], node.host), (err: RemoteEvalError) => err.remoteName === 'RangeError' && /operator function failed/.test(err.message))
    await assert.rejects(client.remoteApply('launch', [], node.host), is('UNKNOWN_FUNCTION', /no function "launch".*greet/))
    const records = await client.remoteApply('evalserver.status', ['done'], node.host) as Array<{ state: string }>
    assert.ok(records.length > 0 && records.every(r => r.state === 'done'))
    // Granted functions are callable from inside forms too.
    assert.equal(await client.remoteEval('await fns.greet("bo")', node.host), 'hello bo from testnode')
    assert.ok(Array.isArray(await client.remoteEval('await evalserver.status("done")', node.host)))
  })

  test('wait: false returns the txn id once acknowledged; the result is fetched later', async () => {
    const txn = await client.remoteEval(`${busyFor(100)}; 'later'`, node.host, { wait: false })
    assert.equal(typeof txn, 'string')
    assert.match(txn as string, /^[0-9a-f]{16}\.[0-9a-f]+:\d+$/)
    const outcome = await client.fetchResult(txn as string, node.host, { wait: true })
    assert.equal(outcome.value, 'later')
    assert.ok(outcome.seconds >= 0)
  })

  test('abort stops a running evaluation and drops a queued one, recording who and why', async () => {
    const other = localClient(node)
    const running = await other.remoteEval('while (true) {}', node.host, { wait: false }) as string
    await eventually(async () => (await client.status(node.host, { which: 'running', id: running })).length === 1, 'the loop to run')
    const waiting = assert.rejects(other.fetchResult(running, node.host, { wait: true }), is('ABORTED', /operator says stop/))
    const r = await client.remoteAbort(running, node.host, { reason: 'operator says stop' })
    assert.equal(r.aborted, true)
    await waiting
    const [rec] = await client.status(node.host, { which: 'done', id: running })
    assert.equal(rec?.howStopped, 'aborted')
    assert.equal(rec?.reason, 'operator says stop')
    // Without a reason the record says who did it.
    const again = await other.remoteEval('while (true) {}', node.host, { wait: false }) as string
    await eventually(async () => (await client.status(node.host, { which: 'running', id: again })).length === 1, 'the loop to run')
    await client.remoteAbort(again, node.host)
    const [rec2] = await client.status(node.host, { which: 'done', id: again })
    assert.equal(rec2?.reason, 'aborted remotely by testnode')
    // The node keeps serving, and the aborted session starts fresh.
    assert.equal(await other.remoteEval('1 + 2', node.host), 3)
    other.close()
  })

  test('abort with mustExist is an error for an unknown transaction; a bare number finds the client\'s own', async () => {
    await assert.rejects(client.remoteAbort('0123456789abcdef.aa:99', node.host, { mustExist: true }), is('NO_SUCH_TXN'))
    const r = await client.remoteAbort('0123456789abcdef.aa:99', node.host)
    assert.equal(r.aborted, false)
    const txn = await client.remoteEval('while (true) {}', node.host, { wait: false }) as string
    const seq = Number(txn.split(':')[1])
    await eventually(async () => (await client.status(node.host, { which: 'running', id: txn })).length === 1, 'the loop to run')
    assert.equal((await client.remoteAbort(seq, node.host)).aborted, true)
  })

  test('status lists input, running and done, and filters by id', async () => {
    const all = await client.status(node.host)
    assert.ok(all.some(r => r.state === 'done'))
    const one = all.find(r => r.state === 'done')!
    assert.deepEqual((await client.status(node.host, { id: one.txn })).map(r => r.txn), [one.txn])
    for (const r of all) assert.ok(['input', 'running', 'done'].includes(r.state))
  })
})

describe('limits and hostile forms', () => {
  let node: TestNode
  let client: Client
  before(async () => {
    node = await startNode(['--timeout', '1500', '--memory', '32'])
    client = localClient(node)
  })
  after(async () => { client.close(); await node.stop() })

  test('each limit ends in a clear error naming it, and the node keeps serving', async () => {
    await assert.rejects(client.remoteEval('while (true) {}', node.host), is('TIME_LIMIT', /1500 ms/))
    await assert.rejects(client.remoteEval('for (;;) {}', node.host, { limits: { timeoutMs: 200 } }), is('TIME_LIMIT', /200 ms/))
    await assert.rejects(client.remoteEval('new Promise(() => {})', node.host, { limits: { timeoutMs: 300 } }), is('TIME_LIMIT'))
    await assert.rejects(client.remoteEval('const a = []; while (true) a.push(new Array(1e5).fill(Math.random()))', node.host), is('MEMORY_LIMIT'))
    await assert.rejects(client.remoteEval('function f () { return f() + 1 } f()', node.host), (err: RemoteEvalError) => err.code === 'EVAL_ERROR' && err.remoteName === 'RangeError')
    await assert.rejects(client.remoteEval('"x".repeat(5000)', node.host, { limits: { resultBytes: 1000 } }), is('RESULT_LIMIT'))
    const noisy = await client.evalDetailed('for (let i = 0; i < 10000; i++) console.log("line", i); "done"', node.host, { limits: { outputBytes: 2000 } })
    assert.ok('value' in noisy && noisy.outputTruncated && noisy.output.length <= 2100 && noisy.value === 'done')
    // Asking for more than the node allows is clamped to the node's ceiling.
    await assert.rejects(client.remoteEval('while (true) {}', node.host, { limits: { timeoutMs: 10_000_000 } }), is('TIME_LIMIT', /1500 ms/))
    assert.equal(await client.remoteEval('1 + 1', node.host), 2)
  })

  test('escape attempts find nothing of the host', async () => {
    const probes = [
      'this.constructor.constructor("return typeof process")()',
      '(() => {}).constructor("return typeof require")()',
      'typeof globalThis.process + typeof globalThis.require + typeof globalThis.fetch',
      'Object.getPrototypeOf(async function () {}).constructor("return typeof process")().then(x => x)',
      '(function () { try { null.f() } catch (e) { return e.constructor.constructor("return typeof process")() } })()'
    ]
    for (const p of probes) {
      const v = await client.remoteEval(p, node.host)
      assert.doesNotMatch(String(v), /object|function/, `probe found something: ${p} -> ${String(v)}`)
    }
    await assert.rejects(client.remoteEval('import("node:fs")', node.host), (err: RemoteEvalError) => err.code === 'EVAL_ERROR')
    assert.equal(await client.remoteEval('1 + 1', node.host), 2)
  })
})

describe('transactions, trust and bad input', () => {
  let node: TestNode
  let client: Client
  before(async () => {
    node = await startNode(['--concurrency', '1', '--queue', '1', '--purge-seconds', '2'])
    client = localClient(node, { busyRetries: 0 })
  })
  after(async () => { client.close(); await node.stop() })

  test('beyond the concurrency cap and queue, the node refuses with BUSY and a retry-after hint', async () => {
    const a = await client.remoteEval(busyFor(1500), node.host, { wait: false, session: 'a' }) as string
    const b = await client.remoteEval(busyFor(10), node.host, { wait: false, session: 'b' }) as string
    await assert.rejects(client.remoteEval('1', node.host, { session: 'c' }), (err: RemoteEvalError) => {
      assert.equal(err.code, 'BUSY')
      assert.ok(Number(err.data.retryAfterMs) > 0)
      return true
    })
    // The queued one can be dropped by abort; it never runs.
    assert.equal((await client.remoteAbort(b, node.host)).aborted, true)
    const [rec] = await client.status(node.host, { which: 'done', id: b })
    assert.equal(rec?.howStopped, 'aborted')
    assert.equal(rec?.startedAt, undefined)
    await client.fetchResult(a, node.host, { wait: true })
    // A patient client retries BUSY by itself.
    const patient = localClient(node)
    await patient.remoteEval(busyFor(300), node.host, { wait: false, session: 'p1' })
    await patient.remoteEval(busyFor(10), node.host, { wait: false, session: 'p2' })
    assert.equal(await patient.remoteEval('"got in"', node.host, { session: 'p3' }), 'got in')
    patient.close()
  })

  test('a retransmitted txn runs once; reusing its id for another form is a conflict', async () => {
    const conn = await client.connection(client.resolve(node.host))
    const txn = client.nextTxn()
    const body = { kind: 'eval' as const, txn, form: 'globalThis.count = (globalThis.count ?? 0) + 1', wait: true }
    const [r1, r2] = await Promise.all([conn.request(body), conn.request(body)])
    assert.deepEqual([(r1 as { value: number }).value, (r2 as { value: number }).value], [1, 1])
    assert.equal(await client.remoteEval('globalThis.count', node.host), 1)
    await assert.rejects(conn.request({ ...body, form: '2' }), is('TXN_CONFLICT'))
    await assert.rejects(conn.request({ ...body, txn: 'ffffffffffffffff.00:1' }), is('CLIENT_ID_MISMATCH'))
  })

  test('a result survives a dropped connection and is re-fetched by txn', async () => {
    const dropper = localClient(node)
    const pending = dropper.remoteEval(`${busyFor(400)}; "kept"`, node.host)
    const txn = await eventually(async () => (await client.status(node.host, { which: 'running' }))[0]?.txn, 'the eval to start')
    ;(await dropper.connection(dropper.resolve(node.host))).destroy()
    await assert.rejects(pending, (err: RemoteEvalError) => err.code === 'LOST' && /fetchResult/.test(err.message))
    const outcome = await client.fetchResult(txn, node.host, { wait: true })
    assert.equal(outcome.value, 'kept')
    dropper.close()
  })

  test('done records are purged after --purge-seconds', async () => {
    const txn = (await client.evalDetailed('"purge me"', node.host) as { txn: string }).txn
    assert.equal((await client.status(node.host, { id: txn })).length, 1)
    await eventually(async () => (await client.status(node.host, { id: txn })).length === 0, 'the record to be purged')
    await assert.rejects(client.fetchResult(txn, node.host), is('NO_SUCH_TXN'))
  })

  test('an untrusted peer is refused, and the node answers the next good request', async () => {
    const stranger = new Client({ stateDir: tempDir() })
    await assert.rejects(stranger.remoteEval('1', node.host), (err: Error & { code?: string }) => err.code === 'UNTRUSTED_PEER' || /does not trust/.test(err.message))
    stranger.close()
    assert.equal(await client.remoteEval('"still here"', node.host), 'still here')
  })

  test('wrong-shaped requests get an error reply on their id, and the connection stays usable', async () => {
    const conn: ClientConnection = await client.connection(client.resolve(node.host))
    await assert.rejects(conn.request({ kind: 'eval', txn: client.nextTxn() } as never), is('BAD_MESSAGE', /"form"/))
    await assert.rejects(conn.request({ kind: 'make-coffee' } as never), is('UNKNOWN_KIND'))
    assert.equal((await conn.request({ kind: 'ping' }) as { name: string }).name, 'testnode')
  })

  test('gag self refuses this node\'s own requests with the rule named; the policy is live', async () => {
    await client.policy(node.host, { gag: ['self'] })
    await assert.rejects(client.remoteEval('1', node.host), is('REFUSED', /gag self/))
    // Policy requests themselves are not evaluations, so the operator can always undo it.
    await client.policy(node.host, { ungag: ['self'] })
    assert.equal(await client.remoteEval('1', node.host), 1)
  })
})

test('--minutes stops the node by itself, cleanly', async () => {
  const node = await startNode(['--minutes', '0.02'])
  const code = await new Promise<number | null>(resolve => node.proc.once('exit', resolve))
  assert.equal(code, 0)
  assert.match(node.output(), /stopped/)
})

test('`node bin/evalmesh.js serve` without flags: the pid started is the node, its isolates work, SIGTERM to it stops it', async () => {
  const node = await startNode([], { nodeFlags: [] })
  const client = localClient(node)
  try {
    assert.equal(await client.remoteEval('[1, 2].map(x => x * 21).at(-1)', node.host), 42)
    // Without the flag the node cannot host an isolate itself: pure forms go to its sandbox process too.
    assert.equal(await client.remoteEval('40 + 2', node.host, { session: 'pure' }), 42)
    assert.equal((await client.describe(node.host)).sandbox?.inline, 0)
    const locator = JSON.parse(readFileSync(join(node.stateDir, 'node.json'), 'utf8'))
    assert.equal(locator.pid, node.proc.pid, 'no wrapper process between the user and the node')
  } finally {
    client.close()
  }
  assert.equal(await node.stop('SIGTERM'), 0)
  const refused = await new Promise<boolean>(resolve => {
    const s = connect(node.port, '127.0.0.1')
    s.once('connect', () => { s.destroy(); resolve(false) })
    s.once('error', () => resolve(true))
  })
  assert.ok(refused, 'the port is closed once the pid the user started has exited')
})

test('--busy-poll sets how long the node polls after a reply; describe shows it, and a bad value is refused by name', async () => {
  const node = await startNode(['--busy-poll', '5000'])
  const client = localClient(node)
  try {
    for (let i = 0; i < 20; i++) assert.equal(await client.remoteEval('1+1', node.host), 2)
    const { busyPoll } = (await client.describe(node.host)).transport
    assert.equal(busyPoll.maxMicros, 5000)
    assert.ok(busyPoll.spunSeconds > 0, 'the node polled between its replies and the next requests')
  } finally {
    client.close()
    await node.stop()
  }
  const off = await startNode(['--busy-poll', '0'])
  const offClient = localClient(off)
  try {
    assert.equal(await offClient.remoteEval('1+1', off.host), 2)
    assert.deepEqual((await offClient.describe(off.host)).transport.busyPoll, { maxMicros: 0, windowMicros: 0, spunSeconds: 0, yielded: 0 })
  } finally {
    offClient.close()
    await off.stop()
  }
  for (const bad of ['-5', '2.5', '200000', 'soon']) {
    const r = await runCli(['serve', '--port', '0', `--busy-poll=${bad}`], { stateDir: tempDir() })
    assert.equal(r.code, 2, `--busy-poll ${bad}: ${r.stderr}`)
    assert.match(r.stderr, /--busy-poll must be a (non-negative|whole) number/)
  }
  const env = await runCli(['ping'], { stateDir: tempDir(), env: { EVALMESH_BUSY_POLL_US: 'fast' } })
  assert.equal(env.code, 2)
  assert.match(env.stderr, /EVALMESH_BUSY_POLL_US must be a whole number of µs from 0 to 100000, not "fast"/)
})

test('a second node started with the same state dir leaves the first as its local node', async () => {
  const first = await startNode([], { name: 'first' })
  const second = await startNode([], { stateDir: first.stateDir, name: 'second' })
  const locator = (): { port: number, name: string } | undefined => {
    try { return JSON.parse(readFileSync(join(first.stateDir, 'node.json'), 'utf8')) } catch { return undefined }
  }
  try {
    assert.equal(locator()?.port, first.port)
    assert.equal(await second.stop(), 0)
    assert.equal(locator()?.name, 'first', 'the second node, stopping, does not remove the first one\'s locator')
  } finally {
    await second.stop()
    await first.stop()
  }
  assert.equal(locator(), undefined, 'the first node removes its locator when it stops')
})

/**
 * Several clients of one node, over real sockets and real isolates (issues 9 and 11):
 * EVALSERVER's own example, what waits and why, fairness between clients, and who may
 * see and stop whose work.
 */
import { after, before, describe, test } from 'node:test'
import assert from 'node:assert/strict'
import { Client, RemoteEvalError } from '@evalmesh/client'
import { addTrustedKey, loadIdentity, trustLine } from '@evalmesh/trust'
import { busyFor, eventually, localClient, startNode, tempDir, writeFile, type TestNode } from './support/node.js'

const is = (code: string, pattern?: RegExp) => (err: unknown): boolean => {
  assert.equal((err as RemoteEvalError).code, code, (err as Error).message)
  if (pattern !== undefined) assert.match((err as Error).message, pattern)
  return true
}

/** A client with a key of its own, trusted by the node under `label` (an operator if asked). */
function peerClient (node: TestNode, label: string, options: { operator?: boolean, helloName?: string } = {}): Client {
  const dir = tempDir()
  const identity = loadIdentity(dir, { create: true, name: options.helloName ?? label })
  addTrustedKey(node.stateDir, `${Buffer.from(identity.publicKey).toString('base64')} ${label}`, { operator: options.operator === true })
  addTrustedKey(dir, trustLine(loadIdentity(node.stateDir)))
  return new Client({ stateDir: dir })
}

describe('EVALSERVER\'s example and the waiting lists', () => {
  let node: TestNode
  let me: Client
  before(async () => {
    node = await startNode(['--timeout', '20000', '--concurrency', '8'])
    me = localClient(node)
  })
  after(async () => { me.close(); await node.stop() })

  test('a lengthy form without wait, then status() and a quick form from the same user: both answered while it runs', async () => {
    const loop = await me.remoteEval(busyFor(8000), node.host, { wait: false }) as string
    await eventually(async () => (await me.status(node.host, { id: loop }))[0]?.state === 'running', 'the loop to run')
    const status = await me.evalDetailed('evalserver.status()', node.host)
    assert.ok('value' in status)
    const rows = status.value as Array<{ txn: string, state: string }>
    assert.ok(rows.some(r => r.txn === loop && r.state === 'running'), 'status() lists the loop as running')
    assert.equal(status.session, 'transient', 'it ran beside the busy default session')
    assert.equal(await me.remoteEval('6 * 7', node.host), 42)
    const [record] = await me.status(node.host, { id: loop })
    assert.equal(record?.state, 'running', 'and the loop is still running: nothing waited for it')
    await me.remoteAbort(loop, node.host)
  })

  test('a request naming a busy session waits in input, held by the run ahead of it, and runs only after it', async () => {
    const first = await me.remoteEval(busyFor(1500), node.host, { wait: false, session: 'work' }) as string
    const second = await me.remoteEval('"second"', node.host, { wait: false, session: 'work' }) as string
    const [waiting] = await me.status(node.host, { id: second })
    assert.equal(waiting?.state, 'input', 'not shown as running while it waits')
    assert.equal(waiting?.heldBy, first)
    assert.match(waiting?.waiting ?? '', new RegExp(`session work, held by ${first.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}`))
    const [running] = await me.status(node.host, { id: first })
    assert.equal(running?.state, 'running')
    const done = await me.fetchResult(second, node.host, { wait: true })
    assert.equal(done.value, 'second')
    const [firstDone] = await me.status(node.host, { id: first, which: 'done' })
    assert.ok(firstDone !== undefined && (firstDone.endedAt ?? 0) <= Date.now(), 'the first finished before the second was answered')
  })
})

describe('clients kept apart', () => {
  let node: TestNode
  let operator: Client
  let alice: Client
  let bob: Client
  let ops: Client
  before(async () => {
    const fns = writeFile(tempDir(), 'fns.mjs', 'export function fail () { throw new Error("could not read /etc/evalmesh-secret/area.db") }\n')
    node = await startNode(['--timeout', '20000', '--concurrency', '8', '--functions', fns])
    operator = localClient(node)
    alice = peerClient(node, 'alice')
    bob = peerClient(node, 'bob', { helloName: 'alice' })
    ops = peerClient(node, 'ops', { operator: true })
  })
  after(async () => {
    for (const c of [operator, alice, bob, ops]) c.close()
    await node.stop()
  })

  test('twenty runaway loops from one client do not hold up another client\'s quick form', async () => {
    const loops = await Promise.all(Array.from({ length: 20 }, async (_, i) =>
      await alice.remoteEval(busyFor(6000), node.host, { wait: false, session: `loop${i}` }) as string))
    await eventually(async () => (await alice.status(node.host, { which: 'running' })).length >= 4, 'alice\'s loops to run')
    assert.equal(await bob.remoteEval('1 + 1', node.host), 2)
    const stillRunning = (await operator.status(node.host, { which: 'running' })).filter(r => loops.includes(r.txn))
    assert.ok(stillRunning.length > 0, 'bob was answered while alice\'s loops were still running')
    const waiting = (await operator.status(node.host, { which: 'input' })).filter(r => loops.includes(r.txn))
    assert.ok(waiting.every(r => /client quota|node at capacity/.test(r.waiting ?? '')), JSON.stringify(waiting.map(r => r.waiting)))
    await Promise.all(loops.map(async t => await operator.remoteAbort(t, node.host)))
  })

  test('a client sees only its own transactions; an operator sees all', async () => {
    const mine = await alice.remoteEval(busyFor(3000), node.host, { wait: false, session: 'secret' }) as string
    await eventually(async () => (await alice.status(node.host, { id: mine }))[0]?.state === 'running', 'alice\'s form to run')
    assert.deepEqual(await bob.status(node.host, { id: mine }), [], 'bob cannot see alice\'s form')
    const fromForm = await bob.remoteEval('evalserver.status()', node.host) as Array<{ txn: string }>
    assert.ok(!fromForm.some(r => r.txn === mine), 'nor from a form')
    await assert.rejects(bob.fetchResult(mine, node.host), is('NO_SUCH_TXN'))
    assert.equal((await operator.status(node.host, { id: mine })).length, 1)
    assert.equal((await ops.status(node.host, { id: mine })).length, 1, 'a key marked operator sees it too')
    await operator.remoteAbort(mine, node.host)
  })

  test('a client cannot abort another\'s work (FORBIDDEN names the right); the owner and operators can', async () => {
    const work = await alice.remoteEval(busyFor(10000), node.host, { wait: false, session: 'abortme' }) as string
    await assert.rejects(bob.remoteAbort(work, node.host), is('FORBIDDEN', /operator/))
    await assert.rejects(bob.remoteEval(`await evalserver.abort(${JSON.stringify(work)})`, node.host), /operator/)
    assert.equal((await alice.status(node.host, { id: work }))[0]?.state === 'done', false, 'still alive')
    const r = await ops.remoteAbort(work, node.host)
    assert.equal(r.aborted, true)
    const own = await alice.remoteEval(busyFor(10000), node.host, { wait: false, session: 'abortme' }) as string
    assert.equal((await alice.remoteAbort(own, node.host)).aborted, true)
  })

  test('the trace shows a client only its own entries; switching it and changing policy are operator actions', async () => {
    await operator.trace(node.host, { on: true })
    const a = await alice.remoteEval('"alice was here"', node.host, { wait: false }) as string
    await alice.fetchResult(a, node.host, { wait: true })
    await bob.remoteEval('"bob was here"', node.host)
    const bobs = await bob.trace(node.host)
    assert.ok(bobs.events.length > 0)
    assert.ok(bobs.events.every(e => e.txn !== undefined && !e.txn.startsWith(alice.identity.id)), 'none of alice\'s entries')
    assert.ok((await operator.trace(node.host)).events.some(e => e.txn === a))
    await assert.rejects(bob.trace(node.host, { on: false }), is('FORBIDDEN'))
    await assert.rejects(bob.policy(node.host, { gag: ['alice'] }), is('FORBIDDEN', /operator/))
    await operator.trace(node.host, { on: false })
  })

  test('names come from the trust store: a gag on alice holds, and bob calling himself alice is still bob', async () => {
    await operator.policy(node.host, { gag: ['alice'] })
    try {
      await assert.rejects(alice.remoteEval('1', node.host), is('REFUSED', /gag alice/))
      assert.equal(await bob.remoteEval('"bob is not alice"', node.host), 'bob is not alice')
      const [rec] = await operator.status(node.host, { which: 'done', limit: 1 })
      assert.equal(rec?.clientName, 'bob', 'status shows the name the node gives the key')
    } finally {
      await operator.policy(node.host, { ungag: ['alice'] })
    }
    await operator.policy(node.host, { gag: ['alice2'] })
    try {
      assert.equal(await alice.remoteEval('"renaming does not matter"', node.host), 'renaming does not matter')
    } finally {
      await operator.policy(node.host, { ungag: ['alice2'] })
    }
  })

  test('an operator function that throws reaches a client with its message and code, without host paths or stack; an operator gets the stack', async () => {
    const err = await alice.remoteApply('fail', [], node.host).then(() => assert.fail('fail() succeeded'), (e: RemoteEvalError) => e)
    assert.equal(err.code, 'EVAL_ERROR')
    assert.match(err.message, /could not read <path>/)
    assert.equal(err.remoteStack, undefined, 'no host stack for a client')
    assert.ok(!err.message.includes('/etc/evalmesh-secret'), err.message)
    const fromForm = await alice.remoteEval('fns.fail().catch(e => e.message + "|" + e.stack)', node.host) as string
    assert.ok(!fromForm.includes('/etc/evalmesh-secret') && !/fns\.mjs/.test(fromForm), fromForm)
    const opErr = await operator.remoteApply('fail', [], node.host).then(() => assert.fail('fail() succeeded'), (e: RemoteEvalError) => e)
    assert.match(opErr.remoteStack ?? '', /fns\.mjs/, 'the operator sees where it failed')
  })
})

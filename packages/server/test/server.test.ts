/**
 * The server's own logic with a fake sandbox: real sockets, no sandbox process. The
 * fake answers each form from a table, so the tests decide exactly what a run returns.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { EventEmitter } from 'node:events'
import { mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { formatTxn } from '@evalmesh/protocol'
import type { Sandbox, SandboxJob, SandboxResult } from '@evalmesh/sandbox'
import { TrustStore, loadIdentity } from '@evalmesh/trust'
import { ClientConnection } from '@evalmesh/transport'
import { startServer, type EvalServer } from '../src/index.js'

/** Runs nothing: a form is a key into `answers`; "hold()" never settles until released. */
class FakeSandbox extends EventEmitter implements Sandbox {
  readonly jobs: SandboxJob[] = []
  readonly aborted: string[] = []
  readonly #held = new Map<string, (r: SandboxResult) => void>()
  constructor (readonly answers: Record<string, Partial<SandboxResult> & { value?: unknown }>) { super() }
  async start (): Promise<void> {}
  async stop (): Promise<void> {}
  run (job: SandboxJob): Promise<SandboxResult> {
    this.jobs.push(job)
    if (job.form.startsWith('hold')) return new Promise(resolve => this.#held.set(job.txn, resolve))
    const a = this.answers[job.form] ?? { value: job.form }
    return Promise.resolve({ ok: true, output: '', outputTruncated: false, seconds: 0.001, ...a } as SandboxResult)
  }
  release (txn: string, value: unknown = 'released'): void {
    this.#held.get(txn)?.({ ok: true, value, output: '', outputTruncated: false, seconds: 0.01 })
  }
  abort (txn: string): boolean {
    this.aborted.push(txn)
    const r = this.#held.get(txn)
    r?.({ ok: false, error: { code: 'ABORTED', wire: 407, name: 'EvalMeshError', message: 'aborted' }, output: '', outputTruncated: false, seconds: 0 })
    return r !== undefined
  }
  async resetSession (): Promise<void> {}
  setGrants (): void {}
  get stats (): Sandbox['stats'] { return { restarts: 0, sessions: 0, running: 0, pid: undefined, batched: 0, heapBytes: 0 } }
}

async function setup (answers: FakeSandbox['answers'] = {}, init: Parameters<typeof startServer>[0] = {}): Promise<{ server: EvalServer, sandbox: FakeSandbox, conn: ClientConnection, txn: () => string, done: () => Promise<void> }> {
  const dir = mkdtempSync(join(tmpdir(), 'em-srv-'))
  const sandbox = new FakeSandbox(answers)
  const server = await startServer({ stateDir: dir, name: 'unit', port: 0, controlPort: false, sandbox, ...init })
  const identity = loadIdentity(dir)
  const conn = await ClientConnection.open({ host: '127.0.0.1', port: server.address.port, identity, trust: new TrustStore(dir, identity) })
  let seq = 0
  const client = `${identity.id}.unit01`
  return {
    server, sandbox, conn,
    txn: () => formatTxn({ client, seq: ++seq }),
    done: async () => { conn.close(); await server.stop(); rmSync(dir, { recursive: true, force: true }) }
  }
}

test('a result the receiver could not take (cyclic, 70 deep) fails that request alone; the connection goes on', async () => {
  const cyclic: Record<string, unknown> = {}
  cyclic.self = cyclic
  let deep: unknown = 1
  for (let i = 0; i < 70; i++) deep = [deep]
  const s = await setup({ cyclic: { value: cyclic }, deep: { value: deep } })
  try {
    for (const form of ['cyclic', 'deep']) {
      const txn = s.txn()
      await assert.rejects(s.conn.request({ kind: 'eval', txn, form, wait: true }), (err: { code?: string }) => err.code === 'RESULT_UNENCODABLE' || err.code === 'NOT_CLONEABLE')
      assert.equal(s.server.status('done', txn)[0]?.howStopped, 'failed', 'the record says failed, not completed')
    }
    const ok = await s.conn.request({ kind: 'eval', txn: s.txn(), form: 'fine', wait: true })
    assert.equal('value' in ok && ok.value, 'fine')
  } finally { await s.done() }
})

test('a reply says when the session\'s globals were lost, and when it ran in a transient context', async () => {
  const s = await setup({ lost: { value: 1, contextLost: 'the sandbox process serving this session was replaced' } })
  try {
    const r = await s.conn.request({ kind: 'eval', txn: s.txn(), form: 'lost', wait: true })
    assert.equal('contextLost' in r && r.contextLost, 'the sandbox process serving this session was replaced')
    const held = s.txn()
    await s.conn.request({ kind: 'eval', txn: held, form: 'hold()', wait: false })
    const beside = await s.conn.request({ kind: 'eval', txn: s.txn(), form: 'other()', wait: true })
    assert.equal('session' in beside && beside.session, 'transient')
    assert.equal(s.sandbox.jobs.at(-1)?.transient, true)
    assert.match(s.sandbox.jobs.at(-1)?.session ?? '', /\/~\d+$/)
    s.sandbox.release(held)
  } finally { await s.done() }
})

test('aborting a queued request takes it out of the queue; the sandbox never sees it', async () => {
  const s = await setup({}, { concurrency: 1 })
  try {
    const running = s.txn()
    const queued = s.txn()
    await s.conn.request({ kind: 'apply', txn: running, fn: 'evalserver.describe', args: [], wait: false })
    await s.conn.request({ kind: 'eval', txn: s.txn(), form: 'hold()', wait: false, session: 'a' })
    await s.conn.request({ kind: 'eval', txn: queued, form: 'never', wait: false, session: 'b' })
    const r = await s.conn.request({ kind: 'abort', txn: queued })
    assert.equal(r.aborted, true)
    assert.ok(!s.sandbox.jobs.some(j => j.txn === queued))
    assert.equal(s.server.status('done', queued)[0]?.howStopped, 'aborted')
  } finally { await s.done() }
})

test('status and abort for another client: hidden and FORBIDDEN unless the caller is an operator', async () => {
  const s = await setup()
  try {
    const txn = s.txn()
    await s.conn.request({ kind: 'eval', txn, form: 'hold()', wait: false })
    const stranger = { id: 'ffffffffffffffff', name: 'mallory', operator: false }
    assert.deepEqual(s.server.status('all', txn, undefined, stranger), [])
    assert.equal(s.server.status('all', txn).length, 1, 'the local operator sees it')
    await assert.rejects(s.server.abort(txn, { caller: stranger }), (err: { code?: string, data?: { right?: string } }) => err.code === 'FORBIDDEN' && err.data?.right === 'operator')
    const r = await s.server.abort(txn)
    assert.equal(r.aborted, true)
  } finally { await s.done() }
})

test('describe shows the quotas in force and the retention budget', async () => {
  const s = await setup({}, { quotas: { runningPerClient: 3, maxQueueWaitMs: 750 }, resultBudgetBytes: 1 << 20 })
  try {
    const d = await s.conn.request({ kind: 'describe' }) as unknown as { quotas: Record<string, number>, retention: Record<string, number> }
    assert.equal(d.quotas.runningPerClient, 3)
    assert.equal(d.quotas.maxQueueWaitMs, 750)
    assert.equal(d.quotas.sessionsPerClient, 32)
    assert.equal(d.retention.budgetBytes, 1 << 20)
  } finally { await s.done() }
})

test('subscribe streams each transaction as it changes list, and a trace event stream; no polling', async () => {
  const s = await setup()
  try {
    const seen: Array<{ txn: string, state: string }> = []
    const got = new Promise<void>(resolve => {
      void s.conn.subscribe(events => {
        for (const e of events) if (e.type === 'txn') seen.push({ txn: e.record.txn, state: e.record.state })
        if (seen.some(e => e.state === 'done')) resolve()
      })
    })
    await new Promise(resolve => setTimeout(resolve, 20))
    const txn = s.txn()
    await s.conn.request({ kind: 'eval', txn, form: 'hold()', wait: false })
    await new Promise(resolve => setTimeout(resolve, 250)) // one batch goes out with it running
    s.sandbox.release(txn)
    await got
    const states = seen.filter(e => e.txn === txn).map(e => e.state)
    assert.ok(states.includes('running'), states.join(','))
    assert.equal(states.at(-1), 'done')
  } finally { await s.done() }
})

test('a subscriber that is not an operator hears only of its own transactions', async () => {
  const s = await setup()
  try {
    const events: string[] = []
    s.server.streams.open({ closed: false, bufferedBytes: 0, once: () => {}, sendEvents: (_id: number, batch: Array<{ type: string, record?: { txn: string } }>) => { for (const e of batch) if (e.record !== undefined) events.push(e.record.txn) } } as never, 1, { id: 'ffffffffffffffff', name: 'mallory', operator: false })
    const mine = s.txn()
    await s.conn.request({ kind: 'eval', txn: mine, form: 'x', wait: true })
    await new Promise(resolve => setTimeout(resolve, 250))
    assert.deepEqual(events, [], 'another client\'s work is not streamed to mallory')
  } finally { await s.done() }
})

test('after a restart the done records are the ones kept before it: what the table evicted or purged stays forgotten', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'em-srv-'))
  let seq = 0
  const open: Array<{ server: EvalServer, conn: ClientConnection }> = []
  const stop = async (n: { server: EvalServer, conn: ClientConnection }): Promise<void> => { n.conn.close(); await n.server.stop() }
  const start = async (init: Parameters<typeof startServer>[0]): Promise<{ server: EvalServer, conn: ClientConnection }> => {
    const server = await startServer({ stateDir: dir, name: 'unit', port: 0, controlPort: false, sandbox: new FakeSandbox({}), ...init })
    const identity = loadIdentity(dir) // made by the first start
    const conn = await ClientConnection.open({ host: '127.0.0.1', port: server.address.port, identity, trust: new TrustStore(dir, identity) })
    open.push({ server, conn })
    return { server, conn }
  }
  const doneTxns = (server: EvalServer): string[] => server.status('done').map(r => r.txn)
  try {
    const first = await start({ maxDoneRecords: 5 })
    const client = `${loadIdentity(dir).id}.unit02`
    for (let i = 1; i <= 12; i++) await first.conn.request({ kind: 'eval', txn: formatTxn({ client, seq: ++seq }), form: `v${i}`, wait: true })
    const kept = doneTxns(first.server)
    assert.equal(kept.length, 5)
    await stop(first)
    assert.doesNotMatch(readFileSync(join(dir, 'txns.journal'), 'utf8'), /"del":true/, 'evictions are not journalled: the restart replays them')

    const second = await start({ maxDoneRecords: 5 })
    assert.deepEqual(doneTxns(second.server), kept, 'the same five, newest first')
    const retransmit = await second.conn.request({ kind: 'eval', txn: kept[0]!, form: 'v12', wait: true })
    assert.equal('value' in retransmit && retransmit.value, 'v12', 'a kept one answers a retransmit from its record')
    await stop(second)

    // Aged past the retention of the next start: gone at once, not at the first purge tick.
    await new Promise(resolve => setTimeout(resolve, 1100))
    const third = await start({ maxDoneRecords: 5, purgeSeconds: 1 })
    assert.deepEqual(doneTxns(third.server), [])
  } finally {
    for (const n of open) await stop(n).catch(() => {})
    rmSync(dir, { recursive: true, force: true })
  }
})

test('a record that waited says what for while it waits, and nothing of it once it runs and ends', async () => {
  const s = await setup()
  try {
    const first = s.txn()
    const second = s.txn()
    await s.conn.request({ kind: 'eval', txn: first, form: 'hold()', wait: false, session: 'w' })
    await s.conn.request({ kind: 'eval', txn: second, form: 'after', wait: false, session: 'w' })
    const [waiting] = (await s.conn.request({ kind: 'status', which: 'input' })).filter(r => r.txn === second)
    assert.equal(waiting?.heldBy, first)
    assert.equal(waiting?.waiting, `session w, held by ${first}`)
    s.sandbox.release(first)
    await s.conn.request({ kind: 'result', txn: second, wait: true }) // returns once it is done
    const [done] = (await s.conn.request({ kind: 'status', which: 'done' })).filter(r => r.txn === second)
    assert.equal(done?.howStopped, 'completed')
    for (const key of ['waiting', 'heldBy']) assert.ok(!(key in done!), `no ${key} in the done record: ${JSON.stringify(Object.keys(done!))}`)
  } finally { await s.done() }
})

/**
 * The scheduler alone: no sockets, no processes. Works are started by calling their
 * `start`, and finished by the test, so every ordering below is exact.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import type { TxnRecord } from '@evalmesh/protocol'
import { Scheduler, type Route, type SchedulerLimits } from '../src/scheduler.js'
import { TxnTable, type Txn } from '../src/txn-table.js'

const LIMITS: SchedulerLimits = { concurrency: 4, perClient: 3, queueLength: 100, perClientQueue: 50, maxWaitMs: 60_000 }

interface Harness {
  scheduler: Scheduler
  table: TxnTable
  started: Array<{ txn: string, route: Route | undefined }>
  submit: (client: string, opts?: { session?: string, quick?: boolean, kind?: 'eval' | 'apply' }) => Txn
  finish: (t: Txn) => void
}

function harness (limits: Partial<SchedulerLimits> = {}): Harness {
  const table = new TxnTable({ resultBudgetBytes: 1 << 20, maxKeptResultBytes: 1 << 20, maxDoneRecords: 1000 })
  const scheduler = new Scheduler(table, { ...LIMITS, ...limits })
  const started: Harness['started'] = []
  let seq = 0
  return {
    scheduler, table, started,
    submit: (client, opts = {}) => {
      const n = ++seq
      const record: TxnRecord = { txn: `${client}.x:${n}`, client: `${client}.x`, clientName: client, seq: n, kind: opts.kind ?? 'eval', summary: `#${n}`, mode: 'directed', state: 'input', queuedAt: Date.now() }
      const t: Txn = { record, request: { kind: 'eval', id: n, txn: record.txn, form: String(n), wait: false }, peerId: client, caller: { id: client, name: client, operator: false }, waiters: [], keptBytes: 0 }
      table.add(t)
      const work = { txn: t, client, session: opts.session, kind: opts.kind ?? 'eval', quick: opts.quick === true, start: (route: Route | undefined) => { started.push({ txn: record.txn, route }) } } as const
      scheduler.submit(work)
      return t
    },
    finish: (t) => {
      scheduler.finished(t)
      table.finish(t, { ok: true, value: 1, output: '', outputTruncated: false, seconds: 0 })
    }
  }
}

test('a request naming a busy session waits in input, held by the run ahead, and starts when that ends', () => {
  const h = harness()
  const first = h.submit('alice', { session: 'work' })
  const second = h.submit('alice', { session: 'work' })
  assert.equal(first.record.state, 'running')
  assert.equal(second.record.state, 'input')
  assert.equal(second.record.heldBy, first.record.txn)
  assert.equal(second.record.waiting, `session work, held by ${first.record.txn}`)
  assert.equal(h.started.length, 1)
  h.finish(first)
  assert.equal(second.record.state, 'running')
  assert.equal(second.record.waiting, undefined)
  assert.deepEqual(h.started[1]?.route, { session: 'alice/work', transient: false })
})

test('a request naming no session goes to the default session when free, else to a transient context', () => {
  const h = harness()
  const lengthy = h.submit('alice')
  const status = h.submit('alice')
  assert.deepEqual(h.started[0]?.route, { session: 'alice/default', transient: false })
  assert.equal(h.started[1]?.route?.transient, true, 'not stuck behind the lengthy form')
  assert.equal(status.record.state, 'running')
  assert.equal(status.record.session, 'transient')
  h.finish(lengthy); h.finish(status)
  h.submit('alice')
  assert.deepEqual(h.started[2]?.route, { session: 'alice/default', transient: false }, 'back to the default once it is free')
})

test('quick forms pipeline behind a quick run of their session without a slot; they show as held until it ends', () => {
  const h = harness({ concurrency: 1, perClient: 1 })
  const a = h.submit('alice', { quick: true })
  const b = h.submit('alice', { quick: true })
  const c = h.submit('alice', { quick: true })
  assert.equal(h.started.length, 3, 'all handed to the sandbox at once (it batches them)')
  assert.equal(h.scheduler.running, 1, 'holding one slot between them')
  assert.equal(b.record.state, 'input')
  assert.equal(b.record.heldBy, a.record.txn)
  h.finish(a)
  assert.equal(b.record.state, 'running')
  assert.equal(c.record.heldBy, a.record.txn, 'c waits for the session, not for b in particular')
  h.finish(b); h.finish(c)
  assert.equal(h.scheduler.running, 0)
})

test('clients take turns: a flood from one client does not delay another\'s request beyond the next free slot', () => {
  const h = harness({ concurrency: 2, perClient: 2 })
  const flood = Array.from({ length: 10 }, () => h.submit('alice', { kind: 'apply' }))
  assert.equal(h.scheduler.running, 2)
  const bobs = h.submit('bob', { kind: 'apply' })
  assert.equal(bobs.record.state, 'input')
  assert.match(bobs.record.waiting ?? '', /node at capacity/)
  h.finish(flood[0]!)
  assert.equal(bobs.record.state, 'running', 'bob goes next, ahead of alice\'s eight waiting')
  assert.equal(flood[2]!.record.state, 'input')
})

test('one client never holds more than its share of the slots', () => {
  const h = harness({ concurrency: 4, perClient: 3 })
  const loops = Array.from({ length: 20 }, (_, i) => h.submit('alice', { session: `s${i}` }))
  assert.equal(loops.filter(t => t.record.state === 'running').length, 3)
  assert.match(loops[5]!.record.waiting ?? '', /client quota: 3 running/)
  const bobs = h.submit('bob')
  assert.equal(bobs.record.state, 'running', 'a slot was left for another client')
})

test('waiting is bounded in time: a request that would wait too long is refused BUSY with a retry-after', () => {
  const h = harness({ concurrency: 1, perClient: 1, maxWaitMs: 200 })
  const first = h.submit('alice', { kind: 'apply' })
  assert.equal(h.scheduler.refusal('alice')?.code ?? 'admitted', 'admitted', 'one may wait while the estimate is short')
  h.submit('alice', { kind: 'apply' })
  // Teach the scheduler that runs take about a second.
  first.record.startedAt = Date.now() - 1000
  h.finish(first)
  const refusal = h.scheduler.refusal('alice')
  assert.equal(refusal?.code, 'BUSY')
  assert.match(refusal?.message ?? '', /longer than the node's bound of 200 ms/)
  assert.ok((refusal?.retryAfterMs ?? 0) >= 50)
})

test('the per-client queue bound refuses only the client that filled it', () => {
  const h = harness({ concurrency: 1, perClient: 1, perClientQueue: 3 })
  for (let i = 0; i < 4; i++) h.submit('alice', { kind: 'apply' })
  assert.match(h.scheduler.refusal('alice')?.message ?? '', /this client has 3 requests waiting/)
  assert.equal(h.scheduler.refusal('bob'), undefined)
})

test('a withdrawn request leaves the queue; a started one cannot be withdrawn', () => {
  const h = harness({ concurrency: 1, perClient: 1 })
  const a = h.submit('alice', { kind: 'apply' })
  const b = h.submit('alice', { kind: 'apply' })
  assert.equal(h.scheduler.withdraw(a), false)
  assert.equal(h.scheduler.withdraw(b), true)
  assert.equal(h.scheduler.queued, 0)
  h.finish(a)
  assert.equal(h.started.length, 1, 'b never starts')
})

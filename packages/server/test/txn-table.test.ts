/** The transaction table alone: done records are evicted, purged and lose their kept results oldest first. */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import type { TxnRecord } from '@evalmesh/protocol'
import { TxnTable, type Txn } from '../src/txn-table.js'

let seq = 0
function txn (): Txn {
  const n = ++seq
  const record: TxnRecord = { txn: `c.x:${n}`, client: 'c.x', clientName: 'c', seq: n, kind: 'eval', summary: `#${n}`, mode: 'directed', state: 'input', queuedAt: Date.now() }
  return { record, request: { kind: 'eval', id: n, txn: record.txn, form: '1', wait: true }, peerId: 'c', caller: { id: 'c', name: 'c', operator: false }, waiters: [], keptBytes: 0 }
}

function done (table: TxnTable, value: unknown = 1, endedAt?: number): Txn {
  const t = txn()
  table.add(t)
  table.start(t)
  table.finish(t, { ok: true, value, output: '', outputTruncated: false, seconds: 0 })
  if (endedAt !== undefined) t.record.endedAt = endedAt
  return t
}

test('past maxDoneRecords the oldest done records go, in end order, also over many rounds', () => {
  const table = new TxnTable({ resultBudgetBytes: 1 << 30, maxKeptResultBytes: 1 << 20, maxDoneRecords: 100 })
  const all: Txn[] = []
  for (let i = 0; i < 5000; i++) all.push(done(table))
  assert.equal(table.doneCount, 100)
  for (const t of all.slice(0, 4900)) assert.equal(table.get(t.record.txn), undefined)
  for (const t of all.slice(4900)) assert.equal(table.get(t.record.txn), t)
  assert.deepEqual(table.list('done').map(r => r.txn), all.slice(4900).reverse().map(t => t.record.txn))
})

test('purge takes the old ones from the front, and eviction afterwards still takes the oldest left', () => {
  const table = new TxnTable({ resultBudgetBytes: 1 << 30, maxKeptResultBytes: 1 << 20, maxDoneRecords: 10 })
  const now = Date.now()
  const old = [done(table, 1, now - 10_000), done(table, 1, now - 10_000), done(table, 1, now - 10_000)]
  const young = Array.from({ length: 7 }, () => done(table, 1, now))
  assert.equal(table.purge(5000, now), 3)
  for (const t of old) assert.equal(table.get(t.record.txn), undefined)
  const more = Array.from({ length: 5 }, () => done(table, 1, now))
  assert.equal(table.doneCount, 10)
  for (const t of young.slice(0, 2)) assert.equal(table.get(t.record.txn), undefined)
  for (const t of [...young.slice(2), ...more]) assert.equal(table.get(t.record.txn), t)
})

test('over the result budget the oldest kept results are dropped first, and only then', () => {
  const value = 'x'.repeat(100) // about 300 bytes by the table's estimate
  const table = new TxnTable({ resultBudgetBytes: 1000, maxKeptResultBytes: 1000, maxDoneRecords: 100 })
  const ts = [done(table, value), done(table, value), done(table, value)]
  assert.deepEqual(ts.map(t => t.record.resultKept), [true, true, true])
  const fourth = done(table, value)
  assert.equal(fourth.record.resultKept, true)
  assert.equal(ts[0]!.record.resultKept, false)
  assert.equal(ts[0]!.settled?.ok === true ? ts[0]!.settled.value : 'error', undefined)
  assert.deepEqual(ts.slice(1).map(t => t.record.resultKept), [true, true])
  const fifth = done(table, value)
  assert.equal(fifth.record.resultKept, true)
  assert.equal(ts[1]!.record.resultKept, false)
  assert.equal(ts[2]!.record.resultKept, true)
  assert.ok(table.keptBytes <= 1000)
})

test('past maxDoneBytes the oldest done records go: big forms cannot hold the node\'s memory beyond the bound', () => {
  const table = new TxnTable({ resultBudgetBytes: 1 << 30, maxKeptResultBytes: 1 << 20, maxDoneRecords: 1000, maxDoneBytes: 100_000 })
  const big = (): Txn => {
    const t = txn()
    ;(t.request as { form: string }).form = 'x'.repeat(20_000)
    table.add(t)
    table.start(t)
    table.finish(t, { ok: true, value: 1, output: '', outputTruncated: false, seconds: 0 })
    return t
  }
  const all = Array.from({ length: 20 }, big)
  assert.ok(table.doneBytes <= 100_000, `doneBytes ${table.doneBytes}`)
  assert.ok(table.doneCount >= 4 && table.doneCount < 5, `${table.doneCount} records`)
  // Oldest first: the ones still there are the newest.
  for (const t of all.slice(-table.doneCount)) assert.equal(table.get(t.record.txn), t)
  for (const t of all.slice(0, 20 - table.doneCount)) assert.equal(table.get(t.record.txn), undefined)
  // Small records after it: the count of bytes went down with the evicted ones.
  for (let i = 0; i < 50; i++) done(table)
  assert.ok(table.doneBytes <= 100_000)
  assert.equal(table.doneCount > 50, true)
  // One record larger than the bound is kept alone (the newest always stays).
  const t = txn()
  ;(t.request as { form: string }).form = 'y'.repeat(200_000)
  table.add(t); table.start(t)
  table.finish(t, { ok: true, value: 1, output: '', outputTruncated: false, seconds: 0 })
  assert.equal(table.doneCount, 1)
  assert.equal(table.get(t.record.txn), t)
})

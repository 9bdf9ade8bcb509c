import { encodeValue, type ApplyRequest, type EvalRequest, type HowStopped, type StatusWhich, type TxnRecord } from '@evalmesh/protocol'
import type { SandboxResult } from '@evalmesh/sandbox'
import type { Caller } from './access.js'

/** How a transaction ended, as kept for its waiters and for re-fetch: the sandbox's result type, for applies too. */
export type Settled = SandboxResult

export interface Txn {
  readonly record: TxnRecord
  /** What was asked, to tell an idempotent retransmit from a conflicting reuse of the id. */
  readonly request: EvalRequest | ApplyRequest
  readonly peerId: string
  /** Who sent it, with the rights it had: forms it runs act with exactly these. */
  readonly caller: Caller
  waiters: Array<(settled: Settled) => void>
  settled?: Settled
  /** Set when an abort was asked for; the record's reason comes from it. */
  abortReason?: string
  /** Stops a running apply (operator function) cooperatively. */
  controller?: AbortController
  /** Bytes of the kept result, counted against the retention budget. */
  keptBytes: number
  /** Bytes the done record holds beyond its result (its request, output and error), counted against maxDoneBytes. */
  recordBytes?: number
}

export interface TxnTableInit {
  /** Total bytes of results kept for re-fetch. */
  resultBudgetBytes: number
  /** Largest single result kept. */
  maxKeptResultBytes: number
  /** Most done records kept; the oldest go first. */
  maxDoneRecords: number
  /**
   * Most bytes of done records (their requests, output and errors; results are the
   * budget's), estimated; the oldest go first. A record's count alone does not bound
   * memory: one request may carry a form of megabytes.
   */
  maxDoneBytes?: number
  /** Told when a record is forgotten (purged or evicted) and when a kept result is dropped: the durable store follows. */
  onForget?: (t: Txn) => void
  onDropValue?: (t: Txn) => void
}

/**
 * EVALSERVER's three lists: input (queued), running, done. Records are keyed by
 * txn id; done records keep how they stopped, their seconds, and (within a byte
 * budget) the result, until purged.
 */
export class TxnTable {
  readonly #all = new Map<string, Txn>()
  readonly input: Txn[] = []
  readonly running = new Set<Txn>()
  readonly #done = new Map<string, Txn>() // insertion order = end order
  /**
   * The done transactions in end order again, from #head on, for taking the oldest: a Map
   * evicted from its front keeps the deleted entries as holes until it rehashes, and
   * every `values().next()` walks them, which made each eviction cost thousands of steps
   * on a full table. Entries forgotten since (purged) are skipped as they are met.
   */
  #order: Txn[] = []
  #head = 0
  /** Before this index of #order no transaction keeps a result (they go oldest first). */
  #keptFrom = 0
  #keptBytes = 0
  #doneBytes = 0
  readonly #init: TxnTableInit

  constructor (init: TxnTableInit) {
    this.#init = init
  }

  get (txn: string): Txn | undefined { return this.#all.get(txn) }

  get keptBytes (): number { return this.#keptBytes }
  get budgetBytes (): number { return this.#init.resultBudgetBytes }
  get maxDoneRecords (): number { return this.#init.maxDoneRecords }
  get doneBytes (): number { return this.#doneBytes }
  get maxDoneBytes (): number { return this.#init.maxDoneBytes ?? Infinity }
  get doneCount (): number { return this.#done.size }

  add (txn: Txn): void {
    this.#all.set(txn.record.txn, txn)
    this.input.push(txn)
  }

  /** Move a queued transaction to running (the scheduler decides which and when). */
  start (t: Txn): void {
    if (t.record.state !== 'input') return
    this.removeInput(t)
    t.record.state = 'running'
    t.record.startedAt = Date.now()
    this.running.add(t)
  }

  removeInput (t: Txn): boolean {
    // The newest are at the end and most often the ones taken: search from there.
    const i = this.input.lastIndexOf(t)
    if (i < 0) return false
    this.input.splice(i, 1)
    return true
  }

  /** Move a transaction to done, record how it stopped, and keep its result if it fits. */
  /** `size`: the result's encoded bytes when the caller has measured them already. */
  finish (t: Txn, settled: Settled, size?: number): void {
    const r = t.record
    this.running.delete(t)
    this.removeInput(t)
    r.state = 'done'
    r.endedAt = Date.now()
    r.seconds = settled.seconds
    t.settled = settled
    if (settled.ok) {
      r.howStopped = 'completed'
    } else {
      const code = settled.error.code
      r.howStopped = (code === 'ABORTED' ? 'aborted' : code === 'SANDBOX_LOST' ? 'lost' : 'failed') satisfies HowStopped
      r.errorCode = code
      if (code === 'ABORTED') r.reason = t.abortReason ?? settled.error.message
      else r.reason = settled.error.message
    }
    r.resultKept = this.#keep(t, settled, size)
    this.#addDone(t)
  }

  #addDone (t: Txn): void {
    t.recordBytes = recordBytes(t)
    this.#doneBytes += t.recordBytes
    this.#done.set(t.record.txn, t)
    this.#order.push(t)
    this.#evictOver()
  }

  /** Forget the oldest done records beyond maxDoneRecords or maxDoneBytes (the newest one stays). */
  #evictOver (): void {
    while (this.#done.size > this.#init.maxDoneRecords || (this.#doneBytes > this.maxDoneBytes && this.#done.size > 1)) this.#forget(this.#oldest()!)
    this.#compact()
  }

  /** The oldest done transaction still in the table. */
  #oldest (): Txn | undefined {
    while (this.#head < this.#order.length) {
      const t = this.#order[this.#head]!
      if (this.#done.get(t.record.txn) === t) return t
      this.#head++
    }
    return undefined
  }

  /** Drop the passed part of #order once it is most of it (amortized: each entry is copied about once). */
  #compact (): void {
    if (this.#head < 1024 || this.#head * 2 < this.#order.length) return
    this.#order = this.#order.slice(this.#head)
    this.#keptFrom = Math.max(0, this.#keptFrom - this.#head)
    this.#head = 0
  }

  /** Find by full txn id, or by bare sequence number (optionally with the client id). */
  find (id: string | number, client?: string): Txn[] {
    if (typeof id === 'string') {
      const t = this.#all.get(id)
      return t === undefined ? [] : [t]
    }
    const out: Txn[] = []
    for (const t of this.#all.values()) {
      if (t.record.seq === id && (client === undefined || t.record.client === client)) out.push(t)
    }
    return out
  }

  list (which: StatusWhich = 'all', id?: string | number, limit = Infinity, visible?: (t: Txn) => boolean): TxnRecord[] {
    const now = Date.now()
    let room = limit
    const pick = (ts: Iterable<Txn>): TxnRecord[] => {
      const out: TxnRecord[] = []
      for (const t of ts) {
        if (room <= 0) break
        if (id !== undefined && (typeof id === 'string' ? t.record.txn !== id : t.record.seq !== id)) continue
        if (visible !== undefined && !visible(t)) continue
        out.push(recordView(t.record, now))
        room--
      }
      return out
    }
    const out: TxnRecord[] = []
    if (which === 'running' || which === 'all') out.push(...pick(this.running))
    if (which === 'input' || which === 'all') out.push(...pick(this.input))
    if (which === 'done' || which === 'all') out.push(...pick(newestFirst(this.#done)))
    return out
  }

  /** Drop done records that ended more than `maxAgeMs` ago. */
  purge (maxAgeMs: number, now = Date.now()): number {
    let n = 0
    for (let t = this.#oldest(); t !== undefined; t = this.#oldest()) {
      if ((t.record.endedAt ?? now) > now - maxAgeMs) break // later ones are younger
      this.#forget(t)
      n++
    }
    this.#compact()
    return n
  }

  #forget (t: Txn): void {
    this.#done.delete(t.record.txn)
    this.#all.delete(t.record.txn)
    this.#keptBytes -= t.keptBytes
    t.keptBytes = 0
    this.#doneBytes -= t.recordBytes ?? 0
    t.recordBytes = 0
    this.#init.onForget?.(t)
  }

  /** Put back a done transaction from the durable store (after a restart), oldest first. */
  restore (t: Txn): void {
    if (t.settled === undefined || this.#all.has(t.record.txn)) return
    this.#all.set(t.record.txn, t)
    t.record.resultKept = this.#keep(t, t.settled)
    this.#addDone(t)
  }

  #keep (t: Txn, settled: Settled, measured?: number): boolean {
    if (!settled.ok) return true // errors are small and always kept
    const size = (measured ?? approximateSize(settled.value)) + settled.output.length
    if (size > this.#init.maxKeptResultBytes) { this.#dropValue(t); return false }
    // Make room by dropping the oldest kept results (only when there is no room: this runs on every finish).
    if (this.#keptBytes + size > this.#init.resultBudgetBytes) {
      this.#keptFrom = Math.max(this.#keptFrom, this.#head)
      while (this.#keptFrom < this.#order.length && this.#keptBytes + size > this.#init.resultBudgetBytes) {
        const old = this.#order[this.#keptFrom++]!
        if (old.keptBytes > 0 && this.#done.get(old.record.txn) === old) this.#dropValue(old)
      }
    }
    if (this.#keptBytes + size > this.#init.resultBudgetBytes) { this.#dropValue(t); return false }
    t.keptBytes = size
    this.#keptBytes += size
    return true
  }

  #dropValue (t: Txn): void {
    this.#keptBytes -= t.keptBytes
    t.keptBytes = 0
    if (t.settled?.ok === true) {
      t.settled = { ...t.settled, value: undefined }
      t.record.resultKept = false
      this.#init.onDropValue?.(t)
    }
  }
}

/**
 * A record as it leaves the node (status lists, subscriptions): a copy of the fields that
 * are set, a running one's seconds so far. The table's own records keep fields that were
 * cleared as undefined (see the scheduler's clearWait); a reply never carries them.
 */
export function recordView (r: TxnRecord, now: number): TxnRecord {
  const out: Record<string, unknown> = {}
  for (const key in r) {
    const v = (r as unknown as Record<string, unknown>)[key]
    if (v !== undefined) out[key] = v
  }
  const view = out as unknown as TxnRecord
  if (view.state === 'running' && view.startedAt !== undefined) view.seconds = (now - view.startedAt) / 1000
  return view
}

function * newestFirst (done: Map<string, Txn>): Generator<Txn> {
  const all = [...done.values()]
  for (let i = all.length - 1; i >= 0; i--) yield all[i]!
}

/** What a record costs beside its fields' fixed part (measured: about 0.5 KB of heap each). */
const RECORD_OVERHEAD_BYTES = 512

/** A done record's bytes beyond its kept result: its request, its summary, its output and error. */
function recordBytes (t: Txn): number {
  const req = t.request
  let n = RECORD_OVERHEAD_BYTES + t.record.summary.length + (req.kind === 'eval' ? req.form.length : approximateSize(req.args))
  const s = t.settled
  if (s !== undefined) {
    n += s.output.length
    if (!s.ok) n += s.error.message.length + (s.error.stack?.length ?? 0)
  }
  return n
}

/** Encoded size for objects; a cheap estimate for primitives, which dominate the hot path. */
function approximateSize (value: unknown): number {
  switch (typeof value) {
    case 'string': return value.length * 3
    case 'number': case 'boolean': case 'undefined': case 'bigint': return 16
    default:
      if (value === null) return 1
      // Never throws: a value that cannot be encoded is refused before it gets here, and
      // an estimate must not take the node down if one slips through.
      try { return encodeValue(value).length } catch { return 0 }
  }
}

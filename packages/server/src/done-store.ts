import { closeSync, existsSync, fsyncSync, openSync, readFileSync, renameSync, unlinkSync, writeSync } from 'node:fs'
import { EvalMeshError, decodeValue, encodeValue, type ApplyRequest, type EvalRequest, type TxnRecord } from '@evalmesh/protocol'
import type { Caller } from './access.js'
import type { Settled, Txn } from './txn-table.js'

/** A transaction as the store gives it back after a restart. */
export interface StoredTxn {
  record: TxnRecord
  request: EvalRequest | ApplyRequest
  peerId: string
  caller: Caller
  /** Present for the ones that finished; absent for those queued or running at the crash. */
  settled?: Settled
}

/**
 * An admitted transaction is journalled only if it is still unfinished this long after:
 * most finish sooner, and then one line (its end) is all they cost.
 */
const ADMIT_DELAY_MS = 20

/** The journal is rewritten from the live set once it is this many times larger (and past a floor). */
const COMPACT_FACTOR = 4
const COMPACT_FLOOR_BYTES = 8 * 1024 * 1024

/**
 * The durable half of the transaction table: a journal in the node's state dir with one
 * line per change of a transaction (admitted, ended with its record and kept outcome; what
 * the table forgets is not written, see forget()). After a crash and restart the done
 * records answer status, result and retransmits as before, and what was queued or running
 * is recorded as lost ("node restarted"), so a retransmit never runs it a second time.
 *
 * Why a journal and not SQLite: measured here, an SQLite upsert costs about 24 µs per
 * transaction on the node's main thread even batched in one SQLite transaction per turn,
 * which would cost the directed path most of its throughput; an appended line costs one
 * JSON.stringify (about 3 µs) and a share of one write(2) per event-loop turn.
 *
 * Writes are batched: the ends of one event-loop turn are one write at the end of the turn;
 * an admission is written only once it has been unfinished for ADMIT_DELAY_MS. So a crash
 * loses at most the last turn's ends and the last 20 ms of admissions (a transaction
 * admitted that recently, and then lost, is not recorded). Each live transaction's latest
 * line is kept in memory, so that compaction (rewriting the journal from the live set, when
 * it has grown to COMPACT_FACTOR times that) needs no re-encoding. The store holds what the
 * table holds: rows the table forgets (purged, evicted past its bounds) are dropped. A write
 * that fails (see `failed`) ends the journalling, not the node.
 */
export class DoneStore {
  readonly path: string
  #fd: number
  /** The latest line of every live transaction. */
  readonly #live = new Map<string, string>()
  #liveBytes = 0
  #fileBytes = 0
  #pending: string[] = []
  /** Admitted, not yet journalled: written if still unfinished when the admit timer fires. */
  #admitted = new Map<string, Txn>()
  #admitTimer: NodeJS.Timeout | undefined
  #scheduled = false
  #closed = false
  #failed: string | undefined
  readonly #onFailed: ((error: Error) => void) | undefined

  /** `onFailed`: told once if the journal cannot be written (disk full, I/O error); the store then stops writing. */
  constructor (path: string, onFailed?: (error: Error) => void) {
    this.path = path
    this.#onFailed = onFailed
    this.#fd = openSync(path, 'a', 0o600)
  }

  /**
   * Why the journal stopped being written, if it did. A write that fails must not take the
   * node down with every client's work: the table goes on in memory, the event says what
   * happened, describe stops saying `durable`, and the journal keeps what it had.
   */
  get failed (): string | undefined { return this.#failed }

  /**
   * The transactions to put back in the table after a restart: done records as they were,
   * and what was queued or running when node `nodeName` went down recorded as lost ("node
   * restarted"), which is journalled too, so that a retransmit never runs it a second time.
   */
  recover (nodeName: string): { txns: Txn[], lost: number } {
    let lost = 0
    const txns = this.load().map(stored => {
      const t: Txn = { record: stored.record, request: stored.request, peerId: stored.peerId, caller: stored.caller, waiters: [], keptBytes: 0 }
      if (stored.settled !== undefined) {
        t.settled = stored.settled
        return t
      }
      const r = t.record
      r.state = 'done'
      r.endedAt = Date.now()
      r.howStopped = 'lost'
      r.errorCode = 'LOST'
      r.reason = 'node restarted'
      r.waiting = undefined
      r.heldBy = undefined
      t.settled = { ok: false, error: new EvalMeshError('LOST', `transaction ${r.txn} was ${r.startedAt === undefined ? 'queued' : 'running'} when node ${nodeName} went down; it did not finish (node restarted)`, { txn: r.txn, reason: 'node restarted' }).toWire(), output: '', outputTruncated: false, seconds: 0 }
      this.save(t)
      lost++
      return t
    })
    return { txns, lost }
  }

  /** What the store held when the node stopped, in the order of its latest changes (done ones: the order they ended). Rewrites the journal compactly. */
  load (): StoredTxn[] {
    const latest = new Map<string, StoredTxn>()
    const text = existsSync(this.path) ? readFileSync(this.path, 'utf8') : ''
    for (const line of text.split('\n')) {
      if (line === '') continue
      let entry: { t: string, del?: true } & Partial<SerializedTxn>
      try {
        entry = JSON.parse(line) as typeof entry
      } catch {
        continue // a torn last line after a crash: the turn it belonged to is lost, nothing else
      }
      if (entry.del === true) { // written by earlier versions, which journalled each forget
        latest.delete(entry.t)
        this.#forgetLine(entry.t)
        continue
      }
      try {
        const stored = deserialize(entry as SerializedTxn)
        latest.delete(entry.t) // its latest change decides its place
        latest.set(entry.t, stored)
        this.#remember(entry.t, line + '\n')
      } catch { /* a line this version cannot read is dropped, not fatal */ }
    }
    try {
      this.#rewrite()
    } catch (err) {
      this.#fail(err) // what was read still comes back; nothing more is written
    }
    return [...latest.values()]
  }

  /** Record a transaction as it is now (admitted, or ended with its outcome). */
  save (t: Txn): void {
    if (this.#closed) return
    if (t.settled === undefined) {
      this.#admitted.set(t.record.txn, t)
      this.#admitTimer ??= setTimeout(() => this.#writeAdmitted(), ADMIT_DELAY_MS)
      return
    }
    this.#admitted.delete(t.record.txn)
    this.#write(t)
  }

  #writeAdmitted (): void {
    this.#admitTimer = undefined
    const waiting = this.#admitted
    this.#admitted = new Map()
    for (const t of waiting.values()) if (t.settled === undefined) this.#write(t)
  }

  #write (t: Txn): void {
    const line = JSON.stringify(serialize(t)) + '\n'
    this.#remember(t.record.txn, line)
    this.#pending.push(line)
    this.#schedule()
  }

  /**
   * The table forgot a transaction (evicted past its bounds, or purged by age). Nothing is
   * written: which records the table keeps follows from the records themselves (their end
   * order, sizes and end times), so a restart that restores them oldest first into a table
   * with the same bounds, then purges by age, forgets the same ones again. A `del` line per
   * eviction cost a second line (and its write) for every transaction of a full table. The
   * line leaves the live set, so the next compaction drops it from the file.
   */
  forget (txn: string): void {
    this.#admitted.delete(txn)
    this.#forgetLine(txn)
  }

  /** Write what is pending now (also called on a clean stop). */
  flush (): void {
    this.#scheduled = false
    if (this.#pending.length === 0 || this.#closed) return
    const chunk = this.#pending.join('')
    this.#pending = []
    try {
      this.#fileBytes += writeSync(this.#fd, chunk)
      if (this.#fileBytes > Math.max(COMPACT_FLOOR_BYTES, COMPACT_FACTOR * this.#liveBytes)) this.#rewrite()
    } catch (err) {
      this.#fail(err)
    }
  }

  #fail (err: unknown): void {
    const error = err instanceof Error ? err : new Error(String(err))
    this.#failed = error.message
    this.#closed = true
    this.#pending = []
    this.#live.clear()
    this.#admitted.clear()
    clearTimeout(this.#admitTimer)
    try { closeSync(this.#fd) } catch { /* already unusable */ }
    this.#onFailed?.(error)
  }

  close (): void {
    if (this.#closed) return
    clearTimeout(this.#admitTimer)
    this.#writeAdmitted()
    this.flush()
    if (this.#closed) return // the last flush failed, and closed it
    this.#closed = true
    try { fsyncSync(this.#fd) } catch { /* best effort on the way out */ }
    closeSync(this.#fd)
  }

  #remember (txn: string, line: string): void {
    const old = this.#live.get(txn)
    if (old !== undefined) {
      this.#liveBytes -= old.length
      this.#live.delete(txn) // to the end: a compacted journal keeps the order of latest changes
    }
    this.#live.set(txn, line)
    this.#liveBytes += line.length
  }

  #forgetLine (txn: string): void {
    const old = this.#live.get(txn)
    if (old === undefined) return
    this.#liveBytes -= old.length
    this.#live.delete(txn)
  }

  /** Replace the journal with the live lines: write a new file, then rename it over the old. */
  #rewrite (): void {
    const tmp = this.path + '.tmp'
    const fd = openSync(tmp, 'w', 0o600)
    try {
      let buffer: string[] = []
      let size = 0
      this.#fileBytes = 0
      for (const line of this.#live.values()) {
        buffer.push(line)
        size += line.length
        if (size > 1 << 20) { this.#fileBytes += writeSync(fd, buffer.join('')); buffer = []; size = 0 }
      }
      if (buffer.length > 0) this.#fileBytes += writeSync(fd, buffer.join(''))
      fsyncSync(fd)
    } catch (err) {
      // The journal itself is untouched; a half-written copy must not hold the space a full disk lacks.
      closeSync(fd)
      try { unlinkSync(tmp) } catch { /* gone already */ }
      throw err
    }
    closeSync(fd)
    renameSync(tmp, this.path)
    closeSync(this.#fd)
    this.#fd = openSync(this.path, 'a', 0o600)
  }

  #schedule (): void {
    if (this.#scheduled) return
    this.#scheduled = true
    setImmediate(() => this.flush())
  }
}

/**
 * One journal line. Records, requests and callers are plain JSON; an outcome's value is
 * inline when JSON carries it exactly (strings, finite numbers, booleans, null), and
 * otherwise CBOR in base64 (Maps, BigInts, undefined, bytes, nested objects).
 */
interface SerializedTxn {
  t: string
  record: TxnRecord
  request: EvalRequest | ApplyRequest | { cbor: string }
  peerId: string
  caller: Caller
  settled?: Omit<Settled, 'value'> & { value?: unknown, cbor?: string }
}

function serialize (t: Txn): SerializedTxn {
  const request = t.request.kind === 'apply' && !plainJson(t.request.args) ? { cbor: b64(t.request) } : t.request
  const out: SerializedTxn = { t: t.record.txn, record: t.record, request, peerId: t.peerId, caller: t.caller }
  const s = t.settled
  if (s !== undefined) {
    if (s.ok && !inlineValue(s.value)) {
      const { value, ...rest } = s
      out.settled = { ...rest, cbor: b64(value) }
    } else {
      out.settled = s
    }
  }
  return out
}

function deserialize (e: SerializedTxn): StoredTxn {
  const request = 'cbor' in e.request ? decodeValue(Buffer.from(e.request.cbor, 'base64')) as EvalRequest | ApplyRequest : e.request
  const stored: StoredTxn = { record: e.record, request, peerId: e.peerId, caller: e.caller }
  if (e.settled !== undefined) {
    const { cbor, ...rest } = e.settled
    stored.settled = (cbor === undefined ? rest : { ...rest, value: decodeValue(Buffer.from(cbor, 'base64')) }) as Settled
  }
  return stored
}

function inlineValue (v: unknown): boolean {
  return typeof v === 'string' || typeof v === 'boolean' || v === null || (typeof v === 'number' && Number.isFinite(v))
}

function plainJson (args: unknown[]): boolean {
  return args.every(inlineValue)
}

function b64 (value: unknown): string {
  return Buffer.from(encodeValue(value)).toString('base64')
}

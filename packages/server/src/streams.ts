import type { OutputEvent, PolicyState, StreamEvent, TraceEvent, TxnRecord } from '@evalmesh/protocol'
import type { ServerConnection } from '@evalmesh/transport'
import { ownsTxn, type Caller } from './access.js'
import { recordView } from './txn-table.js'

/** Events are sent in batches, at most this often: a flood of transactions costs a subscriber ten frames a second. */
const FLUSH_MS = 100
/** A subscriber this far behind in reading is not sent more until it catches up (it keeps only the latest record of each txn). */
const MAX_BUFFERED_BYTES = 4 * 1024 * 1024
/** Pending events kept per subscriber besides txn records; older ones go first. */
const MAX_PENDING_EVENTS = 2000

interface Subscriber {
  conn: ServerConnection
  id: number
  caller: Caller
  /** Latest record of each txn changed since the last frame. */
  txns: Map<string, TxnRecord>
  other: StreamEvent[]
}

/**
 * The `subscribe` streams: what changed on the node, pushed to each subscriber as it
 * happens instead of polled. A subscriber sees what its caller may see (access.ts): an
 * operator everything, a client its own transactions and their trace events.
 */
export class Streams {
  readonly #subs = new Set<Subscriber>()
  #timer: NodeJS.Timeout | undefined

  get count (): number { return this.#subs.size }

  open (conn: ServerConnection, id: number, caller: Caller, backlog: TraceEvent[] = []): void {
    const sub: Subscriber = { conn, id, caller, txns: new Map(), other: [] }
    for (const event of backlog) this.#push(sub, { type: 'trace', event })
    this.#subs.add(sub)
    conn.once('close', () => this.#subs.delete(sub))
    this.#schedule()
  }

  txn (record: TxnRecord): void {
    if (this.#subs.size === 0) return
    for (const sub of this.#subs) {
      if (sub.caller.operator || ownsTxn(sub.caller, record.txn)) sub.txns.set(record.txn, record)
    }
    this.#schedule()
  }

  trace (event: TraceEvent): void {
    if (this.#subs.size === 0) return
    for (const sub of this.#subs) {
      if (sub.caller.operator || (event.txn !== undefined && ownsTxn(sub.caller, event.txn))) this.#push(sub, { type: 'trace', event })
    }
    this.#schedule()
  }

  /** Console output of a running txn, for the subscribers who may see it. */
  output (txn: string, text: string): void {
    if (this.#subs.size === 0) return
    for (const sub of this.#subs) {
      if (sub.caller.operator || ownsTxn(sub.caller, txn)) this.#push(sub, { type: 'output', txn, text })
    }
    this.#schedule()
  }

  policy (policy: PolicyState): void {
    for (const sub of this.#subs) this.#push(sub, { type: 'policy', policy })
    this.#schedule()
  }

  close (): void {
    clearTimeout(this.#timer)
    this.#subs.clear()
  }

  #push (sub: Subscriber, event: StreamEvent): void {
    sub.other.push(event)
    if (sub.other.length > MAX_PENDING_EVENTS) sub.other.shift()
  }

  #schedule (): void {
    if (this.#timer !== undefined || this.#subs.size === 0) return
    this.#timer = setTimeout(() => {
      this.#timer = undefined
      this.#flush()
    }, FLUSH_MS)
    this.#timer.unref()
  }

  #flush (): void {
    const now = Date.now()
    let behind = false
    for (const sub of this.#subs) {
      if (sub.conn.closed) { this.#subs.delete(sub); continue }
      if (sub.txns.size === 0 && sub.other.length === 0) continue
      if (sub.conn.bufferedBytes > MAX_BUFFERED_BYTES) { behind = true; continue }
      const events: StreamEvent[] = []
      for (const r of sub.txns.values()) events.push({ type: 'txn', record: recordView(r, now) })
      events.push(...sub.other)
      sub.txns.clear()
      sub.other = []
      try {
        sub.conn.sendEvents(sub.id, events)
      } catch {
        this.#subs.delete(sub) // the connection is going; nothing more to send it
      }
    }
    if (behind) this.#schedule()
  }
}

/**
 * Sends a run's console output, as the sandbox hands it over, to the connection whose
 * eval asked for it, as `output` events on that eval's id. A reader that has fallen
 * behind is not sent more: what it missed is counted in the next event's `dropped`
 * (and is in the outcome's `output` all the same), so a slow client costs the node no
 * more than its socket's buffer.
 */
export function outputRelay (conn: ServerConnection, id: number, txn: string): (text: string) => void {
  let dropped = 0
  return text => {
    if (conn.closed) return
    if (conn.bufferedBytes > MAX_BUFFERED_BYTES) { dropped += Buffer.byteLength(text); return }
    const event: OutputEvent = { type: 'output', txn, text }
    if (dropped > 0) { event.dropped = dropped; dropped = 0 }
    try {
      conn.sendEvents(id, [event])
    } catch { /* the connection is going; its outcome is kept for a re-fetch */ }
  }
}

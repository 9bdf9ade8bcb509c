import { EventEmitter } from 'node:events'
import type { TraceEvent, TraceEventKind } from '@evalmesh/protocol'
import { channels, ownerOf, publish, subscribeAll, txnOwner, EVENT_NAMES, EVENTS, type EventName } from './events.js'

export type { TraceEvent, TraceEventKind }

/** The trace keeps the wording as the node writes it; peers' text is escaped where it is shown. */
const asIs = (s: string): string => s

/** Events the trace ring records: every one with a trace kind in the table of events.ts. */
const TRACED: EventName[] = EVENT_NAMES.filter(n => EVENTS[n].trace !== null)

/**
 * What EVALSERVER.TRACE showed, as data: a bounded ring of every admission decision and
 * transaction step. Recording is off by default.
 *
 * The ring is one subscriber of the node's events (events.ts): `attachTrace(trace, nodeId)`
 * subscribes it to the channels, for that node's events only. It holds the subscription
 * only while it is on, so a node with tracing off pays nothing per event (and the
 * `subscribe` streams, which listen to 'event', get trace events only while it is on).
 *
 * `record()` still takes events directly, for code that has not moved to `publish()` yet;
 * a call site must do one or the other once the trace is attached, never both, or the
 * event is recorded twice.
 *
 * Events: 'event' (TraceEvent, owner: the peer id it belongs to, or undefined), for every
 * event recorded.
 */
export class Trace extends EventEmitter {
  on_ = false
  readonly #events: TraceEvent[] = []
  readonly #owners = new WeakMap<TraceEvent, string>()
  readonly #capacity: number
  #seq = 0
  #node: string | undefined
  #unsubscribe: (() => void) | undefined

  constructor (capacity = 2000) {
    super()
    this.#capacity = capacity
  }

  get enabled (): boolean { return this.on_ }
  set enabled (value: boolean) { this.setEnabled(value) }

  /** Switch recording on or off; `by` (who asked) goes into the trace:switched event. */
  setEnabled (value: boolean, by?: string): void {
    const changed = value !== this.on_
    this.on_ = value
    this.#sync()
    if (changed && this.#node !== undefined) publish(channels.traceSwitched, by === undefined ? { node: this.#node, on: value } : { node: this.#node, on: value, by })
  }

  /**
   * Record one event. `owner` is the peer id it belongs to (who may see it); by default the
   * owner of `txn`. Costs one test when the trace is off.
   */
  record (kind: TraceEventKind, detail: string, txn?: string, peer?: string, owner?: string): void {
    if (!this.on_) return
    const event: TraceEvent = { seq: ++this.#seq, time: Date.now(), kind, detail }
    if (txn !== undefined) event.txn = txn
    if (peer !== undefined) event.peer = peer
    const who = owner ?? (txn === undefined ? undefined : txnOwner(txn))
    if (who !== undefined) this.#owners.set(event, who)
    this.#events.push(event)
    if (this.#events.length > this.#capacity) this.#events.shift()
    this.emit('event', event, who)
  }

  /** Events after `seq`; with `visibleTo` (a peer id), only those belonging to that peer. */
  since (seq = 0, visibleTo?: string): TraceEvent[] {
    return this.#events.filter(e => e.seq > seq && (visibleTo === undefined || this.#owners.get(e) === visibleTo))
  }

  /** The peer id an event belongs to (the owner of its txn, or the peer of its connection). */
  ownerOf (event: TraceEvent): string | undefined {
    return this.#owners.get(event)
  }

  get lastSeq (): number { return this.#seq }

  clear (by?: string): void {
    this.#events.length = 0
    if (this.#node !== undefined) publish(channels.traceSwitched, by === undefined ? { node: this.#node, on: this.on_, cleared: true } : { node: this.#node, on: this.on_, cleared: true, by })
  }

  /** Feed the ring from the events of node `node` (a node id). Returns the detach. */
  attach (node: string): () => void {
    this.detach()
    this.#node = node
    this.#sync()
    return () => { if (this.#node === node) this.detach() }
  }

  detach (): void {
    this.#unsubscribe?.()
    this.#unsubscribe = undefined
    this.#node = undefined
  }

  get attached (): boolean { return this.#node !== undefined }

  /** Hold the channel subscription exactly while it is needed. */
  #sync (): void {
    const node = this.#node
    const want = node !== undefined && this.on_
    if (!want) {
      this.#unsubscribe?.()
      this.#unsubscribe = undefined
      return
    }
    if (this.#unsubscribe !== undefined) return
    this.#unsubscribe = subscribeAll(e => {
      if ((e.payload as { node?: string }).node !== node || e.spec.trace === null) return
      this.record(e.spec.trace, e.spec.detail(e.payload, asIs), e.spec.txn?.(e.payload), e.spec.peer?.(e.payload), ownerOf(e))
    }, TRACED)
  }
}

/**
 * Make `trace` one subscriber of the node's events (events.ts), for node `nodeId` only.
 * The server calls it once, after it publishes events instead of calling trace.record:
 *
 * ```ts
 * attachTrace(this.trace, this.id)
 * ```
 *
 * Returns the detach.
 */
export function attachTrace (trace: Trace, nodeId: string): () => void {
  return trace.attach(nodeId)
}

import { EventEmitter } from 'node:events'

/** What EVALSERVER.TRACE showed, as data: every admission decision and transaction step. */
export type TraceEventKind =
  | 'served' | 'refused' | 'declined' | 'busy' | 'queued' | 'started' | 'finished' | 'failed'
  | 'aborted' | 'lost' | 'policy' | 'connect' | 'disconnect' | 'offer' | 'error'

export interface TraceEvent {
  seq: number
  time: number
  kind: TraceEventKind
  txn?: string
  peer?: string
  detail: string
}

/**
 * A bounded ring of trace events. Recording is off by default and costs one
 * boolean test per call site when off. Events: 'event' (TraceEvent).
 */
export class Trace extends EventEmitter {
  on_ = false
  readonly #events: TraceEvent[] = []
  readonly #capacity: number
  #seq = 0

  constructor (capacity = 2000) {
    super()
    this.#capacity = capacity
  }

  get enabled (): boolean { return this.on_ }
  set enabled (value: boolean) { this.on_ = value }

  record (kind: TraceEventKind, detail: string, txn?: string, peer?: string): void {
    if (!this.on_) return
    const event: TraceEvent = { seq: ++this.#seq, time: Date.now(), kind, detail }
    if (txn !== undefined) event.txn = txn
    if (peer !== undefined) event.peer = peer
    this.#events.push(event)
    if (this.#events.length > this.#capacity) this.#events.shift()
    this.emit('event', event)
  }

  since (seq = 0): TraceEvent[] {
    return this.#events.filter(e => e.seq > seq)
  }

  get lastSeq (): number { return this.#seq }

  clear (): void { this.#events.length = 0 }
}

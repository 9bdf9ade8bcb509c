import { sessionKey } from '@evalmesh/sandbox'
import type { TxnTable, Txn } from './txn-table.js'

/** Where an eval runs: a session key in the sandbox, and whether its context is thrown away after. */
export interface Route { session: string, transient: boolean }

/** One admitted request waiting for, or holding, a slot. */
export interface Work {
  readonly txn: Txn
  /** The client's key id: quotas and fairness are per client. */
  readonly client: string
  /** eval: the session the request named (undefined: none); apply: not used. */
  readonly session: string | undefined
  readonly kind: 'eval' | 'apply'
  /** A form that provably finishes in microseconds (see isQuickForm): it may queue behind another quick one. */
  readonly quick: boolean
  /** Start it. Called once, when it gets a slot (or a place behind a quick run of its session). */
  readonly start: (route: Route | undefined) => void
}

export interface SchedulerLimits {
  /** Runs at once over all clients (sessions running, transient contexts, applies). */
  concurrency: number
  /** Runs at once for one client: the rest of the slots stay free for the others. */
  perClient: number
  /** Requests waiting, over all clients, before BUSY. */
  queueLength: number
  /** Requests one client may have waiting before BUSY. */
  perClientQueue: number
  /** A request whose estimated wait is longer than this is refused BUSY rather than queued. */
  maxWaitMs: number
}

/** Why a request is refused at the door, with an honest time to come back. */
export interface Refusal { code: 'BUSY', message: string, retryAfterMs: number }

interface SessionLine {
  /** Works handed to the sandbox for this session, oldest (the running one) first. */
  inFlight: Work[]
}

/**
 * Who runs next. Each client has its own FIFO queue and the clients take turns
 * (round robin), so one client's flood or twenty runaway loops hold at most
 * `perClient` slots and another client's quick form starts at the next free slot.
 *
 * Sessions keep their order: a request naming a session waits (in input, "held by"
 * the run ahead of it) until that session is free, except that quick forms are
 * pipelined behind a quick run, so the sandbox can batch them. A request naming no
 * session runs in the client's default session when that is free, and otherwise
 * in a fresh transient context: as in EVALSERVER, a user's status query is never
 * stuck behind the same user's lengthy form.
 */
export class Scheduler {
  readonly limits: SchedulerLimits
  readonly #table: TxnTable
  readonly #queues = new Map<string, Work[]>()
  /** Clients with queued work. */
  #turns: string[] = []
  /** When each client last started something (a turn counter): the least recent goes next. */
  readonly #served = new Map<string, number>()
  #turn = 0
  readonly #running = new Map<string, number>()
  readonly #sessions = new Map<string, SessionLine>()
  readonly #byTxn = new Map<Txn, { work: Work, session?: string, slot: boolean }>()
  #slots = 0
  #queued = 0
  #transients = 0
  /** Mean seconds a slot is held, smoothed: the basis of retry-after and the wait estimate. */
  #serviceMs = 50

  readonly #onStart: (t: Txn) => void

  /** `onStart` hears of every transaction that moves to running (the streams tell subscribers). */
  constructor (table: TxnTable, limits: SchedulerLimits, onStart: (t: Txn) => void = () => {}) {
    this.#table = table
    this.limits = limits
    this.#onStart = onStart
  }

  get running (): number { return this.#slots }
  get queued (): number { return this.#queued }
  runningOf (client: string): number { return this.#running.get(client) ?? 0 }
  queuedOf (client: string): number { return this.#queues.get(client)?.length ?? 0 }

  /**
   * Change the limits of a running scheduler (the control port's `limits` and `quota`):
   * what runs goes on; what waits starts as soon as the new limits let it.
   */
  setLimits (change: Partial<SchedulerLimits>): void {
    for (const [k, v] of Object.entries(change) as Array<[keyof SchedulerLimits, number | undefined]>) {
      if (v !== undefined) this.limits[k] = v
    }
    this.#pump()
  }

  /** Refuse what would wait too long, before anything is recorded. */
  refusal (client: string): Refusal | undefined {
    const mine = this.queuedOf(client)
    const { concurrency, queueLength, perClientQueue, maxWaitMs } = this.limits
    const free = this.#slots < concurrency && this.runningOf(client) < this.limits.perClient
    if (free && mine === 0) return undefined
    // Round robin: each turn of every waiting client frees about `concurrency` slots' worth of work.
    const clients = this.#turns.length + (this.#queues.has(client) ? 0 : 1)
    const estimateMs = Math.round(((mine + 1) * clients * this.#serviceMs) / Math.max(1, Math.min(concurrency, this.limits.perClient * clients)))
    let why: string | undefined
    if (this.#queued >= queueLength) why = `${this.#queued} requests are waiting, the most this node queues`
    else if (mine >= perClientQueue) why = `this client has ${mine} requests waiting, the most one client may queue`
    else if (estimateMs > maxWaitMs) why = `a new request would wait about ${estimateMs} ms, longer than the node's bound of ${maxWaitMs} ms`
    if (why === undefined) return undefined
    const retryAfterMs = Math.min(30_000, Math.max(50, Math.round(this.#serviceMs * Math.max(1, mine / Math.max(1, this.limits.perClient)))))
    return { code: 'BUSY', message: `busy (${this.#slots} running, ${this.#queued} queued): ${why}; retry after ${retryAfterMs} ms`, retryAfterMs }
  }

  submit (work: Work): void {
    let q = this.#queues.get(work.client)
    if (q === undefined) {
      q = []
      this.#queues.set(work.client, q)
      this.#turns.push(work.client)
    }
    q.push(work)
    this.#queued++
    this.#pump()
  }

  /** Take back a request that has not started; false if it is already running. */
  withdraw (t: Txn): boolean {
    const entry = this.#byTxn.get(t)
    if (entry !== undefined) return false
    for (const [client, q] of this.#queues) {
      const i = q.findIndex(w => w.txn === t)
      if (i < 0) continue
      q.splice(i, 1)
      this.#queued--
      if (q.length === 0) this.#dropClient(client)
      this.#pump()
      return true
    }
    return false
  }

  /** A started run has ended: free its slot and move its session along. */
  finished (t: Txn): void {
    const entry = this.#byTxn.get(t)
    if (entry === undefined) return
    this.#byTxn.delete(t)
    if (entry.slot) this.#release(entry.work, t)
    if (entry.session !== undefined) {
      const line = this.#sessions.get(entry.session)
      if (line !== undefined) {
        const at = line.inFlight.indexOf(entry.work)
        if (at >= 0) line.inFlight.splice(at, 1)
        if (at === 0 && line.inFlight.length > 0) {
          // The next pipelined run of the session starts now: it takes over the slot.
          const next = line.inFlight[0]!
          const e = this.#byTxn.get(next.txn)
          if (e !== undefined && !e.slot && entry.slot) {
            e.slot = true
            this.#take(next)
          }
          this.#markRunning(next.txn)
        }
        if (line.inFlight.length === 0) this.#sessions.delete(entry.session)
      }
    }
    this.#pump()
  }

  #release (work: Work, t: Txn): void {
    this.#slots--
    const n = (this.#running.get(work.client) ?? 1) - 1
    if (n > 0) this.#running.set(work.client, n)
    else {
      this.#running.delete(work.client)
      if (!this.#queues.has(work.client)) this.#served.delete(work.client) // forget clients that are gone
    }
    const held = t.record.startedAt === undefined ? 0 : Date.now() - t.record.startedAt
    this.#serviceMs = this.#serviceMs * 0.8 + Math.max(1, held) * 0.2
  }

  #take (work: Work): void {
    this.#slots++
    this.#running.set(work.client, (this.#running.get(work.client) ?? 0) + 1)
  }

  /**
   * Start what can start, least recently served client first: a client that has just
   * had a turn goes after every client that is waiting, whoever came first.
   */
  #pump (): void {
    for (;;) {
      let started = false
      // One waiting client (the common case) needs no ordering, so no copy and no sort.
      const line = this.#turns.length <= 1 ? this.#turns : [...this.#turns].sort((a, b) => (this.#served.get(a) ?? 0) - (this.#served.get(b) ?? 0))
      for (const client of line) {
        if (!this.#startOne(client)) continue
        this.#served.set(client, ++this.#turn)
        started = true
        break
      }
      if (!started) break
    }
    this.#explainWaits()
  }

  /** Start the first startable request of this client, if any. */
  #startOne (client: string): boolean {
    const q = this.#queues.get(client)
    if (q === undefined) return false
    const slotFree = this.#slots < this.limits.concurrency && this.runningOf(client) < this.limits.perClient
    const blocked = new Set<string>()
    for (let i = 0; i < q.length; i++) {
      const work = q[i]!
      const named = work.kind === 'eval' && work.session !== undefined ? sessionKey(client, work.session) : undefined
      if (named !== undefined && blocked.has(named)) continue
      const plan = this.#plan(work, named)
      if (plan === 'wait' || (plan.slot && !slotFree)) {
        if (named !== undefined) blocked.add(named)
        if (!slotFree && plan !== 'wait') return false // nothing after it may pass it for a slot either
        continue
      }
      q.splice(i, 1)
      this.#queued--
      if (q.length === 0) this.#dropClient(client)
      this.#dispatch(work, plan)
      return true
    }
    return false
  }

  /** Whether a work can start now, and how: with a slot of its own, or pipelined behind its session. */
  #plan (work: Work, named: string | undefined): 'wait' | { slot: boolean, route: Route | undefined } {
    if (work.kind === 'apply') return { slot: true, route: undefined }
    const key = named ?? sessionKey(work.client, 'default')
    const line = this.#sessions.get(key)
    if (line === undefined) return { slot: true, route: { session: key, transient: false } }
    if (work.quick && line.inFlight.every(w => w.quick)) return { slot: false, route: { session: key, transient: false } }
    if (named !== undefined) return 'wait'
    return { slot: true, route: { session: `${work.client}/~${++this.#transients}`, transient: true } }
  }

  #dispatch (work: Work, plan: { slot: boolean, route: Route | undefined }): void {
    const t = work.txn
    const route = plan.route
    clearWait(t.record) // what it waited for while queued
    const entry: { work: Work, session?: string, slot: boolean } = { work, slot: plan.slot }
    if (plan.slot) this.#take(work)
    if (route !== undefined) {
      t.record.session = route.transient ? 'transient' : route.session.slice(route.session.indexOf('/') + 1)
      if (!route.transient) {
        entry.session = route.session
        let line = this.#sessions.get(route.session)
        if (line === undefined) {
          line = { inFlight: [] }
          this.#sessions.set(route.session, line)
        }
        line.inFlight.push(work)
        if (line.inFlight.length > 1) {
          const head = line.inFlight[0]!.txn.record.txn
          t.record.waiting = `session ${t.record.session}, held by ${head}`
          t.record.heldBy = head
        }
      }
    }
    this.#byTxn.set(t, entry)
    if (t.record.heldBy === undefined) this.#markRunning(t)
    work.start(route)
  }

  #markRunning (t: Txn): void {
    clearWait(t.record)
    this.#table.start(t)
    this.#onStart(t)
  }

  #dropClient (client: string): void {
    this.#queues.delete(client)
    if (!this.#running.has(client)) this.#served.delete(client)
    const i = this.#turns.indexOf(client)
    if (i >= 0) this.#turns.splice(i, 1)
  }

  /** Say, on each waiting record, what it waits for: the status list shows it. */
  #explainWaits (): void {
    if (this.#queued === 0) return
    // This runs on every submit and finish while anything waits: build each text once per
    // call, and write a record only when its text changes.
    const capacity = `node at capacity: ${this.#slots} of ${this.limits.concurrency} running`
    for (const [client, q] of this.#queues) {
      const mine = this.runningOf(client)
      let quota: string | undefined
      for (const w of q) {
        const r = w.txn.record
        const named = w.kind === 'eval' && w.session !== undefined ? sessionKey(client, w.session) : undefined
        const ahead = named === undefined ? undefined : this.#sessions.get(named)?.inFlight[0]
        if (ahead !== undefined) {
          const head = ahead.txn.record.txn
          r.session = w.session
          if (r.heldBy !== head) {
            r.waiting = `session ${w.session}, held by ${head}`
            r.heldBy = head
          }
        } else {
          const why = mine >= this.limits.perClient ? (quota ??= `client quota: ${mine} running, the most one client may run at once`) : capacity
          if (r.waiting !== why) r.waiting = why
          if (r.heldBy !== undefined) r.heldBy = undefined
        }
      }
    }
  }
}

/**
 * Take off what a record waited for. The fields are set to undefined, never deleted: a
 * delete turns the record into a slow dictionary-mode object for the rest of its life
 * (measured: 98% of the records of a node at 64 in flight), which every later read and
 * its journal line pay for. Records leave the node through recordView, which drops them.
 */
function clearWait (r: Txn['record']): void {
  if (r.waiting !== undefined) r.waiting = undefined
  if (r.heldBy !== undefined) r.heldBy = undefined
}

import { randomBytes } from 'node:crypto'
import {
  EvalMeshError, RemoteEvalError, formatTxn,
  type EvalAck, type EvalLimits, type EvalOutcome, type StatusWhich, type TxnRecord
} from '@evalmesh/protocol'
import { TrustStore, defaultStateDir, loadIdentity, type Identity } from '@evalmesh/trust'
import { ClientConnection, type RequestBody } from '@evalmesh/transport'
import { formatHost, resolveHost, type Endpoint, type PeerLookup } from './host.js'
import { Broadcaster, noWillingServer, type BroadcastConfig, type Offer, type QueryHandle } from './broadcast.js'
import { fanOut, type FanOutOptions, type NodeOutcome } from './fanout.js'

export interface ClientInit {
  /** Where this client's key lives (default ~/.evalmesh or $EVALMESH_STATE_DIR). */
  stateDir?: string
  identity?: Identity
  trust?: TrustStore
  /** Resolves node names to addresses (peer table). */
  lookup?: PeerLookup
  connectTimeoutMs?: number
  /** How many times a BUSY (or MEGATEST_BUSY) refusal is retried, backing off (default 8). */
  busyRetries?: number
  /** Where broadcasts go (no host given). Without it, a call with no host is an error. */
  broadcast?: BroadcastConfig
  /** How long a broadcast waits for a willing node (default 3000 ms). */
  broadcastTimeoutMs?: number
}

export interface EvalAllOptions extends FanOutOptions {
  /** Fold each ok value: reduce(accumulator, value, outcome). */
  reduce?: (acc: unknown, value: unknown, outcome: NodeOutcome) => unknown
  initial?: unknown
  /** Called with each node's outcome as it arrives. */
  onResult?: (outcome: NodeOutcome) => void
  limits?: Partial<EvalLimits>
}

export interface EvalAllResult { txn: string, outcomes: NodeOutcome[], value: unknown }

export interface EvalOptions {
  /** Wait for the result (default). With false, resolve with the txn id once the node has acknowledged. */
  wait?: boolean
  /** Named persistent context on the node (default "default"). */
  session?: string
  limits?: Partial<EvalLimits>
  /** Give up waiting after this long (CLIENT_TIMEOUT). The transaction keeps running remotely. */
  timeoutMs?: number
  /** With no host: how long to wait for a willing node (default: the client's broadcastTimeoutMs). */
  broadcastTimeoutMs?: number
}

/** An eval/apply outcome as the node sent it; after a broadcast, also where it ran. */
export type EvalResult = (EvalOutcome | EvalAck) & {
  /** host:port of the node that took a broadcast request (absent for a directed one). */
  host?: string
}

export interface AbortOptions { reason?: string, mustExist?: boolean }

export interface PolicyChange { hosts?: string[], gags?: string[], gag?: string[], ungag?: string[] }

/**
 * The client: remoteEval / remoteApply / remoteAbort / fetchResult and friends.
 * Connections are opened on first use, authenticated, pooled per endpoint and
 * reused; a lost connection rejects its waiting calls at once with LOST.
 */
export class Client {
  readonly identity: Identity
  readonly trust: TrustStore
  /** This process's client id: node id + instance tag, so processes sharing a key never collide. */
  readonly clientId: string
  #seq = 0
  readonly #pool = new Map<string, Promise<ClientConnection>>()
  readonly #init: ClientInit
  #broadcaster: Broadcaster | undefined
  lookup: PeerLookup | undefined

  constructor (init: ClientInit = {}) {
    this.#init = init
    const stateDir = init.stateDir ?? defaultStateDir()
    this.identity = init.identity ?? loadIdentity(stateDir, { create: true })
    this.trust = init.trust ?? new TrustStore(stateDir, this.identity)
    this.clientId = `${this.identity.id}.${randomBytes(3).toString('hex')}`
    this.lookup = init.lookup
  }

  /** A fresh transaction id. */
  nextTxn (): string {
    return formatTxn({ client: this.clientId, seq: ++this.#seq })
  }

  resolve (host: string): Endpoint {
    return resolveHost(host, this.lookup)
  }

  /**
   * REMOTEVAL: evaluate `form` on `host`; resolves with the value (or the txn id when
   * wait is false). With no host, broadcast: at most one willing node runs it.
   */
  async remoteEval (form: string, host?: string | null, options: EvalOptions = {}): Promise<unknown> {
    const r = await this.evalDetailed(form, host, options)
    return 'value' in r ? r.value : r.txn
  }

  /** As remoteEval, but resolves with the whole outcome: value, console output, seconds, node, txn. */
  async evalDetailed (form: string, host?: string | null, options: EvalOptions = {}): Promise<EvalResult> {
    const body: RequestBody = { kind: 'eval', txn: this.nextTxn(), form, wait: options.wait ?? true }
    if (options.session !== undefined) body.session = options.session
    if (options.limits !== undefined) body.limits = options.limits
    return await this.#submit(body, host, options) as EvalResult
  }

  /** REMOTEAPPLY: call the function the node registered under `fn`. */
  async remoteApply (fn: string, args: unknown[], host?: string | null, options: EvalOptions = {}): Promise<unknown> {
    const r = await this.applyDetailed(fn, args, host, options)
    return 'value' in r ? r.value : r.txn
  }

  async applyDetailed (fn: string, args: unknown[], host?: string | null, options: EvalOptions = {}): Promise<EvalResult> {
    const body: RequestBody = { kind: 'apply', txn: this.nextTxn(), fn, args, wait: options.wait ?? true }
    if (options.limits !== undefined) body.limits = options.limits
    return await this.#submit(body, host, options) as EvalResult
  }

  /**
   * REMOTEABORT: abort `txn` on `host`. A bare sequence number is taken as one of this
   * client's transactions, as EVALSERVER consed the local host onto a bare id.
   */
  async remoteAbort (txn: string | number, host: string, options: AbortOptions = {}): Promise<{ txn: string | null, aborted: boolean, state: string, reason: string }> {
    const body: RequestBody = { kind: 'abort', txn }
    if (typeof txn === 'number') body.client = this.clientId
    if (options.reason !== undefined) body.reason = options.reason
    if (options.mustExist !== undefined) body.mustExist = options.mustExist
    return await this.request(host, body) as { txn: string | null, aborted: boolean, state: string, reason: string }
  }

  /** Re-fetch the result of a transaction by id (e.g. after a lost connection or wait: false). */
  async fetchResult (txn: string, host: string, options: { wait?: boolean, timeoutMs?: number } = {}): Promise<EvalOutcome> {
    const body: RequestBody = { kind: 'result', txn }
    if (options.wait !== undefined) body.wait = options.wait
    return await this.request(host, body, options.timeoutMs) as EvalOutcome
  }

  async status (host: string, options: { which?: StatusWhich, id?: string | number, limit?: number } = {}): Promise<TxnRecord[]> {
    const body: RequestBody = { kind: 'status' }
    if (options.which !== undefined) body.which = options.which
    if (options.id !== undefined) body.txn = options.id
    if (options.limit !== undefined) body.limit = options.limit
    return await this.request(host, body) as TxnRecord[]
  }

  async describe (host: string): Promise<Record<string, unknown>> {
    return await this.request(host, { kind: 'describe' }) as Record<string, unknown>
  }

  async ping (host: string): Promise<{ time: number, name: string, id: string }> {
    return await this.request(host, { kind: 'ping' }) as { time: number, name: string, id: string }
  }

  /** Forget this client's persistent context on `host`. */
  async reset (host: string, session?: string): Promise<void> {
    const body: RequestBody = { kind: 'reset' }
    if (session !== undefined) body.session = session
    await this.request(host, body)
  }

  async policy (host: string, change: PolicyChange = {}): Promise<{ hosts: string[], gags: string[] }> {
    return await this.request(host, { kind: 'policy', ...change }) as { hosts: string[], gags: string[] }
  }

  async trace (host: string, options: { on?: boolean, since?: number, clear?: boolean } = {}): Promise<{ on: boolean, events: unknown[], lastSeq: number }> {
    return await this.request(host, { kind: 'trace', ...options }) as { on: boolean, events: unknown[], lastSeq: number }
  }

  /** Send any request to `host` over a pooled connection. */
  async request (host: string | Endpoint, body: RequestBody, timeoutMs?: number): Promise<unknown> {
    const endpoint = typeof host === 'string' ? this.resolve(host) : host
    const conn = await this.connection(endpoint)
    return await conn.request(body, timeoutMs === undefined ? {} : { timeoutMs })
  }

  /** The pooled, authenticated connection to an endpoint (opened on first use). */
  async connection (endpoint: Endpoint): Promise<ClientConnection> {
    const key = `${endpoint.host}:${endpoint.port}`
    let p = this.#pool.get(key)
    if (p === undefined) {
      const opts: Parameters<typeof ClientConnection.open>[0] = {
        host: endpoint.host, port: endpoint.port, identity: this.identity, trust: this.trust,
        connectTimeoutMs: this.#init.connectTimeoutMs ?? 5000
      }
      if (endpoint.id !== undefined) opts.expectId = endpoint.id
      p = ClientConnection.open(opts)
      this.#pool.set(key, p)
      p.then(conn => conn.once('close', () => { if (this.#pool.get(key) === p) this.#pool.delete(key) }),
        () => { if (this.#pool.get(key) === p) this.#pool.delete(key) })
    }
    return await p
  }

  /**
   * Fan-out: run `form` on every willing node and collect, per node, its outcome
   * (ok with the value, error, refused, timeout or lost); `reduce` folds the values.
   */
  async remoteEvalAll (form: string, options: EvalAllOptions = {}): Promise<EvalAllResult> {
    const body: RequestBody & { txn: string } = { kind: 'eval', txn: this.nextTxn(), form, wait: true }
    if (options.session !== undefined) body.session = options.session
    if (options.limits !== undefined) body.limits = options.limits
    return await this.#collect(body, options)
  }

  async remoteApplyAll (fn: string, args: unknown[], options: EvalAllOptions = {}): Promise<EvalAllResult> {
    const body: RequestBody & { txn: string } = { kind: 'apply', txn: this.nextTxn(), fn, args, wait: true }
    if (options.limits !== undefined) body.limits = options.limits
    return await this.#collect(body, options)
  }

  /** The outcomes of a fan-out as an async iterable, in the order they arrive. */
  evalAllStream (form: string, options: FanOutOptions = {}): AsyncGenerator<NodeOutcome> {
    const body: RequestBody & { txn: string } = { kind: 'eval', txn: this.nextTxn(), form, wait: true }
    if (options.session !== undefined) body.session = options.session
    return fanOut(this, this.#requireBroadcaster(), body, options)
  }

  async #collect (body: RequestBody & { txn: string }, options: EvalAllOptions): Promise<EvalAllResult> {
    const outcomes: NodeOutcome[] = []
    let value = options.initial
    for await (const o of fanOut(this, this.#requireBroadcaster(), body, options)) {
      outcomes.push(o)
      if (o.status === 'ok' && options.reduce !== undefined) value = options.reduce(value, o.value, o)
      options.onResult?.(o)
    }
    return { txn: body.txn, outcomes, value }
  }

  /** Counters of the broadcast datagrams this client received (accepted and dropped). */
  broadcastCounters (): Broadcaster['counters'] | undefined {
    return this.#broadcaster?.counters
  }

  /** Close every pooled connection and the broadcast socket. */
  close (): void {
    for (const p of this.#pool.values()) p.then(c => c.close(), () => {})
    this.#pool.clear()
    this.#broadcaster?.close()
  }

  #requireBroadcaster (): Broadcaster {
    if (this.#init.broadcast === undefined) {
      throw new EvalMeshError('UNKNOWN_HOST', 'no host given and broadcast is not configured: pass a host, or create the client with { broadcast: { interface | targets } } (the CLI does this from the local node)')
    }
    this.#broadcaster ??= new Broadcaster(this.identity, this.trust, this.#init.broadcast)
    return this.#broadcaster
  }

  /**
   * Broadcast: take the first offer (the least loaded node answers first), claim it over
   * TCP, release the rest. Once the claimed request is sent the txn is bound to that node:
   * a lost connection is reported, never retried elsewhere, so at most one node runs it.
   */
  async #broadcastSubmit (body: RequestBody & { txn: string }, options: EvalOptions): Promise<unknown> {
    const broadcaster = this.#requireBroadcaster()
    const waitMs = options.broadcastTimeoutMs ?? this.#init.broadcastTimeoutMs ?? 3000
    const deadline = Date.now() + waitMs
    const tried = new Set<string>()
    while (true) {
      const offer = await this.#firstOffer(broadcaster, body.txn, deadline, tried)
      if (offer === undefined) throw noWillingServer(body.txn, waitMs, broadcaster.config)
      tried.add(offer.node.id)
      let conn
      try {
        conn = await this.connection({ host: offer.address, port: offer.port, id: offer.node.id, label: offer.node.name })
      } catch {
        void broadcaster.release(offer)
        continue // nothing was sent: another node may take it
      }
      try {
        const r = await conn.request({ ...body, claim: offer.token } as RequestBody, options.timeoutMs === undefined ? {} : { timeoutMs: options.timeoutMs }) as EvalResult
        r.host = formatHost(offer.address, offer.port)
        return r
      } catch (err) {
        // Refused or busy at admission means it did not run there: safe to ask again.
        if (err instanceof RemoteEvalError && (err.code === 'REFUSED' || err.code === 'BUSY') && Date.now() < deadline) continue
        if (err instanceof EvalMeshError && (err.code === 'LOST' || err.code === 'CLIENT_TIMEOUT')) {
          err.data.txn = body.txn
          err.data.node = offer.node.name
          err.message += ` (txn ${body.txn} on ${offer.node.name} at ${offer.address}:${offer.port}; fetch its result later with fetchResult)`
        }
        throw err
      }
    }
  }

  /**
   * The offer to claim: of those that arrive in the same I/O turn as the first, the least
   * loaded one, ties broken at random (so a burst of broadcasts spreads over idle nodes).
   */
  async #firstOffer (broadcaster: Broadcaster, txn: string, deadline: number, skip: Set<string>): Promise<Offer | undefined> {
    return await new Promise<Offer | undefined>((resolve) => {
      const candidates: Offer[] = []
      let chosen: Offer | undefined
      let handle: QueryHandle | undefined
      const choose = (): void => {
        const load = (o: Offer): number => (o.load.running + o.load.queued + (o.load.held ?? 0)) / Math.max(1, o.load.concurrency)
        const best = Math.min(...candidates.map(load))
        const least = candidates.filter(o => load(o) === best)
        chosen = least[Math.floor(Math.random() * least.length)]!
        void broadcaster.releaseAll(txn, chosen.node.id)
        resolve(chosen)
        // Stop asking, but listen a moment longer to release late offers.
        handle?.quiet()
        setTimeout(() => handle?.stop(), 250).unref()
      }
      void broadcaster.query(txn, 'one', deadline, (event) => {
        if (event.kind !== 'offer') return
        const offer = event.offer
        if (skip.has(offer.node.id)) { void broadcaster.release(offer); return }
        if (chosen !== undefined) return // a late offer: the release already sent covers it
        candidates.push(offer)
        if (candidates.length === 1) setImmediate(choose)
      }, () => { if (chosen === undefined && candidates.length === 0) resolve(undefined) }).then(h => { handle = h; if (chosen !== undefined) h.quiet() })
    })
  }

  async #submit (body: RequestBody & { txn: string }, host: string | null | undefined, options: EvalOptions): Promise<unknown> {
    if (host === undefined || host === null || host === '') return await this.#broadcastSubmit(body, options)
    const endpoint = this.resolve(host)
    const retries = this.#init.busyRetries ?? 8
    const deadline = options.timeoutMs === undefined ? Infinity : Date.now() + options.timeoutMs
    for (let attempt = 0; ; attempt++) {
      try {
        const remaining = deadline === Infinity ? undefined : Math.max(1, deadline - Date.now())
        return await this.request(endpoint, body, remaining)
      } catch (err) {
        // BUSY is a refusal before admission, so a retry with the same txn id is safe.
        if (err instanceof RemoteEvalError && err.code === 'BUSY' && attempt < retries) {
          const wait = jitter(Math.min(Number(err.data.retryAfterMs ?? 100), 10_000))
          if (Date.now() + wait < deadline) { await sleep(wait); continue }
        }
        // A Megatest area past its load limit did nothing, but the node recorded a failed
        // transaction: retry under a new txn id. Megatest's hint (requests over the limit,
        // as seconds) is only a ceiling: back off exponentially from 25 ms below it.
        if (err instanceof RemoteEvalError && err.code === 'MEGATEST_BUSY' && attempt < retries) {
          const ceiling = Math.max(25, Number(err.data.wait ?? 1) * 1000)
          const wait = jitter(Math.min(ceiling, 25 * 2 ** attempt, 5000))
          if (Date.now() + wait < deadline) { await sleep(wait); body.txn = this.nextTxn(); continue }
        }
        if (err instanceof EvalMeshError && (err.code === 'LOST' || err.code === 'CLIENT_TIMEOUT')) {
          err.data.txn = body.txn
          err.message += ` (txn ${body.txn}; fetch its result later with fetchResult)`
        }
        throw err
      }
    }
  }
}

/** Spread retries of clients that were refused together: 50% to 150% of `ms`. */
function jitter (ms: number): number {
  return Math.round(ms * (0.5 + Math.random()))
}

function sleep (ms: number): Promise<void> {
  return new Promise(resolve => setTimeout(resolve, ms))
}


import { randomBytes } from 'node:crypto'
import { isIP, type Socket } from 'node:net'
import {
  EvalMeshError, RemoteEvalError, formatTxn, retryAfterMs, retryOf,
  type AbortResult, type DescribeReply, type EvalAck, type EvalLimits, type EvalOutcome, type PingReply, type PolicyState,
  type ReplyOf, type RequestBody, type RequestKind, type StatusWhich, type StreamEvent, type TraceReply, type TxnRecord
} from '@evalmesh/protocol'
import { TrustStore, defaultStateDir, loadIdentity, type Identity } from '@evalmesh/trust'
import { ClientConnection, type IntegrityMode, type RequestOptions } from '@evalmesh/transport'
import { NatsCarrier, type NatsConfig } from '@evalmesh/nats'
import { formatHost, resolveHost, type Endpoint, type PeerLookup } from './host.js'
import type { TxnBook } from './txn-book.js'
import { Broadcaster, type BroadcastConfig, type DatagramCarrier } from './broadcast.js'
import { claimOne, type ClaimBody } from './claim.js'
import { fanOut, type FanOutOptions, type NodeOutcome } from './fanout.js'

export interface ClientInit {
  /** Where this client's key lives (default ~/.evalmesh or $EVALMESH_STATE_DIR). */
  stateDir?: string
  identity?: Identity
  trust?: TrustStore
  /** Resolves node names to addresses (peer table). */
  lookup?: PeerLookup
  /**
   * Nodes to ask, in order, for a name that `lookup` does not know: their peer tables
   * hold what they discovered by mDNS (PROTOCOL.md §5.5) and their peers files. The CLI
   * passes the nodes started from its state dir, so `--host NAME` reaches a LAN peer.
   */
  peerTables?: () => Endpoint[]
  connectTimeoutMs?: number
  /**
   * Liveness (PROTOCOL.md §8): while calls wait on a connection, ping the node after this
   * long without a byte from it (default 1000 ms; 0 turns the heartbeat off)...
   */
  heartbeatIntervalMs?: number
  /** ...and fail the waiting calls with LOST after this long with nothing at all (default 5000 ms). */
  heartbeatTimeoutMs?: number
  /** Frame integrity on plain connections (PROTOCOL.md §2.4): `auto` (default) all but loopback ones, `always` loopback ones too. */
  integrity?: IntegrityMode
  /**
   * Connect with TLS 1.3 (PROTOCOL.md §2.5) to every node, or (`'peers'`, the default) to
   * those whose peer entry says `tls`. A certificate is good when it is over the key the
   * node proves (`serve --tls`), or when it verifies against `ca` (PEM) or Node's CA store.
   */
  tls?: boolean | 'peers' | { ca?: string | Buffer }
  /** How many times a BUSY (or MEGATEST_BUSY) refusal is retried, backing off (default 8). */
  busyRetries?: number
  /** Where broadcasts go (no host given). Without it (and without `nats`), a call with no host is an error. */
  broadcast?: BroadcastConfig
  /**
   * A NATS backbone (PROTOCOL.md §9): broadcasts and fan-outs also reach the nodes on it,
   * and a node name no direct route is known for is reached through it. Connected on
   * first use; every connection over it is authenticated end to end as over TCP.
   */
  nats?: NatsConfig
  /** How long a broadcast waits for a willing node (default 3000 ms). */
  broadcastTimeoutMs?: number
  /**
   * Where sequence numbers come from and where each transaction went (the CLI's is in the
   * state dir, so numbers are unique across its processes and `abort 17` finds the node).
   */
  book?: TxnBook
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
  /**
   * The form's console output as it happens (eval with wait only): chunks in order, at most
   * every 50 ms; `dropped` counts bytes the node skipped because this client read too
   * slowly. The outcome's `output` still holds all of it.
   */
  onOutput?: (text: string, dropped: number) => void
}

export interface FetchOptions {
  /** Wait for a transaction still queued or running (else TXN_NOT_DONE). */
  wait?: boolean
  timeoutMs?: number
  /** While waiting, the run's console output: what was written so far, then as it happens (as EvalOptions.onOutput). */
  onOutput?: EvalOptions['onOutput']
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
  readonly #peerTables = new Map<string, { at: number, peers: Promise<ReplyOf<'peers'>> }>()
  readonly #init: ClientInit
  #broadcaster: Broadcaster | undefined
  #nats: Promise<NatsCarrier> | undefined
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
    return formatTxn({ client: this.clientId, seq: this.#init.book?.nextSeq() ?? ++this.#seq })
  }

  /** The book of this client's transactions, when it keeps one. */
  get book (): TxnBook | undefined { return this.#init.book }

  /** What `host` names by this client's own lookup: `host:port`, a peers-file name, a known address. */
  resolve (host: string): Endpoint {
    return resolveHost(host, this.lookup)
  }

  /**
   * Like resolve, and a name it does not know is looked up in the peer tables of
   * `peerTables` (what they discovered: its id, and `tls` when the node advertises it).
   * UNKNOWN_HOST when none of them knows it either.
   */
  async locate (host: string): Promise<Endpoint> {
    try {
      return this.resolve(host)
    } catch (err) {
      const name = host.trim()
      const tables = this.#init.peerTables?.() ?? []
      const nats = this.#init.nats !== undefined
      if (!(err instanceof EvalMeshError) || err.code !== 'UNKNOWN_HOST' || !isPeerName(name) || (tables.length === 0 && !nats)) throw err
      let viaNats: Endpoint | undefined
      for (const table of tables) {
        const peers = await this.#peersOf(table)
        const peer = peers.find(p => p.name === name)
        if (peer === undefined) continue
        // A node the local node only saw on NATS: reached through NATS, if this client is on it.
        if (peer.source === 'nats') { viaNats ??= { host: name, port: 0, id: peer.id, label: name, via: 'nats' }; continue }
        const endpoint: Endpoint = { host: peer.address, port: peer.port, id: peer.id, label: name }
        if (peer.caps.includes('tls')) endpoint.tls = true
        return endpoint
      }
      // No direct route known: through the backbone, by name (the handshake proves who answers).
      if (nats) return viaNats ?? { host: name, port: 0, label: name, via: 'nats' }
      if (viaNats !== undefined) {
        throw new EvalMeshError('UNKNOWN_HOST', `"${name}" is a node seen only on a NATS backbone, and this client is not on it: give the backbone's servers (--nats URL, or { nats: { servers } })`, { host: name })
      }
      throw new EvalMeshError('UNKNOWN_HOST', `"${name}" is neither host:port nor a peer name known here: not in the peers file, and ${tables.map(t => t.label).join(', ')} did not discover it`, { host: name })
    }
  }

  /** A node's peer table, asked at most every 2 s; a node that cannot answer knows no one. */
  async #peersOf (table: Endpoint): Promise<ReplyOf<'peers'>> {
    const key = `${table.host}:${table.port}`
    const cached = this.#peerTables.get(key)
    if (cached !== undefined && Date.now() - cached.at < 2000) return await cached.peers
    const peers = this.request(table, { kind: 'peers' }, 3000).catch(() => [])
    this.#peerTables.set(key, { at: Date.now(), peers })
    return await peers
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
    const body: ClaimBody = { kind: 'eval', txn: this.nextTxn(), form, wait: options.wait ?? true }
    if (options.session !== undefined) body.session = options.session
    if (options.limits !== undefined) body.limits = options.limits
    return await this.#submit(body, host, options)
  }

  /** REMOTEAPPLY: call the function the node registered under `fn`. */
  async remoteApply (fn: string, args: unknown[], host?: string | null, options: EvalOptions = {}): Promise<unknown> {
    const r = await this.applyDetailed(fn, args, host, options)
    return 'value' in r ? r.value : r.txn
  }

  async applyDetailed (fn: string, args: unknown[], host?: string | null, options: EvalOptions = {}): Promise<EvalResult> {
    const body: ClaimBody = { kind: 'apply', txn: this.nextTxn(), fn, args, wait: options.wait ?? true }
    if (options.limits !== undefined) body.limits = options.limits
    return await this.#submit(body, host, options)
  }

  /**
   * REMOTEABORT: abort `txn` on `host`. A bare sequence number is taken as one of this
   * client's transactions, as EVALSERVER consed the local host onto a bare id.
   */
  async remoteAbort (txn: string | number, host: string, options: AbortOptions = {}): Promise<AbortResult> {
    // A bare number the book knows is one of this user's, from any process: its full id.
    const known = typeof txn === 'number' ? this.#init.book?.find(txn) : undefined
    const body: RequestBody<'abort'> = { kind: 'abort', txn: known?.txn ?? txn }
    if (typeof body.txn === 'number') body.client = this.clientId
    if (options.reason !== undefined) body.reason = options.reason
    if (options.mustExist !== undefined) body.mustExist = options.mustExist
    return await this.request(host, body)
  }

  /** Re-fetch the result of a transaction by id (e.g. after a lost connection or wait: false). */
  async fetchResult (txn: string, host: string, options: FetchOptions = {}): Promise<EvalOutcome> {
    const body: RequestBody<'result'> = { kind: 'result', txn }
    if (options.wait !== undefined) body.wait = options.wait
    const request: RequestOptions = {}
    if (options.timeoutMs !== undefined) request.timeoutMs = options.timeoutMs
    if (options.onOutput !== undefined && options.wait === true) {
      body.stream = true
      request.onEvents = outputListener(options.onOutput, () => txn)
    }
    return await this.request(host, body, request)
  }

  async status (host: string, options: { which?: StatusWhich, id?: string | number, limit?: number } = {}): Promise<TxnRecord[]> {
    const body: RequestBody<'status'> = { kind: 'status' }
    if (options.which !== undefined) body.which = options.which
    if (options.id !== undefined) body.txn = options.id
    if (options.limit !== undefined) body.limit = options.limit
    return await this.request(host, body)
  }

  async describe (host: string): Promise<DescribeReply> {
    return await this.request(host, { kind: 'describe' })
  }

  async ping (host: string): Promise<PingReply> {
    return await this.request(host, { kind: 'ping' })
  }

  /** Forget this client's persistent context on `host`. */
  async reset (host: string, session?: string): Promise<void> {
    const body: RequestBody<'reset'> = { kind: 'reset' }
    if (session !== undefined) body.session = session
    await this.request(host, body)
  }

  async policy (host: string, change: PolicyChange = {}): Promise<PolicyState> {
    return await this.request(host, { kind: 'policy', ...change })
  }

  async trace (host: string, options: { on?: boolean, since?: number, clear?: boolean } = {}): Promise<TraceReply> {
    return await this.request(host, { kind: 'trace', ...options })
  }

  /**
   * Follow what happens on `host` (PROTOCOL.md §3.11): `onEvents` gets batches of
   * transaction records as they change list, trace events and policy changes, as this
   * client may see them, until `close()` or the connection drops (then `onClose`).
   */
  async subscribe (host: string, onEvents: (events: StreamEvent[]) => void, options: { since?: number, onClose?: () => void } = {}): Promise<{ lastSeq: number, close: () => void }> {
    const conn = await this.connection(await this.locate(host))
    const opts: { since?: number } = {}
    if (options.since !== undefined) opts.since = options.since
    const stream = await conn.subscribe(onEvents, opts)
    const onClose = options.onClose
    if (onClose !== undefined) conn.once('close', onClose)
    return { lastSeq: stream.lastSeq, close: () => { stream.close(); if (onClose !== undefined) conn.off('close', onClose) } }
  }

  /** Send any request to `host` over a pooled connection; resolves with the reply of its kind. */
  async request<K extends RequestKind> (host: string | Endpoint, body: RequestBody & { kind: K }, timeoutMs?: number | RequestOptions): Promise<ReplyOf<K>> {
    const endpoint = typeof host === 'string' ? await this.locate(host) : host
    const conn = await this.connection(endpoint)
    return await conn.request<K>(body, typeof timeoutMs === 'object' ? timeoutMs : timeoutMs === undefined ? {} : { timeoutMs })
  }

  /** The pooled, authenticated connection to an endpoint (opened on first use). */
  async connection (endpoint: Endpoint): Promise<ClientConnection> {
    const key = endpoint.via === 'nats' ? `nats:${endpoint.id ?? endpoint.host}` : `${endpoint.host}:${endpoint.port}`
    let p = this.#pool.get(key)
    if (p === undefined) {
      const opts: Parameters<typeof ClientConnection.open>[0] = {
        host: endpoint.host, port: endpoint.port, identity: this.identity, trust: this.trust,
        connectTimeoutMs: this.#init.connectTimeoutMs ?? 5000
      }
      if (this.#init.heartbeatIntervalMs !== undefined) opts.heartbeatIntervalMs = this.#init.heartbeatIntervalMs
      if (this.#init.heartbeatTimeoutMs !== undefined) opts.heartbeatTimeoutMs = this.#init.heartbeatTimeoutMs
      if (this.#init.integrity !== undefined) opts.integrity = this.#init.integrity
      const tls = this.#init.tls ?? 'peers'
      if (tls === true || (tls === 'peers' && endpoint.tls === true)) opts.tls = {}
      else if (typeof tls === 'object') opts.tls = tls
      if (endpoint.id !== undefined) opts.expectId = endpoint.id
      if (endpoint.via === 'nats') {
        const target = { name: endpoint.host, ...(endpoint.id === undefined ? {} : { id: endpoint.id }) }
        opts.carrier = { where: `${endpoint.host} via NATS`, open: async (timeoutMs) => await (await this.natsCarrier()).openStream(target, timeoutMs) as unknown as Socket }
      }
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
    const body: ClaimBody = { kind: 'eval', txn: this.nextTxn(), form, wait: true }
    if (options.session !== undefined) body.session = options.session
    if (options.limits !== undefined) body.limits = options.limits
    return await this.#collect(body, options)
  }

  async remoteApplyAll (fn: string, args: unknown[], options: EvalAllOptions = {}): Promise<EvalAllResult> {
    const body: ClaimBody = { kind: 'apply', txn: this.nextTxn(), fn, args, wait: true }
    if (options.limits !== undefined) body.limits = options.limits
    return await this.#collect(body, options)
  }

  /** The outcomes of a fan-out as an async iterable, in the order they arrive. */
  evalAllStream (form: string, options: FanOutOptions = {}): AsyncGenerator<NodeOutcome> {
    const body: ClaimBody = { kind: 'eval', txn: this.nextTxn(), form, wait: true }
    if (options.session !== undefined) body.session = options.session
    return fanOut(this, this.#requireBroadcaster(), body, options)
  }

  async #collect (body: ClaimBody, options: EvalAllOptions): Promise<EvalAllResult> {
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

  /** Close every pooled connection, the broadcast socket and the NATS connection. */
  close (): void {
    const closing = [...this.#pool.values()].map(async p => await p.then(c => c.close(), () => {}))
    this.#pool.clear()
    this.#broadcaster?.close()
    const nats = this.#nats
    this.#nats = undefined
    // The streams' FIN goes out before the NATS connection drains and closes.
    if (nats !== undefined) void Promise.all(closing).then(async () => await (await nats).close()).catch(() => {})
  }

  /** The connection to the NATS backbone (ClientInit.nats), made on first use. */
  async natsCarrier (): Promise<NatsCarrier> {
    const config = this.#init.nats
    if (config === undefined) throw new EvalMeshError('UNKNOWN_HOST', 'this client is not on a NATS backbone: create it with { nats: { servers } } (the CLI: --nats URL)')
    if (this.#nats === undefined) {
      const p = NatsCarrier.connect(config, {}, `evalmesh client ${this.identity.name}`)
      this.#nats = p
      p.catch(() => { if (this.#nats === p) this.#nats = undefined })
    }
    return await this.#nats
  }

  #requireBroadcaster (): Broadcaster {
    if (this.#init.broadcast === undefined && this.#init.nats === undefined) {
      throw new EvalMeshError('UNKNOWN_HOST', 'no host given and broadcast is not configured: pass a host, or create the client with { broadcast: { interface | targets } } or { nats } (the CLI does this from the local node)')
    }
    this.#broadcaster ??= new Broadcaster(this.identity, this.trust, this.#init.broadcast ?? { targets: [] }, this.#init.nats === undefined ? undefined : this.#natsDatagrams())
    return this.#broadcaster
  }

  /** Broadcast datagrams over NATS (PROTOCOL.md §9.4): to the mesh subject, answers to one inbox. */
  #natsDatagrams (): DatagramCarrier {
    let carrier: NatsCarrier | undefined
    let inbox: string | undefined
    return {
      describe: `on NATS mesh ${this.#init.nats?.mesh ?? 'default'}`,
      open: async (onDatagram) => {
        carrier = await this.natsCarrier()
        inbox = carrier.inbox(onDatagram)
      },
      broadcast: (datagram) => { if (carrier !== undefined) carrier.publish(carrier.subjects.broadcast, datagram, inbox) },
      sendTo: (nodeId, datagram) => { if (carrier !== undefined) carrier.publish(carrier.subjects.release(nodeId), datagram) }
    }
  }

  /**
   * Broadcast (the claim primitive, claim.ts): once the claimed request is sent the txn is
   * bound to that node: a lost connection is reported, never retried elsewhere, so at most
   * one node runs it.
   */
  async #broadcastSubmit (body: ClaimBody, options: EvalOptions): Promise<EvalResult> {
    const broadcaster = this.#requireBroadcaster()
    const waitMs = options.broadcastTimeoutMs ?? this.#init.broadcastTimeoutMs ?? 3000
    const startedAt = Date.now()
    const claimOptions: Parameters<typeof claimOne>[3] = { deadline: startedAt + waitMs, startedAt }
    if (options.timeoutMs !== undefined) claimOptions.timeoutMs = options.timeoutMs
    const onEvents = streamedOutput(body, options)
    if (onEvents !== undefined) claimOptions.onEvents = onEvents
    const { reply, host } = await claimOne(this, broadcaster, body, claimOptions)
    this.#init.book?.record(reply.txn, host)
    return { ...reply, host }
  }

  async #submit (body: ClaimBody, host: string | null | undefined, options: EvalOptions): Promise<EvalResult> {
    if (host === undefined || host === null || host === '') return await this.#broadcastSubmit(body, options)
    const endpoint = await this.locate(host)
    const retries = this.#init.busyRetries ?? 8
    const deadline = options.timeoutMs === undefined ? Infinity : Date.now() + options.timeoutMs
    const onEvents = streamedOutput(body, options)
    for (let attempt = 0; ; attempt++) {
      try {
        const request: RequestOptions = {}
        if (deadline !== Infinity) request.timeoutMs = Math.max(1, deadline - Date.now())
        if (onEvents !== undefined) request.onEvents = onEvents
        const reply = await this.request(endpoint, body, request)
        this.#init.book?.record(reply.txn, formatHost(endpoint.host, endpoint.port))
        return reply
      } catch (err) {
        // Only what the node answered is retried here, as its catalogue entry says: a local
        // failure (CONNECT_FAILED) is reported at once, and a directed REFUSED is the
        // policy's answer, which asking the same node again would not change. DRAINING names
        // where to go instead (data.retryAt): that is the caller's choice, so it is reported at once.
        const retry = retryOf(err)
        if (!(err instanceof RemoteEvalError) || retry === 'never' || err.code === 'REFUSED' || err.code === 'DRAINING' || attempt >= retries) throw err
        const hint = retryAfterMs(err)
        // same-txn (BUSY): nothing was recorded; wait as the node asks, at most 10 s.
        // new-txn (MEGATEST_BUSY): the node recorded a failed transaction but did nothing;
        // its hint is only a ceiling: back off exponentially from 25 ms below it.
        const wait = retry === 'same-txn'
          ? jitter(Math.min(hint ?? 100, 10_000))
          : jitter(Math.min(Math.max(25, hint ?? 1000), 25 * 2 ** attempt, 5000))
        if (Date.now() + wait >= deadline) throw err
        await sleep(wait)
        if (retry === 'new-txn') body.txn = this.nextTxn()
      }
    }
  }
}

/**
 * For an eval that waits and wants its output as it happens: ask the node to stream it
 * (`stream`) and pass each chunk of this txn (which a retry may renew) to onOutput.
 */
function streamedOutput (body: ClaimBody, options: EvalOptions): RequestOptions['onEvents'] {
  if (options.onOutput === undefined || body.kind !== 'eval' || !body.wait) return undefined
  body.stream = true
  return outputListener(options.onOutput, () => body.txn)
}

/** Passes the `output` events of the txn `txnNow()` names to onOutput. */
function outputListener (onOutput: NonNullable<EvalOptions['onOutput']>, txnNow: () => string): NonNullable<RequestOptions['onEvents']> {
  return events => {
    for (const e of events) {
      if (e.type !== 'output' || e.txn !== txnNow()) continue
      try {
        onOutput(e.text, e.dropped ?? 0)
      } catch { /* the caller's listener failing must not cost the outcome */ }
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

/** A node name (PROTOCOL.md §5.5: one DNS label), as opposed to an address or host:port. */
function isPeerName (text: string): boolean {
  return /^[A-Za-z0-9_-]+$/.test(text) && isIP(text) === 0 && text !== 'localhost'
}

import { EventEmitter } from 'node:events'
import { readFileSync } from 'node:fs'
import { availableParallelism } from 'node:os'
import { join } from 'node:path'
import {
  DEFAULT_DECODE_LIMITS, DEFAULT_PORT, EvalMeshError, PROTOCOL_VERSION, SUPPORTED_VERSIONS, encodeResultValue,
  nodeIdOfClient, parseTxn, scrubPaths, toWireError, wireCodeOf,
  type AbortRequest, type ApplyRequest, type EvalAck, type EvalLimits, type EvalOutcome, type EvalRequest,
  type NodeLimits, type PolicyRequest, type Request, type StatusWhich, type TxnRecord, type WireError,
  type AbortResult, type DescribeReply, type NodeQuotas, type RequestHandlers, type ResultRequest
} from '@evalmesh/protocol'
import type { Peer } from '@evalmesh/discovery'
import { clampLimits, createSandbox, isQuickForm, sessionKey, type Sandbox } from '@evalmesh/sandbox'
import { KEY_FILE, TrustStore, defaultStateDir, loadIdentity, selfCertificate, type Identity } from '@evalmesh/trust'
import { Listener, busyPollStats, type IntegrityMode, type PeerInfo, type ServerConnection } from '@evalmesh/transport'
import { AdmissionPolicy, type Decision, type PolicyState, type RequestMode } from './policy.js'
import { Trace, type TraceEvent } from './trace.js'
import { TxnTable, type Settled, type Txn } from './txn-table.js'
import { Scheduler, type Route } from './scheduler.js'
import { Streams, outputRelay } from './streams.js'
import { LiveOutput } from './live-output.js'
import { channels, publish } from './events.js'
import { attachTrace } from './trace.js'
import { DoneStore } from './done-store.js'
import { loadFunctionsModule, type OperatorFunction } from './functions.js'
import { FunctionRegistry, type CallContext, type MegatestBinding } from './registry.js'
import { localOperator, ownsTxn, requireOperator, type AbortOptions, type Caller } from './access.js'
import type { BroadcastResponder } from './broadcast-responder.js'
import { startControlPort, type ControlPort } from './control-port.js'
import { LIVE_QUOTAS, NeedsRestartError, type DrainOptions, type LiveLimits } from './live-settings.js'
import { readNodeLocator } from './local-nodes.js'
import { Mesh } from './mesh.js'
import { NatsLink, type NatsInit } from './nats-link.js'

export type { MegatestBinding }

export interface ServerInit {
  /** State directory holding the node key and trust files (default ~/.evalmesh). */
  stateDir?: string
  /** Node name (default: remembered in the state dir, else the host name). */
  name?: string
  /** Remember `name` in the state dir for later runs (default true). */
  rememberName?: boolean
  /** Listen address; default 127.0.0.1 (loopback only). */
  host?: string
  /** TCP port; default 6680; 0 picks a free one. */
  port?: number
  /** Run the service for this many minutes, then stop cleanly. */
  minutes?: number
  hosts?: string[]
  gags?: string[]
  /** Operator functions callable by remoteApply, by name. */
  functions?: Record<string, OperatorFunction>
  /** A module whose exported functions become operator functions. */
  functionsModule?: string
  /** Done records older than this are purged (default 600 s). */
  purgeSeconds?: number
  /** The node's ceilings; requests may only tighten them. */
  limits?: Partial<EvalLimits>
  /** Evaluations running at once (default 2 x cores, at least 8). */
  concurrency?: number
  /** Requests waiting beyond the running ones before BUSY (default 1024). */
  queueLength?: number
  /** Per-client quotas and the node's bounds on waiting and on sandbox memory; see NodeQuotas. */
  quotas?: Partial<NodeQuotas>
  /** Bytes of results kept for re-fetch (default 64 MiB). */
  resultBudgetBytes?: number
  /** Done records kept at most, the oldest evicted first (default 20,000). */
  maxDoneRecords?: number
  /** Bytes of done records (requests, output, errors; not the kept results) at most, the oldest evicted first (default 32 MiB). */
  maxDoneBytes?: number
  /**
   * How many times this node's supervisor has restarted it (describe and the monitor show
   * it); default `$EVALMESH_RESTARTS`, which `evalmesh fleet` sets, else 0.
   */
  restarts?: number
  /**
   * Keep transactions in `<stateDir>/txns.journal` (done-store.ts), so that done records and
   * kept results survive a crash and a restart (default true; false keeps them in memory only).
   */
  durable?: boolean
  /** Use this identity instead of the state dir's (tests). */
  identity?: Identity
  /** Use this sandbox instead of forking sandbox processes (unit tests pass a fake). */
  sandbox?: Sandbox
  megatest?: MegatestBinding
  /**
   * Join a LAN on the interface with this IPv4 address: listen there (unless `host` is
   * given), answer broadcast queries on the multicast group, advertise and browse with
   * mDNS. Without it the node stays on loopback and answers only unicast queries.
   */
  lan?: string
  /** UDP port of broadcast queries on a LAN (default 6680). */
  broadcastPort?: number
  /** Static peers (`name host:port [id]` lines); default `<stateDir>/peers` if present. */
  peersFile?: string
  /** mDNS record TTL in seconds (default 120): a vanished node leaves peers' tables this long after. */
  discoveryTtl?: number
  /** Open the control port, a Unix socket `<stateDir>/control.sock` (default true). */
  controlPort?: boolean
  /**
   * Which plain connections carry frame integrity (PROTOCOL.md §2.4): `auto` (default) all
   * but loopback ones, `always` loopback ones too.
   */
  integrity?: IntegrityMode
  /**
   * Serve TLS 1.3 (PROTOCOL.md §2.5): `'self'` with a certificate made from the node's own
   * key, which clients pin through the key they trust; or an operator's certificate and key
   * (PEM; `cert` may hold the chain).
   */
  tls?: 'self' | { cert: string | Buffer, key: string | Buffer }
  /**
   * Join a NATS backbone as well as (or instead of) the LAN (PROTOCOL.md §9): streams,
   * broadcast queries and presence over the cluster's servers. NATS only carries the
   * protocol: every connection over it is authenticated end to end as over TCP.
   */
  nats?: NatsInit
}

/** The durable transaction store in the state dir (done-store.ts). */
export const STORE_FILE = 'txns.journal'
const DEFAULT_MAX_DONE_RECORDS = 20_000
const DEFAULT_MAX_DONE_BYTES = 32 * 1024 * 1024
/**
 * The sandbox's own ceilings stay this wide, so that `limits timeoutMs=...` may raise a
 * running node's limit: the node clamps every request to its limits before the sandbox
 * sees it (#submit), and the sandbox clamps again to these.
 */
const LIVE_MAX_TIMEOUT_MS = 24 * 3600 * 1000

export type { NodeQuotas }

export const DEFAULT_EVAL_LIMITS: Readonly<EvalLimits> = Object.freeze({
  timeoutMs: 30_000,
  memoryMb: 128,
  resultBytes: 16 * 1024 * 1024,
  outputBytes: 64 * 1024
})

export type { AbortOptions }

export type { AbortResult }

/**
 * The EvalServer: admission (gags, then hosts), the transaction table, the scheduler,
 * the sandbox and operator functions, behind an authenticated TCP listener.
 *
 * Events: 'change' (a transaction moved between lists), 'policy' (PolicyState),
 * 'stopped'.
 */
export class EvalServer extends EventEmitter {
  readonly identity: Identity
  readonly stateDir: string
  readonly trust: TrustStore
  readonly policy: AdmissionPolicy
  readonly trace = new Trace()
  readonly limits: NodeLimits
  readonly startedAt = Date.now()
  readonly table: TxnTable
  readonly scheduler: Scheduler
  /** The `subscribe` streams: what changes on the node, pushed to who may see it. */
  readonly streams = new Streams()
  /** Console output of runs still going, for the requests that follow them (`stream`). */
  readonly #live = new LiveOutput()
  readonly quotas: NodeQuotas
  readonly counters = { served: 0, refused: 0, busy: 0, declined: 0, completed: 0, failed: 0, aborted: 0, lost: 0 }
  /** Restarts by the node's supervisor (ServerInit.restarts). */
  readonly restarts: number
  readonly #init: ServerInit
  /** Every apply name and the names forms see (built-ins, operator functions, Megatest). */
  readonly functions: FunctionRegistry
  #sandbox!: Sandbox
  #store: DoneStore | undefined
  #listener!: Listener
  #control: ControlPort | undefined
  /** The broadcast responder, discovery and the locator files (mesh.ts). */
  #mesh: Mesh | undefined
  #nats: NatsLink | undefined
  #purgeTimer: NodeJS.Timeout | undefined
  #purgeSeconds: number
  /** Set while the node drains: new work is refused DRAINING. */
  #draining: (DrainOptions & { since: number }) | undefined
  /** Names of the functions the functions module gave (a reload replaces exactly these). */
  #moduleFunctions = new Set<string>()
  #functionsModule: string | null
  /** Whether the operator set runningPerClient; if not, it follows concurrency. */
  readonly #runningPerClientSet: boolean
  #stopTimer: NodeJS.Timeout | undefined
  #stopping: Promise<void> | undefined
  readonly #stopped: Promise<void>
  #resolveStopped!: () => void

  constructor (init: ServerInit, identity: Identity, stateDir: string) {
    super()
    this.#init = init
    this.restarts = init.restarts ?? 0
    this.#purgeSeconds = init.purgeSeconds ?? 600
    this.#functionsModule = init.functionsModule ?? null
    this.#runningPerClientSet = init.quotas?.runningPerClient !== undefined
    this.identity = identity
    this.stateDir = stateDir
    this.trust = new TrustStore(stateDir, identity)
    this.policy = new AdmissionPolicy({ hosts: init.hosts ?? [], gags: init.gags ?? [] })
    const evalLimits = { ...DEFAULT_EVAL_LIMITS, ...definedOnly(init.limits ?? {}) }
    this.limits = {
      ...evalLimits,
      maxFrameBytes: DEFAULT_DECODE_LIMITS.maxFrameBytes,
      maxDepth: DEFAULT_DECODE_LIMITS.maxDepth,
      maxStringBytes: DEFAULT_DECODE_LIMITS.maxStringBytes,
      concurrency: init.concurrency ?? Math.max(8, 2 * availableParallelism()),
      queueLength: init.queueLength ?? 1024
    }
    const budget = init.resultBudgetBytes ?? 64 * 1024 * 1024
    this.table = new TxnTable({
      resultBudgetBytes: budget,
      maxKeptResultBytes: Math.min(budget, evalLimits.resultBytes),
      maxDoneRecords: init.maxDoneRecords ?? DEFAULT_MAX_DONE_RECORDS,
      maxDoneBytes: init.maxDoneBytes ?? DEFAULT_MAX_DONE_BYTES,
      onForget: t => this.#store?.forget(t.record.txn),
      onDropValue: t => this.#store?.save(t)
    })
    this.quotas = {
      runningPerClient: defaultRunningPerClient(this.limits.concurrency),
      queuedPerClient: 256,
      maxQueueWaitMs: 2000,
      sessionsPerClient: 32,
      memoryPerClientMb: 512,
      sandboxMemoryMb: 2048,
      sandboxProcesses: 4,
      ...definedOnly(init.quotas ?? {})
    }
    this.scheduler = new Scheduler(this.table, {
      concurrency: this.limits.concurrency,
      perClient: this.quotas.runningPerClient,
      queueLength: this.limits.queueLength,
      perClientQueue: this.quotas.queuedPerClient,
      maxWaitMs: this.quotas.maxQueueWaitMs
    }, t => this.streams.txn(t.record))
    // The trace ring is one subscriber of the node's events (events.ts); the streams hear what it records.
    attachTrace(this.trace, identity.id)
    this.trace.on('event', (event: TraceEvent) => this.streams.trace(event))
    this.functions = new FunctionRegistry({
      builtins: {
        'evalserver.status': (args, ctx) => this.status(asWhich(args[0]), args[1] as string | number | undefined, undefined, ctx.caller),
        'evalserver.abort': async (args, ctx) => {
          const opts: AbortOptions = { by: ctx.caller.name, caller: ctx.caller }
          if (typeof args[1] === 'string') opts.reason = args[1]
          return await this.abort(args[0] as string | number, opts)
        },
        'evalserver.describe': () => this.describe(),
        'evalserver.trace': (args, ctx) => ({ on: this.trace.enabled, events: this.#traceFor(ctx.caller, typeof args[0] === 'number' ? args[0] : 0), lastSeq: this.trace.lastSeq })
      },
      megatest: init.megatest,
      onChange: () => this.#sandbox?.setGrants(this.functions.grants())
    })
    for (const [name, fn] of Object.entries(init.functions ?? {})) this.registerFunction(name, fn)
    this.#stopped = new Promise(resolve => { this.#resolveStopped = resolve })
  }

  get name (): string { return this.identity.name }
  get id (): string { return this.identity.id }
  get address (): { host: string, port: number } { return this.#listener.address }
  get connections (): ServerConnection[] { return [...this.#listener.connections] }
  get sandboxStats (): Sandbox['stats'] { return this.#sandbox.stats }
  get broadcast (): BroadcastResponder | undefined { return this.#mesh?.broadcast }
  get controlPort (): ControlPort | undefined { return this.#control }
  /** Why the control port could not be opened, if it could not. */
  controlPortError: string | undefined

  /** The peer table: nodes found by mDNS (on a LAN) and static seeds. */
  peers (): Peer[] {
    const lan = this.#mesh?.peers() ?? []
    // A node seen both ways is listed once, by its direct route.
    const nats = (this.#nats?.peers() ?? []).filter(p => !lan.some(l => l.name === p.name || (l.id !== '' && l.id === p.id)))
    return [...lan, ...nats]
  }

  /** The NATS backbone this node joined, if any (`serve --nats`). */
  get nats (): NatsLink | undefined { return this.#nats }
  /** Resolves once the node has stopped (by stop(), --minutes, or a signal handler). */
  get whenStopped (): Promise<void> { return this.#stopped }

  registerFunction (name: string, fn: OperatorFunction): void {
    this.functions.register(name, fn)
  }

  functionNames (): string[] {
    return this.functions.names()
  }

  async start (): Promise<void> {
    if (this.#functionsModule !== null) {
      for (const [name, fn] of Object.entries(await loadFunctionsModule(this.#functionsModule))) {
        this.registerFunction(name, fn)
        this.#moduleFunctions.add(name)
      }
    }
    this.#sandbox = this.#init.sandbox ?? createSandbox({
      limits: this.#sandboxCeilings(),
      maxSessionsPerClient: this.quotas.sessionsPerClient,
      clientMemoryMb: this.quotas.memoryPerClientMb,
      maxMemoryMb: this.quotas.sandboxMemoryMb,
      processes: this.quotas.sandboxProcesses,
      grants: this.functions.grants(),
      hostCall: async (name, args, ctx) => await this.#hostCall(name, args, ctx.txn)
    })
    this.#sandbox.on('restart', ({ reason, culpritSession }) => {
      publish(channels.sandboxRestart, culpritSession === undefined ? { node: this.id, reason } : { node: this.id, reason, culpritSession })
    })
    await this.#sandbox.start()
    try {
      this.#openStore()
      this.#listener = await Listener.listen({
        host: this.#init.host ?? '127.0.0.1',
        port: this.#init.port ?? DEFAULT_PORT,
        identity: this.identity,
        trust: this.trust,
        limits: this.limits,
        integrity: this.#init.integrity ?? 'auto',
        ...(this.#tlsMaterial() ?? {})
      })
    } catch (err) {
      await this.#sandbox.stop()
      throw err
    }
    this.#listener.on('connection', (conn: ServerConnection) => this.#onConnection(conn))
    try {
      await this.#startMesh(this.#listener.address)
      if (this.#init.controlPort !== false) {
        // Another live node on the same state dir owns the socket: serve without one.
        try {
          this.#control = await startControlPort(this)
        } catch (err) {
          this.controlPortError = (err as Error).message
          publish(channels.controlPortUnavailable, { node: this.id, message: this.controlPortError })
        }
      }
    } catch (err) {
      await this.#nats?.stop()
      await this.#mesh?.stop()
      await this.#listener.close()
      await this.#sandbox.stop()
      throw err
    }
    this.#listener.on('rejected', ({ address, error }: { address: string, error: EvalMeshError }) => {
      publish(channels.connectionRefused, { node: this.id, address, code: error.code, message: error.message })
    })
    this.#startPurge()
    const { host, port } = this.#listener.address
    const started: { node: string, name: string, host: string, port: number, lan?: string } = { node: this.id, name: this.name, host, port }
    if (this.#init.lan !== undefined) started.lan = this.#init.lan
    publish(channels.nodeStarted, started)
    if (this.#init.minutes !== undefined) {
      this.#stopTimer = setTimeout(() => { void this.stop(`--minutes ${this.#init.minutes} elapsed`) }, this.#init.minutes * 60_000)
    }
  }

  #startPurge (): void {
    if (this.#purgeTimer !== undefined) clearInterval(this.#purgeTimer)
    const purgeMs = this.#purgeSeconds * 1000
    this.#purgeTimer = setInterval(() => {
      if (this.table.purge(purgeMs) > 0) this.emit('change')
    }, Math.max(250, Math.min(purgeMs / 2, 60_000)))
    this.#purgeTimer.unref()
  }

  /** What the sandbox clamps to: the node's limits, with room for raising time and memory live. */
  #sandboxCeilings (): EvalLimits {
    const l = this.#evalLimits()
    return { ...l, timeoutMs: Math.max(l.timeoutMs, LIVE_MAX_TIMEOUT_MS), memoryMb: Math.max(l.memoryMb, this.quotas.sandboxMemoryMb) }
  }

  /**
   * The durable store, and what it kept from the last run: done records come back as
   * they were; what was queued or running when the node went down is recorded as lost.
   * Only the state dir's own node keeps one (a second node on the same dir stays in memory).
   */
  #openStore (): void {
    if (this.#init.durable === false) return
    const holder = readNodeLocator(this.stateDir)
    if (holder !== undefined && holder.pid !== process.pid) {
      publish(channels.storeShared, { node: this.id, path: join(this.stateDir, STORE_FILE), holder: holder.name, pid: holder.pid })
      return
    }
    const store = new DoneStore(join(this.stateDir, STORE_FILE), err => {
      publish(channels.storeFailed, { node: this.id, path: store.path, error: err.message })
      this.emit('change')
    })
    const { txns, lost } = store.recover(this.name)
    for (const t of txns) this.table.restore(t) // restoring re-applies the table's bounds (DoneStore.forget)
    this.#store = store
    // and what had aged out before the restart goes again now, not at the next purge tick
    this.table.purge(this.#purgeSeconds * 1000)
    if (txns.length > 0) publish(channels.storeRestored, { node: this.id, path: store.path, restored: txns.length, lost })
  }

  async #startMesh (listening: { host: string, port: number }): Promise<void> {
    const init = this.#init
    const mesh = new Mesh({
      identity: this.identity, trust: this.trust, policy: this.policy, counters: this.counters, limits: this.limits,
      stateDir: this.stateDir, startedAt: this.startedAt, capabilities: () => this.#capabilities(),
      load: () => ({ running: this.table.running.size, queued: this.table.input.length }),
      knows: txn => this.table.get(txn) !== undefined,
      draining: () => this.#draining !== undefined
    }, { lan: init.lan, broadcastPort: init.broadcastPort, peersFile: init.peersFile, discoveryTtl: init.discoveryTtl, tls: init.tls !== undefined })
    this.#mesh = mesh
    mesh.on('peers', () => this.emit('peers'))
    const responder = await mesh.start(listening)
    if (init.nats !== undefined) {
      this.#nats = await NatsLink.start({
        identity: this.identity, trust: this.trust, listener: this.#listener, responder, version: PROTOCOL_VERSION, caps: this.#capabilities()
      }, init.nats)
    }
  }

  /** The certificate and key to serve TLS with, or undefined for plain TCP. */
  #tlsMaterial (): { tls: { cert: string | Buffer, key: string | Buffer } } | undefined {
    const tls = this.#init.tls
    if (tls === undefined) return undefined
    if (tls !== 'self') return { tls }
    return { tls: { cert: selfCertificate(this.identity), key: readFileSync(join(this.stateDir, KEY_FILE)) } }
  }

  /** How this node's connections are carried, for describe: TLS or not, the integrity rule, busy-polling. */
  get transport (): DescribeReply['transport'] {
    const tls = this.#init.tls
    return { tls: tls === undefined ? 'off' : tls === 'self' ? 'self' : 'certificate', integrity: this.#init.integrity ?? 'auto', busyPoll: busyPollStats() }
  }

  #capabilities (): string[] {
    return ['eval', 'apply', 'abort', 'status', 'result', 'reset', 'policy', 'trace', 'sessions', 'broadcast', 'peers', 'subscribe', ...(this.#init.megatest !== undefined ? ['megatest'] : []), ...(this.#init.tls !== undefined ? ['tls'] : []), ...(this.#init.nats !== undefined ? ['nats'] : [])]
  }

  // ---- the operator's API (also what the control port and the monitor use) ----

  /** The lists, as `caller` may see them: a client sees its own transactions, an operator all (default). */
  status (which: StatusWhich = 'all', id?: string | number, limit?: number, caller?: Caller): TxnRecord[] {
    if (caller === undefined || caller.operator) return this.table.list(which, id, limit)
    return this.table.list(which, id, limit, t => t.caller.id === caller.id)
  }

  /** Trace events `caller` may see: an operator all, a client those of its own transactions. */
  #traceFor (caller: Caller, since: number): TraceEvent[] {
    const events = this.trace.since(since)
    return caller.operator ? events : events.filter(e => e.txn !== undefined && ownsTxn(caller, e.txn))
  }

  setPolicy (change: Omit<PolicyRequest, 'kind' | 'id'>, by = 'local operator'): PolicyState {
    if (change.hosts !== undefined) this.policy.setHosts(change.hosts)
    if (change.gags !== undefined) this.policy.setGags(change.gags)
    if (change.gag !== undefined) this.policy.gag(change.gag)
    if (change.ungag !== undefined) this.policy.ungag(change.ungag)
    const state = this.policy.state
    this.streams.policy(state)
    publish(channels.policyChanged, { node: this.id, by, hosts: state.hosts, gags: state.gags })
    this.emit('policy', state)
    return state
  }

  /**
   * Change limits of the running node; connections, sessions and what runs are untouched.
   * New requests are clamped to the new time and memory limits (a session's isolate keeps
   * the heap limit it was made with until it is made again); concurrency and queue apply
   * to what starts next. Checks every field before changing any.
   */
  setLimits (change: LiveLimits, by = 'local operator'): NodeLimits & { purgeSeconds: number } {
    const ceilings = this.#sandboxCeilings()
    for (const [k, v] of Object.entries(change)) {
      if (v === undefined) continue
      if (!Number.isSafeInteger(v) || v <= 0) throw new EvalMeshError('BAD_LIMITS', `limits.${k} must be a positive integer, got ${String(v)}`, { field: k })
      if ((k === 'timeoutMs' || k === 'memoryMb') && v > ceilings[k]) {
        throw new NeedsRestartError(`limits.${k} ${v} is above what this node's sandbox was started for (${ceilings[k]}); it needs a restart`)
      }
    }
    if (change.timeoutMs !== undefined) this.limits.timeoutMs = change.timeoutMs
    if (change.memoryMb !== undefined) this.limits.memoryMb = change.memoryMb
    if (change.concurrency !== undefined) {
      this.limits.concurrency = change.concurrency
      if (!this.#runningPerClientSet) this.quotas.runningPerClient = defaultRunningPerClient(change.concurrency)
    }
    if (change.queueLength !== undefined) this.limits.queueLength = change.queueLength
    this.scheduler.setLimits({ concurrency: this.limits.concurrency, queueLength: this.limits.queueLength, perClient: this.quotas.runningPerClient })
    if (change.purgeSeconds !== undefined && change.purgeSeconds !== this.#purgeSeconds) {
      this.#purgeSeconds = change.purgeSeconds
      if (this.#purgeTimer !== undefined) this.#startPurge()
    }
    publish(channels.settingsChanged, { node: this.id, by, what: 'limits', change: { ...change } })
    this.emit('change')
    return { ...this.limits, purgeSeconds: this.#purgeSeconds }
  }

  /** Change the scheduler's quotas of the running node (LIVE_QUOTAS); the sandbox's need a restart. */
  setQuotas (change: Partial<NodeQuotas>, by = 'local operator'): NodeQuotas {
    for (const [k, v] of Object.entries(change)) {
      if (v === undefined) continue
      if (!(k in this.quotas)) throw new EvalMeshError('BAD_LIMITS', `no quota "${k}"; the quotas are ${Object.keys(this.quotas).join(', ')}`, { field: k })
      if (!Number.isSafeInteger(v) || v <= 0) throw new EvalMeshError('BAD_LIMITS', `quota ${k} must be a positive integer, got ${String(v)}`, { field: k })
      if (!(LIVE_QUOTAS as readonly string[]).includes(k) && v !== this.quotas[k as keyof NodeQuotas]) {
        throw new NeedsRestartError(`quota ${k} is the sandbox's, fixed when it started; it needs a restart`)
      }
    }
    Object.assign(this.quotas, definedOnly(change))
    this.scheduler.setLimits({ perClient: this.quotas.runningPerClient, perClientQueue: this.quotas.queuedPerClient, maxWaitMs: this.quotas.maxQueueWaitMs })
    publish(channels.settingsChanged, { node: this.id, by, what: 'quotas', change: { ...change } })
    this.emit('change')
    return { ...this.quotas }
  }

  /**
   * Load the functions module again (`path`, or the one the node has; null: none): its
   * functions replace the ones the module gave before, at once for new requests and for
   * forms (their `fns.*`). Calls already running finish with the function they started with.
   */
  async loadFunctions (path: string | null = this.#functionsModule, by = 'local operator'): Promise<string[]> {
    const loaded = path === null ? {} : await loadFunctionsModule(path, true)
    for (const name of this.#moduleFunctions) if (!(name in loaded)) this.functions.unregister(name)
    this.#moduleFunctions = new Set(Object.keys(loaded))
    for (const [name, fn] of Object.entries(loaded)) this.registerFunction(name, fn)
    this.#functionsModule = path
    const names = [...this.#moduleFunctions]
    publish(channels.settingsChanged, { node: this.id, by, what: 'functions', change: { module: path, functions: names } })
    return names
  }

  /**
   * Drain: refuse new evals and applies with DRAINING, saying where to retry, while what
   * the node has taken (running and queued) goes on, retransmits are answered from their
   * records and results can be fetched. null ends the drain.
   */
  drain (options: DrainOptions | null, by = 'local operator'): DrainOptions | null {
    this.#draining = options === null ? undefined : { ...options, since: Date.now() }
    publish(channels.settingsChanged, { node: this.id, by, what: 'drain', change: options === null ? { draining: false } : { draining: true, ...options } })
    this.emit('change')
    return this.draining
  }

  get draining (): DrainOptions | null {
    if (this.#draining === undefined) return null
    const { since: _since, ...options } = this.#draining
    return options
  }

  #drainingError (txn: string): EvalMeshError {
    const d = this.#draining!
    const where = d.retryAt !== undefined ? `; retry at ${d.retryAt}` : ''
    const others = d.elsewhere !== undefined && d.elsewhere.length > 0 ? `${where === '' ? '; retry on' : ', or on'} ${d.elsewhere.join(', ')}` : ''
    const when = d.retryAfterMs !== undefined ? ` (back in about ${Math.max(1, Math.round(d.retryAfterMs / 1000))} s)` : ''
    const data: Record<string, unknown> = { txn, node: this.name }
    if (d.retryAt !== undefined) data.retryAt = d.retryAt
    if (d.retryAfterMs !== undefined) data.retryAfterMs = d.retryAfterMs
    if (d.elsewhere !== undefined) data.elsewhere = d.elsewhere
    return new EvalMeshError('DRAINING', `node ${this.name} is draining${d.reason !== undefined ? ` (${d.reason})` : ''} and takes no new work${where}${when}${others}`, data)
  }

  /**
   * EVALSERVER.ABORT: stop a running evaluation or drop a queued one. `id` is a txn id
   * or a bare sequence number (give `client` when numbers collide).
   */
  async abort (id: string | number, options: AbortOptions = {}): Promise<AbortResult> {
    const caller = options.caller ?? localOperator(this.id, this.name)
    // A bare number names one of the caller's own transactions unless it is an operator.
    const mine = (t: Txn): boolean => caller.operator || t.caller.id === caller.id
    const matches = this.table.find(id, options.client)
    const foreign = matches.filter(t => !mine(t))
    if (typeof id === 'string' && foreign.length > 0) requireOperator(caller, `aborting ${id}, a transaction of another client,`)
    const found = matches.filter(t => mine(t) && t.record.state !== 'done')
    const all = found.length > 0 ? found : matches.filter(mine)
    if (found.length > 1) {
      throw new EvalMeshError('AMBIGUOUS_TXN', `${id} matches ${found.map(t => t.record.txn).join(', ')}: give the client too`)
    }
    const t = found[0]
    if (t === undefined) {
      if (options.mustExist === true) throw new EvalMeshError('NO_SUCH_TXN', `no queued or running transaction ${id}`, { txn: String(id) })
      const done = all[0]
      return { txn: done?.record.txn ?? null, aborted: false, state: done?.record.state ?? 'none', reason: done === undefined ? 'no such transaction' : 'already done' }
    }
    const reason = options.reason ?? (options.by === undefined ? 'aborted locally' : `aborted remotely by ${options.by}`)
    t.abortReason = reason
    const asked: { node: string, txn: string, reason: string, peerId: string, by?: string } = { node: this.id, txn: t.record.txn, reason, peerId: t.peerId }
    if (options.by !== undefined) asked.by = options.by
    publish(channels.txnAbortRequested, asked)
    if (this.scheduler.withdraw(t)) {
      this.#finish(t, { ok: false, error: abortError(t, reason), output: '', outputTruncated: false, seconds: 0 })
      return { txn: t.record.txn, aborted: true, state: 'done', reason }
    }
    // Running: stop the evaluation for real and wait (briefly) for it to settle.
    t.controller?.abort(new EvalMeshError('ABORTED', reason))
    this.#sandbox.abort(t.record.txn)
    const settled = await waitSettled(t, 3000)
    if (!settled) {
      if (options.mustExist === true) throw new EvalMeshError('TXN_WEDGED', `transaction ${t.record.txn} did not stop within 3 s of the abort`, { txn: t.record.txn })
      return { txn: t.record.txn, aborted: false, state: t.record.state, reason: 'abort requested; still stopping' }
    }
    return { txn: t.record.txn, aborted: true, state: 'done', reason }
  }

  describe (): DescribeReply {
    return {
      name: this.name,
      id: this.id,
      version: PROTOCOL_VERSION,
      versions: [...SUPPORTED_VERSIONS],
      capabilities: this.#capabilities(),
      transport: this.transport,
      lan: this.#init.lan ?? null,
      nats: this.#nats?.describe() ?? null,
      advertisedAs: this.#mesh?.advertisedName ?? null,
      broadcast: this.broadcast === undefined ? null : { ...this.broadcast.stats, held: this.broadcast.held, datagrams: this.broadcast.counters },
      limits: this.limits,
      quotas: this.quotas,
      retention: {
        results: this.table.doneCount, recordBytes: this.table.doneBytes, maxDoneBytes: this.table.maxDoneBytes, keptBytes: this.table.keptBytes, budgetBytes: this.table.budgetBytes,
        maxDoneRecords: this.table.maxDoneRecords, purgeSeconds: this.#purgeSeconds, durable: this.#store !== undefined && this.#store.failed === undefined
      },
      sandbox: this.#sandbox?.stats ?? null,
      functions: this.functions.names(),
      policy: this.policy.state,
      trace: this.trace.enabled,
      uptimeSeconds: (Date.now() - this.startedAt) / 1000,
      restarts: this.restarts,
      draining: this.draining,
      counters: { ...this.counters },
      lists: { input: this.table.input.length, running: this.table.running.size, done: this.table.doneCount },
      megatestAreas: this.#init.megatest?.areas().map(a => a.name) ?? []
    }
  }

  async stop (reason = 'stopped'): Promise<void> {
    this.#stopping ??= this.#doStop(reason)
    return await this.#stopping
  }

  async #doStop (reason: string): Promise<void> {
    if (this.#purgeTimer !== undefined) clearInterval(this.#purgeTimer)
    if (this.#stopTimer !== undefined) clearTimeout(this.#stopTimer)
    publish(channels.nodeStopping, { node: this.id, reason })
    // A stopping node is no client's local node any more.
    this.#mesh?.releaseLocator()
    this.streams.close()
    this.#nats?.quiesce()
    const closing = this.#listener.close()
    await this.#control?.close()
    await this.#mesh?.stop()
    for (const t of [...this.table.input]) {
      if (!this.scheduler.withdraw(t)) continue // started behind its session: stopped with the running ones
      this.#finish(t, { ok: false, error: new EvalMeshError('SHUTTING_DOWN', `node ${this.name} is stopping (${reason})`, { txn: t.record.txn }).toWire(), output: '', outputTruncated: false, seconds: 0 })
    }
    await Promise.all([...this.table.running, ...this.table.input].map(async t => await this.abort(t.record.txn, { reason: `node stopping: ${reason}` }).catch(() => {})))
    await this.#sandbox.stop()
    this.#store?.close()
    await closing
    // Last: the listener's close above reset the streams over NATS; this sends that out.
    await this.#nats?.stop()
    this.emit('stopped', reason)
    this.#resolveStopped()
  }

  // ---- requests -------------------------------------------------------------

  #onConnection (conn: ServerConnection): void {
    // Policy, status and the trace use the name this node gives the key, never the
    // name the peer claims in its hello: that is kept only as a hint.
    const peer = conn.peer
    const claimed = peer.name
    peer.name = this.trust.nameOrId(peer.key)
    if (claimed !== peer.name) peer.claimedName = claimed
    publish(channels.connectionAccepted, { node: this.id, peer: peer.name, peerId: peer.id, connection: conn.id, address: peer.address, trustedBy: peer.trustedBy })
    conn.on('request', (req: Request) => this.#dispatch(conn, req))
    conn.on('close', () => publish(channels.connectionClosed, { node: this.id, peer: peer.name, peerId: peer.id, connection: conn.id }))
  }

  /** Who a connection's requests come from, with the rights this node gives its key. */
  #callerOf (peer: PeerInfo): Caller {
    return { id: peer.id, name: peer.name, operator: peer.self || this.trust.isOperator(peer.key) }
  }

  /**
   * One handler per request kind, checked against the protocol's request/reply map:
   * a handler that answers the wrong shape, or a kind left without one, does not compile.
   */
  readonly #handlers: RequestHandlers<ServerConnection> = {
    eval: async (req, conn) => await this.#submit(conn, req),
    apply: async (req, conn) => await this.#submit(conn, req),
    abort: async (req, conn) => await this.#remoteAbort(req, conn.peer),
    status: async (req, conn) => this.status(req.which ?? 'all', req.txn, req.limit, this.#callerOf(conn.peer)),
    result: async (req, conn) => await this.#result(conn, req),
    describe: async (_req, conn) => ({ ...this.describe(), connection: { tls: conn.peer.tls, integrity: conn.peer.integrity } }),
    ping: async () => ({ time: Date.now(), name: this.name, id: this.id }),
    peers: async () => this.peers(),
    reset: async (req, conn) => {
      await this.#sandbox.resetSession(sessionKey(conn.peer.id, req.session ?? 'default'))
      return { reset: true, session: req.session ?? 'default' }
    },
    policy: async (req, conn) => {
      const changes = req.hosts !== undefined || req.gags !== undefined || req.gag !== undefined || req.ungag !== undefined
      if (!changes) return this.policy.state
      requireOperator(this.#callerOf(conn.peer), 'changing the policy')
      const { kind: _k, id: _i, ...change } = req
      return this.setPolicy(change, conn.peer.name)
    },
    trace: async (req, conn) => {
      const caller = this.#callerOf(conn.peer)
      if (req.on !== undefined && req.on !== this.trace.enabled) requireOperator(caller, `switching the trace ${req.on ? 'on' : 'off'}`)
      if (req.clear === true) requireOperator(caller, 'clearing the trace')
      if (req.on !== undefined) this.trace.setEnabled(req.on, caller.name)
      if (req.clear === true) this.trace.clear(caller.name)
      return { on: this.trace.enabled, events: this.#traceFor(caller, req.since ?? 0), lastSeq: this.trace.lastSeq }
    },
    subscribe: async (req, conn) => {
      const caller = this.#callerOf(conn.peer)
      this.streams.open(conn, req.id, caller, req.since === undefined ? [] : this.#traceFor(caller, req.since))
      return { subscribed: true, lastSeq: this.trace.lastSeq }
    }
  }

  #dispatch (conn: ServerConnection, req: Request): void {
    const handler = this.#handlers[req.kind] as (req: Request, conn: ServerConnection) => Promise<unknown>
    handler(req, conn).then(
      value => { if (!conn.closed) conn.reply(req.id, value) },
      (err: unknown) => { if (!conn.closed) conn.replyError(req.id, err instanceof ReplyFailure ? err.wire : err) }
    )
  }

  async #submit (conn: ServerConnection, req: EvalRequest | ApplyRequest): Promise<EvalOutcome | EvalAck> {
    const peer = conn.peer
    const { client, seq } = parseTxn(req.txn)
    if (nodeIdOfClient(client) !== peer.id) {
      throw new EvalMeshError('CLIENT_ID_MISMATCH', `transaction ${req.txn} names client ${client}, but this connection is ${peer.id}`)
    }
    const existing = this.table.get(req.txn)
    if (existing !== undefined) {
      // A retransmit: never run twice; answer from the record.
      if (fingerprint(existing.request) !== fingerprint(req)) throw new EvalMeshError('TXN_CONFLICT', `transaction ${req.txn} was already used for a different request`, { txn: req.txn })
      if (!req.wait) return this.#ack(existing)
      if (req.kind === 'eval' && req.stream === true) this.#followOutput(existing, conn, req.id)
      return await this.#outcomeOf(existing)
    }

    if (this.#draining !== undefined) {
      throw this.#drainingError(req.txn)
    }

    let mode: RequestMode = 'directed'
    if (req.claim !== undefined) {
      const granted = this.#mesh?.claim(req.claim, peer, req.txn)
      if (granted === undefined) throw new EvalMeshError('REFUSED', `claim for ${req.txn} is not valid here (expired, or this node made no offer)`, { rule: 'broadcast claim', txn: req.txn })
      mode = granted
    }
    const decision: Decision = this.policy.decide({ id: peer.id, name: peer.name, self: peer.self }, mode)
    if (!decision.admit) {
      this.counters.refused++
      publish(channels.requestRefused, { node: this.id, peer: peer.name, peerId: peer.id, txn: req.txn, mode, rule: decision.rule })
      throw new EvalMeshError('REFUSED', `node ${this.name} refused ${req.txn}: ${decision.rule}`, { rule: decision.rule, txn: req.txn, node: this.name })
    }
    if (req.kind === 'apply' && !this.functions.has(req.fn)) {
      throw new EvalMeshError('UNKNOWN_FUNCTION', `node ${this.name} has no function "${req.fn}"; it offers: ${this.functionNames().join(', ')}`, { fn: req.fn })
    }
    const refusal = this.scheduler.refusal(peer.id)
    if (refusal !== undefined) {
      this.counters.busy++
      publish(channels.requestBusy, { node: this.id, peer: peer.name, peerId: peer.id, txn: req.txn, message: refusal.message, retryAfterMs: refusal.retryAfterMs })
      throw new EvalMeshError('BUSY', `node ${this.name} is ${refusal.message}`, { retryAfterMs: refusal.retryAfterMs, txn: req.txn })
    }

    this.counters.served++
    const limits = clampLimits(req.limits, this.#evalLimits())
    const t: Txn = {
      record: {
        txn: req.txn, client, clientName: peer.name, seq, kind: req.kind,
        summary: req.kind === 'eval' ? summarize(req.form) : `${req.fn}(${summarizeArgs(req.args)})`,
        mode: peer.self ? 'self' : mode, state: 'input', queuedAt: Date.now()
      },
      request: req, peerId: peer.id, caller: this.#callerOf(peer), waiters: [], keptBytes: 0
    }
    this.table.add(t)
    this.#store?.save(t)
    this.streams.txn(t.record)
    publish(channels.requestServed, { node: this.id, peer: peer.name, peerId: peer.id, txn: req.txn, mode: t.record.mode, kind: req.kind, rule: decision.rule, summary: t.record.summary })
    const run = req.kind === 'eval'
      ? async (route: Route | undefined): Promise<Settled> => await this.#sandbox.run({
        txn: t.record.txn, session: route?.session ?? sessionKey(peer.id, 'default'), form: req.form, limits, transient: route?.transient === true,
        onOutput: text => this.#onOutput(t, text)
      })
      : async (): Promise<Settled> => await this.#runApply(t, req.fn, req.args, limits, peer)
    this.scheduler.submit({
      txn: t,
      client: peer.id,
      session: req.kind === 'eval' ? req.session : undefined,
      kind: req.kind,
      quick: req.kind === 'eval' && isQuickForm(req.form),
      start: route => {
        publish(channels.txnStarted, { node: this.id, peer: t.record.clientName, peerId: t.peerId, txn: t.record.txn, summary: t.record.summary })
        run(route).then(
          settled => this.#finish(t, settled),
          err => this.#finish(t, { ok: false, error: toWireError(err), output: '', outputTruncated: false, seconds: secondsSince(t.record.startedAt) })
        )
      }
    })
    this.emit('change')
    if (!req.wait) return this.#ack(t)
    if (req.kind === 'eval' && req.stream === true) this.#followOutput(t, conn, req.id)
    return await this.#outcomeOf(t)
  }

  /** A run's console output as it is written: to its followers (live-output.ts) and to subscribers who may see it. */
  #onOutput (t: Txn, text: string): void {
    this.#live.append(t.record.txn, text)
    this.streams.output(t.record.txn, text)
  }

  /**
   * A waiting request that asked for `stream` (an eval, its retransmit, or a result)
   * follows the txn's output until it ends: what was written so far, then the rest live,
   * as `output` events on the request's id.
   */
  #followOutput (t: Txn, conn: ServerConnection, id: number): void {
    if (t.settled === undefined && t.request.kind === 'eval') this.#live.follow(t.record.txn, outputRelay(conn, id, t.record.txn))
  }

  #finish (t: Txn, settled: Settled): void {
    if (t.record.state === 'done') return
    // Decide on the node whether the result can travel, so that a value the client
    // would refuse (cyclic, too deep, an outsized bignum) fails this request alone.
    let size: number | undefined
    const v = settled.ok ? settled.value : undefined
    if (settled.ok && ((typeof v === 'object' && v !== null) || typeof v === 'bigint')) {
      const limit = Math.min(t.request.limits?.resultBytes ?? Infinity, this.limits.resultBytes)
      try {
        size = encodeResultValue(v).length
        if (size > limit) throw new EvalMeshError('RESULT_LIMIT', `result of ${size} bytes exceeds the limit of ${limit}`)
      } catch (err) {
        settled = { ok: false, error: toWireError(err, 'RESULT_UNENCODABLE'), output: settled.output, outputTruncated: settled.outputTruncated, seconds: settled.seconds }
        size = undefined
      }
    }
    if (!settled.ok && settled.error.code === 'ABORTED' && t.abortReason !== undefined) {
      settled = { ...settled, error: abortError(t, t.abortReason) }
    }
    // Done first, then the scheduler may start what waited for it: the next run of a
    // session never shows a start before the end of the one ahead of it.
    this.#live.end(t.record.txn)
    this.table.finish(t, settled, size)
    this.#store?.save(t)
    this.streams.txn(t.record)
    this.scheduler.finished(t)
    const how = t.record.howStopped!
    this.counters[how === 'completed' ? 'completed' : how]++
    const ended = how === 'completed' ? channels.txnFinished : how === 'aborted' ? channels.txnAborted : how === 'lost' ? channels.txnLost : channels.txnFailed
    if (ended.hasSubscribers) {
      const e: { node: string, peer: string, peerId: string, txn: string, seconds: number, error?: { code: string, message: string } } = { node: this.id, peer: t.record.clientName, peerId: t.peerId, txn: t.record.txn, seconds: t.record.seconds ?? 0 }
      if (!settled.ok) e.error = { code: settled.error.code, message: settled.error.message }
      publish(ended, e)
    }
    const waiters = t.waiters
    t.waiters = []
    for (const w of waiters) w(settled)
    this.emit('change')
  }

  /** The reply for a settled transaction: its outcome, or a ReplyFailure carrying its error. */
  async #outcomeOf (t: Txn, requireKept = false): Promise<EvalOutcome> {
    const s = t.settled ?? await new Promise<Settled>(resolve => t.waiters.push(resolve))
    if (s.ok && requireKept && t.record.resultKept === false) {
      throw new EvalMeshError('RESULT_NOT_KEPT', `${t.record.txn} completed, but its result was not kept (over the retention budget)`, { txn: t.record.txn, seconds: s.seconds })
    }
    if (s.ok) {
      const outcome: EvalOutcome = { txn: t.record.txn, node: this.name, state: 'done', value: s.value, output: s.output, outputTruncated: s.outputTruncated, seconds: s.seconds }
      if (s.contextLost !== undefined) outcome.contextLost = s.contextLost
      if (t.record.session === 'transient') outcome.session = 'transient'
      return outcome
    }
    const data: Record<string, unknown> = { txn: t.record.txn, node: this.name, output: s.output, seconds: s.seconds }
    if (s.contextLost !== undefined) data.contextLost = s.contextLost
    if (t.record.session === 'transient') data.session = 'transient'
    throw new ReplyFailure(withData(s.error, data))
  }

  #ack (t: Txn): EvalAck {
    return { txn: t.record.txn, node: this.name, state: t.record.state }
  }

  async #result (conn: ServerConnection, req: ResultRequest): Promise<EvalOutcome> {
    const { txn } = req
    const wait = req.wait === true
    const t = this.table.get(txn)
    if (t === undefined || !ownsTxn(this.#callerOf(conn.peer), txn)) {
      throw new EvalMeshError('NO_SUCH_TXN', `node ${this.name} has no record of ${txn} (never seen, or purged)`, { txn })
    }
    if (t.settled === undefined && !wait) {
      throw new EvalMeshError('TXN_NOT_DONE', `${txn} is still ${t.record.state === 'input' ? 'queued' : 'running'}`, { txn, state: t.record.state })
    }
    if (req.stream === true) this.#followOutput(t, conn, req.id)
    return await this.#outcomeOf(t, true)
  }

  async #remoteAbort (req: AbortRequest, peer: PeerInfo): Promise<AbortResult> {
    const opts: AbortOptions = { by: peer.name, caller: this.#callerOf(peer) }
    if (req.reason !== undefined) opts.reason = req.reason
    if (req.mustExist !== undefined) opts.mustExist = req.mustExist
    if (req.client !== undefined) opts.client = req.client
    return await this.abort(req.txn, opts)
  }

  // ---- apply: built-ins, operator functions, Megatest ------------------------

  async #runApply (t: Txn, fn: string, args: unknown[], limits: EvalLimits, peer: PeerInfo): Promise<Settled> {
    const started = Date.now()
    const controller = new AbortController()
    t.controller = controller
    const timer = setTimeout(() => controller.abort(new EvalMeshError('TIME_LIMIT', `${fn} exceeded its wall-time limit of ${limits.timeoutMs} ms`)), limits.timeoutMs)
    const stopped = new Promise<never>((_resolve, reject) => {
      controller.signal.addEventListener('abort', () => reject(controller.signal.reason), { once: true })
    })
    try {
      const value = await Promise.race([this.functions.call(fn, args, { txn: t.record.txn, peer: { id: peer.id, name: peer.name }, caller: t.caller, signal: controller.signal }), stopped])
      return { ok: true, value, output: '', outputTruncated: false, seconds: (Date.now() - started) / 1000 }
    } catch (err) {
      return { ok: false, error: hostError(err, t.caller), output: '', outputTruncated: false, seconds: (Date.now() - started) / 1000 }
    } finally {
      clearTimeout(timer)
      stopped.catch(() => {})
    }
  }

  /** Calls from sandboxed forms: `evalserver.status()`, `fns.greet()`, `megatest['get-keys']()`. */
  async #hostCall (name: string, args: unknown[], txn: string): Promise<unknown> {
    const t = this.table.get(txn)
    // A form has exactly its client's rights; one whose record is gone has none.
    const caller: Caller = t?.caller ?? { id: '', name: 'unknown', operator: false }
    const ctx: CallContext = { txn, peer: { id: caller.id, name: caller.name }, caller, signal: t?.controller?.signal ?? new AbortController().signal }
    try {
      return await this.functions.call(this.functions.fromGrant(name), args, ctx)
    } catch (err) {
      // The sandbox passes message and code into the form, nothing else.
      const wire = hostError(err, caller)
      throw Object.assign(new Error(wire.message), { code: wire.code })
    }
  }

  #evalLimits (): EvalLimits {
    const { timeoutMs, memoryMb, resultBytes, outputBytes } = this.limits
    return { timeoutMs, memoryMb, resultBytes, outputBytes }
  }
}

/**
 * An error from host code (an operator function, Megatest, a built-in) as a client may
 * see it: message and code, with host paths taken out; only an operator gets the stack.
 */
function hostError (err: unknown, caller: Caller): WireError {
  const wire = toWireError(err, 'EVAL_ERROR')
  const fromHost = !(err instanceof EvalMeshError)
  if (fromHost) wire.message = scrubPaths(wire.message)
  if (fromHost && caller.operator && err instanceof Error && err.stack !== undefined) wire.stack = err.stack
  return wire
}

/** A quarter of the slots stay free for other clients, once there are enough slots to share. */
function defaultRunningPerClient (concurrency: number): number {
  return concurrency <= 2 ? concurrency : concurrency - Math.max(1, Math.floor(concurrency / 4))
}

/** A reply that is an error already in wire form (a settled transaction's), passed through as it is. */
class ReplyFailure extends Error {
  readonly wire: WireError
  constructor (wire: WireError) {
    super(wire.message)
    this.wire = wire
  }
}

function abortError (t: Txn, reason: string): WireError {
  return { code: 'ABORTED', wire: wireCodeOf('ABORTED'), name: 'EvalMeshError', message: `transaction ${t.record.txn} was aborted: ${reason}`, data: { txn: t.record.txn, reason } }
}

function withData (error: WireError, data: Record<string, unknown>): WireError {
  return { ...error, data: { ...data, ...(error.data ?? {}) } }
}

/** What makes a retransmit the same request; computed only when a txn id comes again. */
function fingerprint (req: EvalRequest | ApplyRequest): string {
  return req.kind === 'eval' ? `eval\0${req.session ?? ''}\0${req.form}` : `apply\0${req.fn}\0${safeJson(req.args)}`
}

/** A short, cheap picture of apply arguments for status lists: no full serialization. */
function summarizeArgs (args: unknown[]): string {
  const parts = args.slice(0, 6).map(a => {
    if (typeof a === 'string') return JSON.stringify(a.length > 24 ? a.slice(0, 21) + '...' : a)
    if (typeof a === 'number' || typeof a === 'boolean' || a === null || a === undefined) return String(a)
    if (typeof a === 'bigint') return `${a}n`
    return Array.isArray(a) ? `[${a.length}]` : '{...}'
  })
  const text = parts.join(', ') + (args.length > 6 ? ', ...' : '')
  return text.length > 72 ? text.slice(0, 69) + '...' : text
}

function summarize (text: string): string {
  const line = text.trim().split('\n')[0] ?? ''
  return line.length > 80 ? line.slice(0, 77) + '...' : line
}

function safeJson (value: unknown): string {
  try {
    return JSON.stringify(value, (_k, v: unknown) => typeof v === 'bigint' ? `${v}n` : v) ?? 'undefined'
  } catch {
    return '[unserializable]'
  }
}

function secondsSince (t: number | undefined): number {
  return t === undefined ? 0 : (Date.now() - t) / 1000
}

function asWhich (v: unknown): StatusWhich {
  return v === 'input' || v === 'running' || v === 'done' ? v : 'all'
}

function definedOnly<T extends object> (o: T): Partial<T> {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as Partial<T>
}

async function waitSettled (t: Txn, ms: number): Promise<boolean> {
  if (t.settled !== undefined) return true
  return await new Promise(resolve => {
    const timer = setTimeout(() => resolve(false), ms)
    t.waiters.push(() => { clearTimeout(timer); resolve(true) })
  })
}

export type { TraceEvent }

/** EVALMESH_RESTARTS, as the fleet's supervisor sets it for a node it restarted. */
function restartsFromEnv (): number | undefined {
  const n = Number(process.env.EVALMESH_RESTARTS)
  return Number.isSafeInteger(n) && n >= 0 ? n : undefined
}

/** Create and start a node. */
export async function startServer (init: ServerInit = {}): Promise<EvalServer> {
  const stateDir = init.stateDir ?? defaultStateDir()
  const identityOptions: Parameters<typeof loadIdentity>[1] = { create: true }
  if (init.name !== undefined) identityOptions.name = init.name
  if (init.rememberName === false) identityOptions.remember = false
  const identity = init.identity ?? loadIdentity(stateDir, identityOptions)
  const restarts = init.restarts ?? restartsFromEnv()
  const server = new EvalServer(restarts === undefined ? init : { ...init, restarts }, identity, stateDir)
  await server.start()
  return server
}

/**
 * What each request is answered with (PROTOCOL.md §3), as one map from request kind to
 * reply value, after vscode-jsonrpc's typed requests: a client's `request({ kind: K })`
 * resolves to `ReplyOf<K>`, and a server's handlers are checked against the same map
 * (`RequestHandlers`), so the two sides cannot drift apart silently.
 *
 * Adding a request kind to `Request` (messages.ts) without a line here fails to compile:
 * `ReplyOf` indexes this map with every `RequestKind`.
 */
import type {
  EvalAck, EvalOutcome, NodeLimits, Request, RequestKind, TxnRecord, TxnState
} from './messages.js'

/** abort (§3.5). `aborted: false` with `txn: null` and state "none": nothing matched. */
export interface AbortResult {
  /** The transaction matched, or null when none did. */
  txn: string | null
  aborted: boolean
  /** Its state after the abort; "none" when nothing matched. */
  state: TxnState | 'none'
  /** The reason recorded, or why nothing was aborted ("no such transaction", "already done"...). */
  reason: string
}

/** ping (§3.8). */
export interface PingReply {
  /** The node's clock, epoch milliseconds. */
  time: number
  name: string
  id: string
}

/** reset (§3.8). */
export interface ResetReply { reset: true, session: string }

/** policy (§3.8): the policy after the change (or as it is, with no change asked). */
export interface PolicyState { hosts: string[], gags: string[] }

export type TraceEventKind =
  | 'served' | 'refused' | 'declined' | 'busy' | 'queued' | 'started' | 'finished' | 'failed'
  | 'aborted' | 'lost' | 'policy' | 'connect' | 'disconnect' | 'offer' | 'error'

/** One trace event (§3.8), as the node records it and sends it. */
export interface TraceEvent {
  seq: number
  /** Epoch milliseconds on the node's clock. */
  time: number
  kind: TraceEventKind
  txn?: string
  peer?: string
  detail: string
}

/** trace (§3.8). */
export interface TraceReply {
  on: boolean
  events: TraceEvent[]
  /** The newest sequence number recorded; lower than a client's `since` after a restart. */
  lastSeq: number
}

/** One row of a node's peer table (§3.8 peers, §5.5). */
export interface PeerEntry {
  name: string
  /** Node id; '' when a seed line gave none. */
  id: string
  address: string
  port: number
  /** Protocol version; 0 when unknown (seeds). */
  version: number
  caps: string[]
  /** Epoch milliseconds when last heard from (or loaded, for seeds). */
  lastSeen: number
  /** mdns: discovered on the LAN; seed: the peers file; nats: announced on the NATS backbone (address "nats", port 0: reach it through NATS). */
  source: 'mdns' | 'seed' | 'nats'
}

/** Transaction counters a node keeps since it started. */
export interface NodeCounters {
  served: number
  refused: number
  busy: number
  declined: number
  completed: number
  failed: number
  aborted: number
  lost: number
}

/** A node's broadcast responder: offer statistics and the datagram counters of §5.1. */
export interface BroadcastStats {
  queries: number
  offers: number
  declined: number
  busy: number
  claimed: number
  expired: number
  /** Offers holding a slot now. */
  held: number
  datagrams: {
    received: number
    accepted: number
    dropped: Record<'malformed' | 'forged' | 'untrusted' | 'replayed' | 'stale', number>
  }
}

/** describe (§3.8). */
export interface DescribeReply {
  name: string
  id: string
  version: number
  versions: number[]
  capabilities: string[]
  /**
   * How the node carries connections (PROTOCOL.md §2.4, §2.5): `tls` is `off`, `self` (a
   * certificate over the node's key) or `certificate` (an operator's); `integrity` is
   * which plain connections carry integrity tags (`auto`: all but loopback ones);
   * `busyPoll` is how long the node keeps polling after a reply for the next request
   * (local only: it changes nothing on the wire).
   */
  transport: { tls: 'off' | 'self' | 'certificate', integrity: 'auto' | 'always', busyPoll: { maxMicros: number, windowMicros: number, spunSeconds: number, yielded: number } }
  /** The connection this describe came on: inside TLS, and whether its frames carry tags (wire requests only). */
  connection?: { tls: boolean, integrity: boolean }
  /** The LAN interface address, or null on loopback. */
  lan: string | null
  /**
   * The NATS backbone the node joined (PROTOCOL.md §9), or null: its mesh, the server it is
   * on now (`host:port`), whether it is connected, and how many nodes it sees there.
   */
  nats: { mesh: string, server: string, connected: boolean, peers: number } | null
  /** The name the node advertises over mDNS (`NAME-2` after a conflict), or null. */
  advertisedAs: string | null
  broadcast: BroadcastStats | null
  limits: NodeLimits
  functions: string[]
  policy: PolicyState
  /** Whether tracing is on. */
  trace: boolean
  uptimeSeconds: number
  /** Restarts of the node by its supervisor (`evalmesh fleet`), 0 when none. */
  restarts: number
  /** Set while the node drains (new work refused DRAINING): where it sends new work. */
  draining: { retryAt?: string, elsewhere?: string[], retryAfterMs?: number, reason?: string } | null
  counters: NodeCounters
  lists: { input: number, running: number, done: number }
  megatestAreas: string[]
  /** What one client may hold and how long anyone may wait (set with `serve --quota`). */
  quotas: NodeQuotas
  /** Done records and kept results: how much is kept for re-fetch, and for how long. */
  retention: RetentionState
  /** The sandbox processes and what they hold, or null before the node has started. */
  sandbox: SandboxState | null
}

/** Per-client quotas and the node's bounds (PROTOCOL.md §7.3). */
export interface NodeQuotas {
  /** Runs one client may have at once: the rest of the slots stay free for others. */
  runningPerClient: number
  /** Requests one client may have waiting before BUSY. */
  queuedPerClient: number
  /** A request whose estimated wait exceeds this is refused BUSY with a retry-after. */
  maxQueueWaitMs: number
  /** Sessions one client may hold; its least recently used idle one is evicted beyond it. */
  sessionsPerClient: number
  /** Heap one client's sessions may hold, MiB. */
  memoryPerClientMb: number
  /** Heap all sandbox sessions of the node may hold, MiB; a new session beyond it is refused QUOTA. */
  sandboxMemoryMb: number
  /** Sandbox processes clients are spread over; a client whose form crashes one gets its own. */
  sandboxProcesses: number
}

export interface RetentionState {
  /** Done records held now. */
  results: number
  /** Bytes of results kept for re-fetch now, and the most that are kept. */
  keptBytes: number
  budgetBytes: number
  /** Done records kept at most; the oldest go first. */
  maxDoneRecords: number
  /** Bytes the done records hold beyond their kept results (requests, output, errors; estimated), and the most they may; the oldest go first. */
  recordBytes: number
  maxDoneBytes: number
  /** Done records are purged this long after they ended. */
  purgeSeconds: number
  /** Whether records and kept results survive a restart (kept in the state dir's txns.journal). */
  durable: boolean
}

export interface SandboxState {
  restarts: number
  sessions: number
  running: number
  heapBytes: number
  /** Runs of pure forms (literals and operators only) the node evaluated in its own isolate. */
  inline?: number
  processes?: Array<{ pid: number | undefined, clients: number, dedicated: boolean, sessions: number, running: number, heapBytes: number }>
}

/**
 * The reply value of each request kind. eval and apply answer with the outcome when
 * `wait` is true and with the acknowledgement when it is false.
 */
export interface ReplyMap {
  eval: EvalOutcome | EvalAck
  apply: EvalOutcome | EvalAck
  abort: AbortResult
  status: TxnRecord[]
  result: EvalOutcome
  describe: DescribeReply
  ping: PingReply
  reset: ResetReply
  policy: PolicyState
  trace: TraceReply
  subscribe: SubscribeReply
  peers: PeerEntry[]
}

/** The request of kind K, as the server receives it (with its connection-local id). */
export type RequestOf<K extends RequestKind> = Extract<Request, { kind: K }>

/** The reply value a request of kind K resolves to. */
export type ReplyOf<K extends RequestKind> = ReplyMap[K]

/** A request as a client writes it: without the connection-local id, which the connection assigns. */
export type RequestBody<K extends RequestKind = RequestKind> = K extends RequestKind ? Omit<RequestOf<K>, 'id'> : never

/**
 * A server's request handlers, one per kind, checked against the map: a handler that
 * answers the wrong shape, or a kind without a handler, does not compile.
 *
 * ```ts
 * const handlers: RequestHandlers<ServerConnection> = {
 *   ping: async () => ({ time: Date.now(), name, id }),
 *   ...
 * }
 * ```
 */
export type RequestHandlers<Context = void> = {
  [K in RequestKind]: (request: RequestOf<K>, context: Context) => Promise<ReplyOf<K>>
}

// ---- streams --------------------------------------------------------------------

/**
 * What a `subscribe` stream carries (PROTOCOL.md §3.11), in batches of at most one per
 * tenth of a second: a transaction record each time one changes list (its latest state
 * only), the trace events as they are recorded (while the trace is on), and policy
 * changes. A client that is not an operator gets only its own transactions and their
 * trace events.
 */
export type StreamEvent =
  | { type: 'txn', record: TxnRecord }
  | { type: 'trace', event: TraceEvent }
  | { type: 'policy', policy: PolicyState }
  | OutputEvent

/**
 * Console output of a running form, as it happens: sent on an eval's own id when it
 * asked for `stream` (PROTOCOL.md §3.2), and to subscribers who may see the txn.
 * `dropped` counts the bytes of output not sent because the reader fell behind (the
 * final outcome's `output` still holds them).
 */
export interface OutputEvent { type: 'output', txn: string, text: string, dropped?: number }

/** The reply that opens a stream; the event frames follow on the same id. */
export interface SubscribeReply { subscribed: true, lastSeq: number }

/** One frame of a stream, sent on the id of the request that opened it. */
export interface EventFrame {
  kind: 'event'
  id: number
  events: StreamEvent[]
}

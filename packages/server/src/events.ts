import dc from 'node:diagnostics_channel'
import { formatHost, nodeIdOfClient, parseTxn, type TraceEventKind } from '@evalmesh/protocol'

/**
 * Every event a node reports, declared once (issue 10, point 4), as undici declares its
 * diagnostics: one `diagnostics_channel` channel per event, named
 * `evalmesh:<component>:<event>`, with a typed payload.
 *
 * The node publishes; subscribers decide what to do with it: the logger (log.ts) writes
 * lines to stderr or a file, the trace ring (trace.ts, `attachTrace`) keeps the last
 * events for the `trace` request, and a `subscribe` request (subscriptions.ts) streams
 * them to a client. Anyone else may subscribe by name too:
 *
 * ```ts
 * import dc from 'node:diagnostics_channel'
 * dc.subscribe('evalmesh:sandbox:restart', (p) => console.log('restart', p))
 * ```
 *
 * Channels are process-wide: several nodes in one process publish on the same channels,
 * and every payload names its node (`node`, the node id) so a subscriber can keep to one.
 * Publishing goes through `publish(channel, payload)`, which costs one property read
 * when nobody listens.
 *
 * To add an event: a payload interface, a line in `channels`, a line in `EVENTS` (level,
 * trace kind, wording); the compiler then asks for nothing else, and the logger, the
 * trace and subscriptions pick it up.
 */

/** A channel whose messages have type T. */
export interface TypedChannel<T> {
  readonly name: string | symbol
  readonly hasSubscribers: boolean
  publish (message: T): void
  subscribe (onMessage: (message: T, name: string | symbol) => void): void
  unsubscribe (onMessage: (message: T, name: string | symbol) => void): boolean | void
}

function channel<T> (name: string): TypedChannel<T> {
  return dc.channel(name) as unknown as TypedChannel<T>
}

/** What every payload carries: which node it happened on. */
export interface NodeEvent {
  /** The node id of the node the event happened on. */
  node: string
}

/** Events about one peer: its connection, its request, its transaction. */
export interface PeerEvent extends NodeEvent {
  /** The name this node gives the peer (its trusted-keys label, or its id). */
  peer: string
  /** The peer's node id (from its proven key): what visibility is decided on. */
  peerId: string
}

export interface ConnectionAccepted extends PeerEvent {
  connection: number
  address: string
  trustedBy: string
}
export interface ConnectionClosed extends PeerEvent { connection: number }
/** A connection that did not get through the handshake (untrusted key, bad hello...). */
export interface ConnectionRefused extends NodeEvent {
  address: string
  code: string
  message: string
}

export interface RequestServed extends PeerEvent {
  txn: string
  /** directed, broadcast or self. */
  mode: string
  /** eval or apply. */
  kind: string
  /** The policy rule that admitted it. */
  rule: string
  /** The first line of the form, or `fn(args)`. */
  summary: string
}
export interface RequestRefused extends PeerEvent { txn: string, mode: string, rule: string }
export interface RequestBusy extends PeerEvent { txn: string, message: string, retryAfterMs?: number }

export interface TxnStarted extends PeerEvent { txn: string, summary: string }
/** How a transaction ended; `error` unless it completed. */
export interface TxnEnded extends PeerEvent {
  txn: string
  seconds: number
  error?: { code: string, message: string }
}
/** An abort was asked for (the txn then ends with txnAborted, or keeps stopping). */
export interface TxnAbortRequested extends NodeEvent {
  txn: string
  reason: string
  /** Who asked (a peer name), or absent for the local operator. */
  by?: string
  /** The owner's node id, when known. */
  peerId?: string
}

export interface BroadcastDeclined extends PeerEvent { txn: string, rule: string }
export interface BroadcastBusy extends PeerEvent { txn: string, load: number }
export interface BroadcastOffered extends PeerEvent { txn: string, rule: string, load: number, concurrency: number }
export interface DatagramDropped extends NodeEvent { address: string, port: number, reason: string, detail: string }
export interface BroadcastError extends NodeEvent {
  /** Where it happened: 'socket', or the address an answer could not be sent to. */
  where: string
  message: string
}

export interface SandboxRestart extends NodeEvent {
  reason: string
  /** The session blamed for the crash, when the sandbox knows it. */
  culpritSession?: string
}

export interface DiscoveryConflict extends NodeEvent {
  /** The name in dispute. */
  name: string
  /** The other node's address. */
  address: string
  /** The name this node advertises instead, when it renamed itself. */
  renamedTo?: string
}
export interface DiscoveryWarning extends NodeEvent { message: string }
export interface DiscoveryPeer extends NodeEvent { name: string, address: string, port: number, id?: string }

/** A message from the NATS backbone that was dropped (bad stream message, open or datagram). */
export interface NatsDropped extends NodeEvent { subject: string, reason: string, detail: string }
/** The NATS connection changed state: disconnect, reconnect, error (with the server or message). */
export interface NatsStatus extends NodeEvent { type: string, data: string }
/** The node joined the NATS backbone. */
export interface NatsJoined extends NodeEvent { servers: string[], mesh: string, server: string }

export interface ControlPortUnavailable extends NodeEvent { message: string, path?: string }

export interface NodeStarted extends NodeEvent {
  name: string
  host: string
  port: number
  /** The LAN interface address, when on a LAN. */
  lan?: string
}
export interface NodeStopping extends NodeEvent { reason: string }
/** Another live node holds the state dir's node.json; this one leaves it alone. */
export interface NodeLocatorKept extends NodeEvent { stateDir: string, holder: string, pid: number, port: number }
/** What the durable store brought back at start (done-store.ts). */
export interface StoreRestored extends NodeEvent { path: string, restored: number, lost: number }
/** Another live node keeps the state dir's transactions: this one keeps its own in memory only. */
export interface StoreShared extends NodeEvent { path: string, holder: string, pid: number }
/** The journal could not be written (disk full, I/O error): the node goes on with its transactions in memory only. */
export interface StoreFailed extends NodeEvent { path: string, error: string }
export interface PolicyChanged extends NodeEvent { by: string, hosts: string[], gags: string[] }
/** Limits, quotas, functions or the drain of a running node changed (control port, fleet reload). */
export interface SettingsChanged extends NodeEvent { by: string, what: 'limits' | 'quotas' | 'functions' | 'drain', change: Record<string, unknown> }
export interface TraceSwitched extends NodeEvent {
  on: boolean
  /** The ring was emptied. */
  cleared?: boolean
  by?: string
}

/** Every event of a node, by its short name. */
export const channels = {
  connectionAccepted: channel<ConnectionAccepted>('evalmesh:connection:accepted'),
  connectionClosed: channel<ConnectionClosed>('evalmesh:connection:closed'),
  connectionRefused: channel<ConnectionRefused>('evalmesh:connection:refused'),

  requestServed: channel<RequestServed>('evalmesh:request:served'),
  requestRefused: channel<RequestRefused>('evalmesh:request:refused'),
  requestBusy: channel<RequestBusy>('evalmesh:request:busy'),

  txnStarted: channel<TxnStarted>('evalmesh:txn:started'),
  txnFinished: channel<TxnEnded>('evalmesh:txn:finished'),
  txnFailed: channel<TxnEnded>('evalmesh:txn:failed'),
  txnAborted: channel<TxnEnded>('evalmesh:txn:aborted'),
  txnLost: channel<TxnEnded>('evalmesh:txn:lost'),
  txnAbortRequested: channel<TxnAbortRequested>('evalmesh:txn:abort-requested'),

  broadcastDeclined: channel<BroadcastDeclined>('evalmesh:broadcast:declined'),
  broadcastBusy: channel<BroadcastBusy>('evalmesh:broadcast:busy'),
  broadcastOffered: channel<BroadcastOffered>('evalmesh:broadcast:offered'),
  datagramDropped: channel<DatagramDropped>('evalmesh:broadcast:datagram-dropped'),
  broadcastError: channel<BroadcastError>('evalmesh:broadcast:error'),

  sandboxRestart: channel<SandboxRestart>('evalmesh:sandbox:restart'),

  discoveryConflict: channel<DiscoveryConflict>('evalmesh:discovery:conflict'),
  discoveryWarning: channel<DiscoveryWarning>('evalmesh:discovery:warning'),
  peerAppeared: channel<DiscoveryPeer>('evalmesh:discovery:peer-appeared'),
  peerDisappeared: channel<DiscoveryPeer>('evalmesh:discovery:peer-disappeared'),

  natsDropped: channel<NatsDropped>('evalmesh:nats:dropped'),
  natsStatus: channel<NatsStatus>('evalmesh:nats:status'),
  natsJoined: channel<NatsJoined>('evalmesh:nats:joined'),

  controlPortUnavailable: channel<ControlPortUnavailable>('evalmesh:control:unavailable'),

  nodeStarted: channel<NodeStarted>('evalmesh:node:started'),
  nodeStopping: channel<NodeStopping>('evalmesh:node:stopping'),
  nodeLocatorKept: channel<NodeLocatorKept>('evalmesh:node:locator-kept'),
  storeRestored: channel<StoreRestored>('evalmesh:store:restored'),
  storeShared: channel<StoreShared>('evalmesh:store:shared'),
  storeFailed: channel<StoreFailed>('evalmesh:store:failed'),
  policyChanged: channel<PolicyChanged>('evalmesh:policy:changed'),
  settingsChanged: channel<SettingsChanged>('evalmesh:settings:changed'),
  traceSwitched: channel<TraceSwitched>('evalmesh:trace:switched')
} as const

export type EventName = keyof typeof channels
/** The payload type of event E. */
export type PayloadOf<E extends EventName> = (typeof channels)[E] extends TypedChannel<infer T> ? T : never

/**
 * Publish `payload` on `ch`, only if anyone listens. Build the payload inline, so that
 * with no subscriber the call costs one property read and no allocation beyond it:
 *
 * ```ts
 * publish(channels.sandboxRestart, { node: this.id, reason })
 * ```
 */
export function publish<T> (ch: TypedChannel<T>, payload: T): void {
  if (ch.hasSubscribers) ch.publish(payload)
}

export type Level = 'debug' | 'info' | 'warn' | 'error'
export const LEVELS: Readonly<Record<Level, number>> = Object.freeze({ debug: 10, info: 20, warn: 30, error: 40 })

/** The trace kinds (PROTOCOL.md §3.8) events are recorded under. */
export type TraceKind = TraceEventKind

/** Makes one interpolated string safe for where it goes (printable() for text logs, as-is for the trace). */
export type Escape = (s: string) => string

export interface EventSpec<E extends EventName> {
  /** The middle part of the channel name: the component it happened in. */
  component: string
  /** The last part of the channel name. */
  event: string
  level: Level
  /** The trace kind it is recorded under in the trace ring, or null: not recorded there. */
  trace: TraceKind | null
  /** The trace's wording (kept as the node has always written it); the log's too unless `text` is given. */
  detail: (p: PayloadOf<E>, s: Escape) => string
  /** The log's wording, when the component name already says part of `detail`. */
  text?: (p: PayloadOf<E>, s: Escape) => string
  /** The txn the event is about, if any (the trace's `txn`; who may see it). */
  txn?: (p: PayloadOf<E>) => string | undefined
  /** The peer name shown with it (the trace's `peer`). */
  peer?: (p: PayloadOf<E>) => string | undefined
}

const ofTxn = (p: { txn: string }): string => p.txn
const ofPeer = (p: { peer: string }): string => p.peer
const ended = (how: string) => (p: TxnEnded, s: Escape): string =>
  `${how} in ${p.seconds.toFixed(3)} s` + (p.error === undefined ? '' : `: ${s(p.error.code)} ${s(p.error.message)}`)
const list = (xs: string[], s: Escape): string => `[${xs.map(s).join(', ')}]`

/**
 * The one table of events: level, trace kind and wording of each. Every string a peer
 * may have chosen (names, forms, reasons, messages, mDNS names) goes through `s`.
 */
export const EVENTS: { readonly [E in EventName]: EventSpec<E> } = {
  connectionAccepted: {
    component: 'connection', event: 'accepted', level: 'debug', trace: 'connect', peer: ofPeer,
    detail: (p, s) => `connection ${p.connection} from ${s(p.address)} (trusted by ${s(p.trustedBy)})`
  },
  connectionClosed: {
    component: 'connection', event: 'closed', level: 'debug', trace: 'disconnect', peer: ofPeer,
    detail: p => `connection ${p.connection} closed`
  },
  connectionRefused: {
    component: 'connection', event: 'refused', level: 'warn', trace: 'refused',
    detail: (p, s) => `connection from ${s(p.address)} refused: ${s(p.message)}`
  },

  requestServed: {
    component: 'request', event: 'served', level: 'debug', trace: 'served', txn: ofTxn, peer: ofPeer,
    detail: (p, s) => `${s(p.mode)} ${s(p.kind)} admitted (${s(p.rule)}): ${s(p.summary)}`
  },
  requestRefused: {
    component: 'request', event: 'refused', level: 'info', trace: 'refused', txn: ofTxn, peer: ofPeer,
    detail: (p, s) => `${s(p.mode)} request refused: ${s(p.rule)}`
  },
  requestBusy: {
    component: 'request', event: 'busy', level: 'info', trace: 'busy', txn: ofTxn, peer: ofPeer,
    detail: (p, s) => s(p.message)
  },

  txnStarted: {
    component: 'txn', event: 'started', level: 'debug', trace: 'started', txn: ofTxn, peer: ofPeer,
    detail: (p, s) => `started: ${s(p.summary)}`
  },
  txnFinished: { component: 'txn', event: 'finished', level: 'debug', trace: 'finished', txn: ofTxn, peer: ofPeer, detail: ended('completed') },
  txnFailed: { component: 'txn', event: 'failed', level: 'debug', trace: 'failed', txn: ofTxn, peer: ofPeer, detail: ended('failed') },
  txnAborted: { component: 'txn', event: 'aborted', level: 'info', trace: 'aborted', txn: ofTxn, peer: ofPeer, detail: ended('aborted') },
  txnLost: { component: 'txn', event: 'lost', level: 'warn', trace: 'lost', txn: ofTxn, peer: ofPeer, detail: ended('lost') },
  txnAbortRequested: {
    component: 'txn', event: 'abort-requested', level: 'info', trace: 'aborted', txn: ofTxn, peer: p => p.by,
    detail: (p, s) => s(p.reason),
    text: (p, s) => `abort requested: ${s(p.reason)}`
  },

  broadcastDeclined: {
    component: 'broadcast', event: 'declined', level: 'debug', trace: 'declined', txn: ofTxn, peer: ofPeer,
    detail: (p, s) => `broadcast declined: ${s(p.rule)}`
  },
  broadcastBusy: {
    component: 'broadcast', event: 'busy', level: 'info', trace: 'busy', txn: ofTxn, peer: ofPeer,
    detail: p => `broadcast declined: no capacity (${p.load} running, queued or offered)`
  },
  broadcastOffered: {
    component: 'broadcast', event: 'offered', level: 'debug', trace: 'offer', txn: ofTxn, peer: ofPeer,
    detail: (p, s) => `offered to run broadcast (${s(p.rule)}); load ${p.load}/${p.concurrency}`
  },
  datagramDropped: {
    component: 'broadcast', event: 'datagram-dropped', level: 'debug', trace: 'refused',
    detail: (p, s) => `datagram from ${s(formatHost(String(p.address), p.port))} dropped (${s(p.reason)}): ${s(p.detail)}`
  },
  broadcastError: {
    component: 'broadcast', event: 'error', level: 'warn', trace: 'error',
    detail: (p, s) => p.where === 'socket' ? `broadcast socket: ${s(p.message)}` : `cannot answer ${s(p.where)}: ${s(p.message)}`
  },

  sandboxRestart: {
    component: 'sandbox', event: 'restart', level: 'warn', trace: 'error',
    detail: (p, s) => `sandbox restarted: ${s(p.reason)}`,
    text: (p, s) => `restarted: ${s(p.reason)}` + (p.culpritSession === undefined ? '' : ` (session ${s(p.culpritSession)})`)
  },

  discoveryConflict: {
    component: 'discovery', event: 'conflict', level: 'warn', trace: 'error',
    detail: (p, s) => p.renamedTo !== undefined
      ? `mDNS: the name ${s(p.name)} is taken on this LAN (by ${s(p.address)}); advertising this node as ${s(p.renamedTo)}`
      : `mDNS: ${s(p.address)} also claims the name ${s(p.name)} on this LAN`
  },
  discoveryWarning: {
    component: 'discovery', event: 'warning', level: 'warn', trace: 'error',
    detail: (p, s) => `discovery: ${s(p.message)}`,
    text: (p, s) => s(p.message)
  },
  peerAppeared: {
    component: 'discovery', event: 'peer-appeared', level: 'info', trace: 'connect',
    detail: (p, s) => `peer ${s(p.name)} appeared at ${s(formatHost(String(p.address), p.port))}`
  },
  peerDisappeared: {
    component: 'discovery', event: 'peer-disappeared', level: 'info', trace: 'connect',
    detail: (p, s) => `peer ${s(p.name)} disappeared at ${s(formatHost(String(p.address), p.port))}`
  },

  natsDropped: {
    component: 'nats', event: 'dropped', level: 'debug', trace: 'refused',
    detail: (p, s) => `NATS message on ${s(p.subject)} dropped (${s(p.reason)}): ${s(p.detail)}`
  },
  natsStatus: {
    component: 'nats', event: 'status', level: 'info', trace: 'error',
    detail: (p, s) => `NATS connection: ${s(p.type)} ${s(p.data)}`
  },
  natsJoined: {
    component: 'nats', event: 'joined', level: 'info', trace: null,
    detail: (p, s) => `joined NATS mesh ${s(p.mesh)} on ${s(p.server)} (servers ${list(p.servers, s)})`
  },

  controlPortUnavailable: {
    component: 'control', event: 'unavailable', level: 'warn', trace: 'error',
    detail: (p, s) => `no control port: ${s(p.message)}`,
    text: (p, s) => `no control port: ${s(p.message)}`
  },

  nodeStarted: {
    component: 'node', event: 'started', level: 'info', trace: null,
    detail: (p, s) => `node ${s(p.name)} (id ${p.node}) listening on ${s(formatHost(String(p.host), p.port))}` + (p.lan === undefined ? '' : ` (LAN ${s(p.lan)})`)
  },
  nodeStopping: {
    component: 'node', event: 'stopping', level: 'info', trace: 'error',
    detail: (p, s) => `node stopping: ${s(p.reason)}`,
    text: (p, s) => `stopping: ${s(p.reason)}`
  },
  nodeLocatorKept: {
    component: 'node', event: 'locator-kept', level: 'warn', trace: 'error',
    detail: (p, s) => `node.json: the local node of ${s(p.stateDir)} stays ${s(p.holder)} (pid ${p.pid}) on port ${p.port}`
  },
  storeRestored: {
    component: 'store', event: 'restored', level: 'info', trace: 'error',
    detail: (p, s) => `${p.restored} transactions restored from ${s(p.path)}` + (p.lost === 0 ? '' : `; ${p.lost} were queued or running when the node went down: recorded as lost (node restarted)`)
  },
  storeShared: {
    component: 'store', event: 'shared', level: 'warn', trace: 'error',
    detail: (p, s) => `${s(p.path)}: node ${s(p.holder)} (pid ${p.pid}) keeps the transactions of this state dir; this node keeps its own in memory only`
  },
  storeFailed: {
    component: 'store', event: 'failed', level: 'error', trace: 'error',
    detail: (p, s) => `${s(p.path)} could not be written (${s(p.error)}): from now on this node keeps its transactions in memory only, and a restart will not bring back what it does from here`
  },
  policyChanged: {
    component: 'policy', event: 'changed', level: 'info', trace: 'policy',
    detail: (p, s) => `policy changed by ${s(p.by)}: hosts ${list(p.hosts, s)}, gags ${list(p.gags, s)}`
  },
  settingsChanged: {
    component: 'settings', event: 'changed', level: 'info', trace: 'policy',
    detail: (p, s) => `${p.what} changed by ${s(p.by)}: ${s(JSON.stringify(p.change))}`
  },
  traceSwitched: {
    component: 'trace', event: 'switched', level: 'info', trace: null,
    detail: (p, s) => `trace ${p.on ? 'on' : 'off'}${p.cleared === true ? ', cleared' : ''}` + (p.by === undefined ? '' : ` by ${s(p.by)}`)
  }
}

/** Every event name, in the table's order. */
export const EVENT_NAMES = Object.keys(channels) as EventName[]

/** One event as a subscriber of `subscribeAll` gets it. */
export interface AnyEvent<E extends EventName = EventName> {
  name: E
  spec: EventSpec<E>
  payload: PayloadOf<E>
}

/**
 * Subscribe `fn` to the given events (default: all). Returns the unsubscribe. `fn` runs
 * synchronously inside the publisher; an exception it throws is caught and dropped, as a
 * subscriber must never break the node (diagnostics_channel would rethrow it as an
 * uncaught exception otherwise).
 */
export function subscribeAll (fn: (e: AnyEvent) => void, names: readonly EventName[] = EVENT_NAMES): () => void {
  const undo: Array<() => void> = []
  for (const name of names) {
    const ch = channels[name] as TypedChannel<unknown>
    const spec = EVENTS[name] as EventSpec<EventName>
    const listener = (payload: unknown): void => {
      try { fn({ name, spec, payload: payload as PayloadOf<EventName> }) } catch { /* a subscriber never breaks the node */ }
    }
    ch.subscribe(listener)
    undo.push(() => { ch.unsubscribe(listener) })
  }
  let done = false
  return () => {
    if (done) return
    done = true
    for (const u of undo) u()
  }
}

/** The events at or above `level`. */
export function eventsAtLeast (level: Level): EventName[] {
  return EVENT_NAMES.filter(n => LEVELS[EVENTS[n].level] >= LEVELS[level])
}

/**
 * The peer id an event belongs to, for who may see it: the owner of its txn (the client
 * whose txn it is, whoever aborted it), else the peer it is about; undefined for node events.
 */
export function ownerOf (e: AnyEvent): string | undefined {
  const txn = e.spec.txn?.(e.payload)
  if (txn !== undefined) {
    const owner = txnOwner(txn)
    if (owner !== undefined) return owner
  }
  const p = e.payload as Partial<PeerEvent>
  return typeof p.peerId === 'string' ? p.peerId : undefined
}

/** The node id of the client that owns `txn`, or undefined when it does not parse. */
export function txnOwner (txn: string): string | undefined {
  try { return nodeIdOfClient(parseTxn(txn).client) } catch { return undefined }
}

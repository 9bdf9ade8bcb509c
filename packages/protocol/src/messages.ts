/**
 * Every message on the wire, as a discriminated union on `kind` (PROTOCOL.md §3, §4).
 * Parsing is separate from handling: `parseRequest` validates a decoded frame and
 * returns a typed request, or throws BAD_MESSAGE / UNKNOWN_KIND naming the field.
 */
import { EvalMeshError, type WireError } from './errors.js'
import { isTxnString } from './txn.js'

// ---- handshake (PROTOCOL.md §2) ----------------------------------------------

export interface ClientHello {
  kind: 'hello'
  versions: number[]
  role: 'client'
  id: string
  name: string
  /** Ed25519 public key, 32 raw bytes. */
  key: Uint8Array
  nonce: Uint8Array
}

export interface ServerHello {
  kind: 'hello'
  version: number
  role: 'server'
  id: string
  name: string
  key: Uint8Array
  nonce: Uint8Array
  /** Ed25519 signature over the server transcript. */
  sig: Uint8Array
  /** HMAC-SHA256 of the server transcript under the mesh key, when the node has one. */
  mac?: Uint8Array
}

export interface ClientAuth {
  kind: 'auth'
  sig: Uint8Array
  mac?: Uint8Array
}

export interface Welcome {
  kind: 'welcome'
  /** The client id the server will accept in this connection's transactions. */
  peer: string
  limits: NodeLimits
}

// ---- limits ---------------------------------------------------------------------

/** Per-evaluation limits. A request may tighten the node's limits, never raise them. */
export interface EvalLimits {
  /** Wall time, milliseconds. */
  timeoutMs: number
  /** Isolate heap, MiB (isolated-vm treats this as a guideline). */
  memoryMb: number
  /** Encoded result size, bytes. */
  resultBytes: number
  /** Captured console output, bytes. */
  outputBytes: number
}

export interface NodeLimits extends EvalLimits {
  maxFrameBytes: number
  maxDepth: number
  maxStringBytes: number
  concurrency: number
  queueLength: number
}

// ---- requests (client to server) -----------------------------------------------

export type EvalMode = 'directed' | 'broadcast'

interface RequestBase { id: number }

export interface EvalRequest extends RequestBase {
  kind: 'eval'
  txn: string
  form: string
  /** Name of the client's persistent context; default "default". */
  session?: string
  wait: boolean
  limits?: Partial<EvalLimits>
  /** Set when the request follows a broadcast offer (PROTOCOL.md §5). */
  claim?: string
  /** Send the form's console output as it happens, as `output` events on this request's id (§3.2). */
  stream?: boolean
}

export interface ApplyRequest extends RequestBase {
  kind: 'apply'
  txn: string
  fn: string
  args: unknown[]
  wait: boolean
  limits?: Partial<EvalLimits>
  claim?: string
}

export interface AbortRequest extends RequestBase {
  kind: 'abort'
  /** A full txn id, or a bare sequence number (EVALSERVER's integer id). */
  txn: string | number
  /** Client id to disambiguate a bare sequence number. */
  client?: string
  reason?: string
  mustExist?: boolean
}

export type StatusWhich = 'input' | 'running' | 'done' | 'all'

export interface StatusRequest extends RequestBase {
  kind: 'status'
  which?: StatusWhich
  txn?: string | number
  /** At most this many records (running first, then input, then done newest first). */
  limit?: number
}

export interface ResultRequest extends RequestBase {
  kind: 'result'
  txn: string
  /** Wait for a transaction still queued or running instead of answering TXN_NOT_DONE. */
  wait?: boolean
  /** While waiting, send the run's console output so far, then as it happens, as `output` events on this id (§3.7). */
  stream?: boolean
}

export interface DescribeRequest extends RequestBase { kind: 'describe' }
export interface PingRequest extends RequestBase { kind: 'ping' }
export interface ResetRequest extends RequestBase { kind: 'reset', session?: string }

export interface PolicyRequest extends RequestBase {
  kind: 'policy'
  /** Replace the hosts list. */
  hosts?: string[]
  /** Replace the gags list. */
  gags?: string[]
  gag?: string[]
  ungag?: string[]
}

export interface TraceRequest extends RequestBase {
  kind: 'trace'
  /** Turn tracing on or off; omitted leaves it as it is. */
  on?: boolean
  /** Return events with seq greater than this. */
  since?: number
  /** Clear the trace buffer. */
  clear?: boolean
}

/** The node's peer table (discovered and seeded nodes). */
export interface PeersRequest extends RequestBase { kind: 'peers' }

/**
 * Open a stream of the node's events on this request's id (PROTOCOL.md §3.11): the
 * reply says it is open, then event frames follow until the connection closes.
 */
export interface SubscribeRequest extends RequestBase {
  kind: 'subscribe'
  /** Also send the trace events recorded after this seq first (default: only new ones). */
  since?: number
}

export type Request =
  | EvalRequest | ApplyRequest | AbortRequest | StatusRequest | ResultRequest
  | DescribeRequest | PingRequest | ResetRequest | PolicyRequest | TraceRequest | PeersRequest | SubscribeRequest

export type RequestKind = Request['kind']

export const REQUEST_KINDS: readonly RequestKind[] = [
  'eval', 'apply', 'abort', 'status', 'result', 'describe', 'ping', 'reset', 'policy', 'trace', 'peers', 'subscribe'
]

// ---- replies (server to client) -------------------------------------------------

export interface ReplyOk { kind: 'reply', id: number, ok: true, value: unknown }
export interface ReplyErr { kind: 'reply', id: number, ok: false, error: WireError }
export type Reply = ReplyOk | ReplyErr

/** A fatal, connection-level error; the sender closes the connection after it. */
export interface ErrorMessage { kind: 'error', error: WireError }

// ---- transaction records (PROTOCOL.md §3.4) --------------------------------------

export type TxnState = 'input' | 'running' | 'done'

/** How a done transaction stopped (EVALSERVER's HowStop). */
export type HowStopped = 'completed' | 'failed' | 'aborted' | 'lost'

export interface TxnRecord {
  txn: string
  client: string
  clientName: string
  seq: number
  kind: 'eval' | 'apply'
  /** First line of the form, or fn(args), shortened. */
  summary: string
  mode: EvalMode | 'self'
  state: TxnState
  queuedAt: number
  startedAt?: number
  endedAt?: number
  /** Seconds from start to end (or to now, while running). */
  seconds?: number
  howStopped?: HowStopped
  /** Error code for failed, aborted and lost transactions. */
  errorCode?: string
  /** Why it was stopped: "aborted locally", "aborted remotely by X", or the reason given. */
  reason?: string
  /** Whether the result is kept for re-fetch. */
  resultKept?: boolean
  /** The session an eval runs in: its name, or 'transient' for a fresh context of its own. */
  session?: string
  /** While in input: why it is not running yet ("session default, held by n1:7", "client quota: 6 running"). */
  waiting?: string
  /** While in input behind another run of the same session: that run's txn. */
  heldBy?: string
}

/** The value of a successful eval/apply/result reply. */
export interface EvalOutcome {
  txn: string
  node: string
  state: 'done'
  value: unknown
  output: string
  outputTruncated: boolean
  seconds: number
  /** Present when the session's globals were gone when this run started, and why (evicted, memory, sandbox replaced). */
  contextLost?: string
  /** 'transient' when the request named no session and the default one was busy: it ran in a fresh context of its own. */
  session?: string
}

/** The value of an eval/apply reply when wait is false: the acknowledgement. */
export interface EvalAck {
  txn: string
  node: string
  state: 'input' | 'running' | 'done'
}

// ---- validation -----------------------------------------------------------------

function bad (why: string): never {
  throw new EvalMeshError('BAD_MESSAGE', why)
}

export function asRecord (value: unknown, what = 'message'): Record<string, unknown> {
  if (typeof value !== 'object' || value === null || Array.isArray(value) || value instanceof Uint8Array || value instanceof Map) {
    bad(`${what} must be a CBOR map`)
  }
  return value as Record<string, unknown>
}

export function field<T> (m: Record<string, unknown>, name: string, check: (v: unknown) => v is T, want: string, optional = false): T {
  const v = m[name]
  if (v === undefined) {
    if (optional) return undefined as T
    bad(`field "${name}" is missing (want ${want})`)
  }
  if (!check(v)) bad(`field "${name}" must be ${want}`)
  return v
}

export const isString = (v: unknown): v is string => typeof v === 'string'
export const isBool = (v: unknown): v is boolean => typeof v === 'boolean'
/**
 * A uint field: any CBOR integer encoding (1, 2, 4 or 8 bytes) or an integral float,
 * up to 2^53 - 1 (the decoder gives Numbers up to there, BigInt beyond; §1.3).
 */
export const isUint = (v: unknown): v is number => typeof v === 'number' && Number.isSafeInteger(v) && v >= 0
const UINT = 'an unsigned integer (at most 2^53 - 1)'
export const isBytes = (v: unknown): v is Uint8Array => v instanceof Uint8Array
export const isStringArray = (v: unknown): v is string[] => Array.isArray(v) && v.every(isString)
const isTxnOrSeq = (v: unknown): v is string | number => isTxnString(v) || isUint(v)
const isTxn = (v: unknown): v is string => isTxnString(v)
const isWhich = (v: unknown): v is StatusWhich => v === 'input' || v === 'running' || v === 'done' || v === 'all'
const isArray = (v: unknown): v is unknown[] => Array.isArray(v)

/** The limits a request may set (PROTOCOL.md §3.2); other keys are ignored (§8). */
export const REQUEST_LIMIT_KEYS = ['timeoutMs', 'memoryMb', 'resultBytes', 'outputBytes'] as const

function badLimits (why: string, field: string): never {
  throw new EvalMeshError('BAD_LIMITS', why, { field })
}

/**
 * The optional `limits` map of eval and apply. Each known key must be a positive
 * integer (a CBOR integer of any width, or an integral float); a wrong one is
 * BAD_LIMITS naming it. Unknown keys are ignored, as unknown fields are everywhere
 * (§8), so that a later version can add limits without breaking older nodes.
 */
export function parseLimits (m: Record<string, unknown>): Partial<EvalLimits> | undefined {
  const v = m.limits
  if (v === undefined) return undefined
  if (typeof v !== 'object' || v === null || Array.isArray(v) || v instanceof Uint8Array || v instanceof Map) {
    badLimits('field "limits" must be a map of positive integers (timeoutMs, memoryMb, resultBytes, outputBytes)', 'limits')
  }
  const given = v as Record<string, unknown>
  const out: Partial<EvalLimits> = {}
  for (const key of REQUEST_LIMIT_KEYS) {
    const x = given[key]
    if (x === undefined) continue
    if (!(typeof x === 'number' && Number.isSafeInteger(x) && x > 0)) {
      badLimits(`field "limits.${key}" must be a positive integer, got ${describeValue(x)}`, `limits.${key}`)
    }
    out[key] = x
  }
  return out
}

/** A short, safe description of a bad value for an error message. */
function describeValue (x: unknown): string {
  if (typeof x === 'number' || typeof x === 'boolean' || typeof x === 'bigint' || x === null) return String(x) + (typeof x === 'bigint' ? 'n' : '')
  if (typeof x === 'string') return JSON.stringify(x.slice(0, 20)) + (x.length > 20 ? '...' : '')
  return Array.isArray(x) ? 'an array' : typeof x === 'object' ? 'a map' : typeof x
}

const MAX_SESSION_NAME = 64

/** Validate a decoded frame received after the handshake as a client request. */
export function parseRequest (value: unknown): Request {
  const m = asRecord(value)
  const kind = m.kind
  if (typeof kind !== 'string') bad('field "kind" is missing (want a string)')
  const id = field(m, 'id', isUint, UINT)
  switch (kind) {
    case 'eval': {
      const session = field(m, 'session', isString, 'a string', true)
      if (session !== undefined && (session.length === 0 || session.length > MAX_SESSION_NAME)) bad(`field "session" must be 1..${MAX_SESSION_NAME} characters`)
      const r: EvalRequest = {
        kind, id,
        txn: field(m, 'txn', isTxn, 'a transaction id "<client>:<seq>"'),
        form: field(m, 'form', isString, 'a string of JavaScript source'),
        wait: field(m, 'wait', isBool, 'a boolean', true) ?? true
      }
      if (session !== undefined) r.session = session
      const limits = parseLimits(m)
      if (limits !== undefined) r.limits = limits
      const claim = field(m, 'claim', isString, 'a string', true)
      if (claim !== undefined) r.claim = claim
      if (field(m, 'stream', isBool, 'a boolean', true) === true) r.stream = true
      return r
    }
    case 'apply': {
      const r: ApplyRequest = {
        kind, id,
        txn: field(m, 'txn', isTxn, 'a transaction id "<client>:<seq>"'),
        fn: field(m, 'fn', isString, 'a function name'),
        args: field(m, 'args', isArray, 'an array', true) ?? [],
        wait: field(m, 'wait', isBool, 'a boolean', true) ?? true
      }
      const limits = parseLimits(m)
      if (limits !== undefined) r.limits = limits
      const claim = field(m, 'claim', isString, 'a string', true)
      if (claim !== undefined) r.claim = claim
      return r
    }
    case 'abort': {
      const r: AbortRequest = { kind, id, txn: field(m, 'txn', isTxnOrSeq, 'a transaction id or a sequence number') }
      const client = field(m, 'client', isString, 'a string', true)
      if (client !== undefined) r.client = client
      const reason = field(m, 'reason', isString, 'a string', true)
      if (reason !== undefined) r.reason = reason.slice(0, 500)
      const mustExist = field(m, 'mustExist', isBool, 'a boolean', true)
      if (mustExist !== undefined) r.mustExist = mustExist
      return r
    }
    case 'status': {
      const r: StatusRequest = { kind, id }
      const which = field(m, 'which', isWhich, '"input", "running", "done" or "all"', true)
      if (which !== undefined) r.which = which
      const txn = field(m, 'txn', isTxnOrSeq, 'a transaction id or a sequence number', true)
      if (txn !== undefined) r.txn = txn
      const limit = field(m, 'limit', isUint, UINT, true)
      if (limit !== undefined) r.limit = limit
      return r
    }
    case 'result': {
      const r: ResultRequest = { kind, id, txn: field(m, 'txn', isTxn, 'a transaction id "<client>:<seq>"') }
      const wait = field(m, 'wait', isBool, 'a boolean', true)
      if (wait !== undefined) r.wait = wait
      if (field(m, 'stream', isBool, 'a boolean', true) === true) r.stream = true
      return r
    }
    case 'describe': case 'ping': case 'peers':
      return { kind, id }
    case 'reset': {
      const r: ResetRequest = { kind, id }
      const session = field(m, 'session', isString, 'a string', true)
      if (session !== undefined) r.session = session
      return r
    }
    case 'policy': {
      const r: PolicyRequest = { kind, id }
      for (const name of ['hosts', 'gags', 'gag', 'ungag'] as const) {
        const v = field(m, name, isStringArray, 'an array of strings', true)
        if (v !== undefined) r[name] = v
      }
      return r
    }
    case 'trace': {
      const r: TraceRequest = { kind, id }
      const on = field(m, 'on', isBool, 'a boolean', true)
      if (on !== undefined) r.on = on
      const since = field(m, 'since', isUint, UINT, true)
      if (since !== undefined) r.since = since
      const clear = field(m, 'clear', isBool, 'a boolean', true)
      if (clear !== undefined) r.clear = clear
      return r
    }
    case 'subscribe': {
      const r: SubscribeRequest = { kind, id }
      const since = field(m, 'since', isUint, UINT, true)
      if (since !== undefined) r.since = since
      return r
    }
    default:
      throw new EvalMeshError('UNKNOWN_KIND', `unknown message kind ${JSON.stringify(kind).slice(0, 40)}`, { kind })
  }
}

/** Validate a decoded frame received by a client as a reply or a fatal error. */
/** An event frame of a stream (§3.11): a batch of events on the id of the request that opened it. */
export interface EventMessage { kind: 'event', id: number, events: unknown[] }

export function parseServerMessage (value: unknown): Reply | ErrorMessage | EventMessage {
  const m = asRecord(value)
  if (m.kind === 'error') return { kind: 'error', error: m.error as WireError }
  if (m.kind === 'event') return { kind: 'event', id: field(m, 'id', isUint, UINT), events: field(m, 'events', isArray, 'an array') }
  if (m.kind !== 'reply') bad(`expected a reply, got kind ${JSON.stringify(m.kind)}`)
  const id = field(m, 'id', isUint, UINT)
  if (m.ok === true) return { kind: 'reply', id, ok: true, value: m.value }
  if (m.ok === false) return { kind: 'reply', id, ok: false, error: m.error as WireError }
  bad('field "ok" must be a boolean')
}

/**
 * The error catalogue. Every error that crosses the wire carries a stable string
 * `code` and its numeric `wire` code; callers match on `code`. Codes are never
 * reused once retired. docs/PROTOCOL.md §6 lists the same table, and a test keeps
 * the two in sync.
 *
 * Ranges: 1xx framing and messages, 2xx trust, 3xx admission, 4xx transactions,
 * 5xx evaluation, 6xx client side, 7xx Megatest, 8xx control and policy.
 *
 * Each entry also says whether the failed request may be sent again (`retry`), which
 * `data` fields the error carries, and where its back-off hint is (`hint`), so that
 * retry code reads the catalogue through `retryOf` and `retryAfterMs` rather than
 * guessing from untyped `err.data`.
 */

/**
 * Whether a request that failed with a code may be sent again:
 * - `same-txn`: nothing was recorded and nothing ran; resend it unchanged, same txn,
 *   to this node or (for a broadcast) any other;
 * - `new-txn`: the node recorded a failed transaction but did not run the work; send
 *   it again under a fresh txn (after the hint, if any);
 * - `never`: it ran, may have run, or cannot succeed as sent; re-fetch the outcome by
 *   txn (`result`, PROTOCOL.md §3.7) or fix the request.
 */
export type Retry = 'same-txn' | 'new-txn' | 'never'

/** Where a code's back-off hint lives in `data`, and how many ms one unit is. */
export interface RetryHint { field: string, unitMs: number }

export interface CatalogueEntry {
  wire: number
  retry: Retry
  /** The `data` fields this code carries beyond the common txn, node, output, seconds, and their types. */
  data?: Readonly<Record<string, 'string' | 'number'>>
  hint?: RetryHint
  message: string
}

export const ERROR_CATALOGUE = {
  FRAME_TOO_LARGE: { wire: 100, retry: 'never', message: 'frame exceeds the size limit' },
  MALFORMED_FRAME: { wire: 101, retry: 'never', message: 'frame is not well-formed CBOR' },
  BAD_MESSAGE: { wire: 102, retry: 'never', message: 'message does not have the required shape' },
  DEPTH_LIMIT: { wire: 103, retry: 'never', message: 'frame nests deeper than the limit' },
  STRING_LIMIT: { wire: 104, retry: 'never', message: 'frame holds a string longer than the limit' },
  UNSUPPORTED_VERSION: { wire: 105, retry: 'never', message: 'no protocol version in common' },
  UNKNOWN_KIND: { wire: 106, retry: 'never', message: 'unknown message kind' },
  HANDSHAKE_FAILED: { wire: 107, retry: 'never', message: 'handshake failed' },
  ITEM_LIMIT: { wire: 108, retry: 'never', message: 'frame holds more data items than the limit' },
  TAG_NOT_ALLOWED: { wire: 109, retry: 'never', message: 'frame uses a CBOR tag outside the allowed set' },

  UNTRUSTED_PEER: { wire: 200, retry: 'never', message: 'peer is not trusted by this node' },
  BAD_SIGNATURE: { wire: 201, retry: 'never', message: 'peer failed to prove its identity' },
  CLIENT_ID_MISMATCH: { wire: 202, retry: 'never', message: 'transaction client id does not belong to the authenticated peer' },
  BAD_DATAGRAM: { wire: 203, retry: 'never', message: 'datagram failed authentication or replay check' },
  FORBIDDEN: { wire: 204, retry: 'never', data: { right: 'string' }, message: 'the request needs a right this client does not have' },
  INTEGRITY_FAILED: { wire: 205, retry: 'never', message: 'a frame failed its integrity check (altered, injected, replayed or reordered on the way)' },
  INTEGRITY_REQUIRED: { wire: 206, retry: 'never', message: 'the connection needs frame integrity or TLS, and the peer offered neither' },

  REFUSED: { wire: 300, retry: 'same-txn', data: { rule: 'string' }, message: 'request refused by the admission policy' },
  BUSY: { wire: 301, retry: 'same-txn', data: { retryAfterMs: 'number' }, hint: { field: 'retryAfterMs', unitMs: 1 }, message: 'node is at capacity; retry later' },
  SHUTTING_DOWN: { wire: 302, retry: 'never', message: 'node is shutting down' },
  NO_WILLING_SERVER: { wire: 303, retry: 'same-txn', message: 'no willing server answered in time' },
  QUOTA: { wire: 304, retry: 'new-txn', data: { quota: 'string' }, message: 'a per-client quota is exhausted (sessions, memory or concurrency)' },
  DRAINING: { wire: 305, retry: 'same-txn', data: { retryAt: 'string', retryAfterMs: 'number' }, hint: { field: 'retryAfterMs', unitMs: 1 }, message: 'node is draining (stopping or restarting); retry where data.retryAt says' },

  NO_SUCH_TXN: { wire: 400, retry: 'never', message: 'no such transaction' },
  AMBIGUOUS_TXN: { wire: 401, retry: 'never', message: 'transaction id matches more than one client; give the client too' },
  TXN_CONFLICT: { wire: 402, retry: 'new-txn', message: 'transaction id was already used for a different request' },
  RESULT_NOT_KEPT: { wire: 403, retry: 'never', message: 'result was not kept (over the retention budget or purged)' },
  TXN_WEDGED: { wire: 404, retry: 'never', message: 'transaction did not stop when aborted' },
  TXN_NOT_DONE: { wire: 405, retry: 'same-txn', message: 'transaction has not finished yet' },

  EVAL_ERROR: { wire: 500, retry: 'never', message: 'evaluation threw an error' },
  TIME_LIMIT: { wire: 501, retry: 'never', message: 'evaluation exceeded its wall-time limit' },
  MEMORY_LIMIT: { wire: 502, retry: 'never', message: 'evaluation exceeded its memory limit' },
  RESULT_LIMIT: { wire: 503, retry: 'never', message: 'result exceeds the result size limit' },
  NOT_CLONEABLE: { wire: 504, retry: 'never', message: 'result cannot be cloned (functions, symbols, host objects)' },
  ABORTED: { wire: 505, retry: 'never', data: { reason: 'string' }, message: 'transaction was aborted' },
  SANDBOX_LOST: { wire: 506, retry: 'never', message: 'the sandbox process died during the evaluation' },
  UNKNOWN_FUNCTION: { wire: 507, retry: 'never', message: 'no function is registered under that name' },
  BAD_LIMITS: { wire: 508, retry: 'never', data: { field: 'string' }, message: 'requested limits are not valid' },
  RESULT_UNENCODABLE: { wire: 509, retry: 'never', message: 'result cannot be sent: it breaks a wire limit (nesting depth, bignum size)' },

  LOST: { wire: 600, retry: 'never', message: 'connection to the node was lost while waiting' },
  CONNECT_FAILED: { wire: 601, retry: 'same-txn', message: 'could not connect to the node' },
  CLIENT_TIMEOUT: { wire: 602, retry: 'never', message: 'no reply within the client timeout' },
  UNKNOWN_HOST: { wire: 603, retry: 'never', message: 'host is neither host:port nor a known peer name' },

  MEGATEST_ERROR: { wire: 700, retry: 'never', message: 'Megatest command failed' },
  READ_ONLY: { wire: 701, retry: 'never', message: 'area is read-only; write commands are refused' },
  UNKNOWN_AREA: { wire: 702, retry: 'never', message: 'this node does not serve that Megatest area' },
  MEGATEST_BUSY: { wire: 703, retry: 'new-txn', data: { wait: 'number' }, hint: { field: 'wait', unitMs: 1000 }, message: 'Megatest server is past its load limit' },
  UNKNOWN_COMMAND: { wire: 704, retry: 'never', message: 'unknown Megatest command' },
  MEGATEST_NOT_SERVED: { wire: 705, retry: 'never', message: 'Megatest command deliberately not served by this server' },

  BAD_COMMAND: { wire: 800, retry: 'never', message: 'malformed control or policy command' }
} as const satisfies Record<string, CatalogueEntry>

export type ErrorCode = keyof typeof ERROR_CATALOGUE

const codeByWire = new Map<number, ErrorCode>(
  Object.entries(ERROR_CATALOGUE).map(([code, { wire }]) => [wire, code as ErrorCode])
)

export function isErrorCode (code: unknown): code is ErrorCode {
  return typeof code === 'string' && Object.hasOwn(ERROR_CATALOGUE, code)
}

export function wireCodeOf (code: ErrorCode): number {
  return ERROR_CATALOGUE[code].wire
}

export function codeOfWire (wire: number): ErrorCode | undefined {
  return codeByWire.get(wire)
}

/**
 * The typed `data` of the codes that carry their own fields (the `data` column of
 * PROTOCOL.md §6), beside the common ones. Fields are optional on read: an error from
 * another implementation may lack them.
 */
export interface ErrorData {
  FORBIDDEN: { right: string }
  REFUSED: { rule: string }
  BUSY: { retryAfterMs: number }
  DRAINING: { retryAt: string, retryAfterMs: number }
  QUOTA: { quota: 'sessions' | 'memory' | 'concurrency' | (string & {}) }
  ABORTED: { reason: string }
  BAD_LIMITS: { field: string }
  MEGATEST_BUSY: { wait: number }
}

/** Fields any transaction error may carry (PROTOCOL.md §3.4). */
export interface CommonErrorData {
  txn?: string
  node?: string
  output?: string
  seconds?: number
}

/** The data of an error with code C, as far as the catalogue knows it. */
export type ErrorDataOf<C extends ErrorCode> = CommonErrorData & (C extends keyof ErrorData ? Partial<ErrorData[C]> : unknown) & Record<string, unknown>

// Compile-time check: every typed field is listed in the catalogue's `data` for its code.
type DataListed = { [C in keyof ErrorData]: Exclude<keyof ErrorData[C], keyof (typeof ERROR_CATALOGUE)[C]['data']> }
const dataListed: { [C in keyof ErrorData]: never } = null as unknown as DataListed
void dataListed

/**
 * The data of `err` typed for `code`, when `err` carries that code; else undefined.
 * `errorData(err, 'BUSY')?.retryAfterMs` is a number or undefined, never a guess.
 */
export function errorData<C extends ErrorCode> (err: unknown, code: C): ErrorDataOf<C> | undefined {
  if (codeOf(err) !== code) return undefined
  const data = dataOf(err) ?? {}
  const out: Record<string, unknown> = { ...data }
  // Drop typed fields of the wrong type, so that the declared types hold.
  for (const [f, type] of Object.entries((ERROR_CATALOGUE[code] as CatalogueEntry).data ?? {})) {
    if (out[f] !== undefined && typeof out[f] !== type) delete out[f]
  }
  return out as ErrorDataOf<C>
}

/** Anything that names a catalogue code: the code itself, or an error carrying one. */
export type HasCode = string | { code?: unknown } | null | undefined

function codeOf (x: unknown): ErrorCode | undefined {
  const code = typeof x === 'string' ? x : (typeof x === 'object' && x !== null ? (x as { code?: unknown }).code : undefined)
  return isErrorCode(code) ? code : undefined
}

/**
 * The retry rule of a code, an EvalMeshError, a RemoteEvalError or a WireError.
 * Anything unknown (no code, a code not in the catalogue, a non-evalmesh error) is
 * `never`: it may have run.
 */
export function retryOf (x: unknown): Retry {
  const code = codeOf(x)
  return code === undefined ? 'never' : ERROR_CATALOGUE[code].retry
}

/**
 * The back-off hint of an error in milliseconds (BUSY's `data.retryAfterMs`,
 * MEGATEST_BUSY's `data.wait` seconds, ...), or undefined when its code has no hint
 * or the error does not carry a usable one.
 */
export function retryAfterMs (err: unknown): number | undefined {
  const code = codeOf(err)
  if (code === undefined) return undefined
  const hint: RetryHint | undefined = (ERROR_CATALOGUE[code] as CatalogueEntry).hint
  if (hint === undefined) return undefined
  const v = dataOf(err)?.[hint.field]
  return typeof v === 'number' && Number.isFinite(v) && v >= 0 ? v * hint.unitMs : undefined
}

/** The `data` map of an error-like value, if it has one. */
function dataOf (err: unknown): Record<string, unknown> | undefined {
  const data = typeof err === 'object' && err !== null ? (err as { data?: unknown }).data : undefined
  return typeof data === 'object' && data !== null ? data as Record<string, unknown> : undefined
}

/** A text field of an error's data (e.g. `dataText(err, 'right')` for FORBIDDEN), or undefined. */
export function dataText (err: unknown, field: string): string | undefined {
  const v = dataOf(err)?.[field]
  return typeof v === 'string' ? v : undefined
}

/** The error object as it travels in a reply (PROTOCOL.md §4). */
export interface WireError {
  code: string
  wire: number
  name: string
  message: string
  /** Remote stack text, for errors thrown by evaluated code. */
  stack?: string
  /** Code-specific details: txn, reason, retryAfterMs, output, rule... */
  data?: Record<string, unknown>
}

/** Base class of every evalmesh error. Match on `code`, not on the class. */
export class EvalMeshError extends Error {
  readonly code: ErrorCode
  readonly wire: number
  readonly data: Record<string, unknown>

  constructor (code: ErrorCode, message?: string, data: Record<string, unknown> = {}, options?: ErrorOptions) {
    super(message ?? ERROR_CATALOGUE[code].message, options)
    this.name = 'EvalMeshError'
    this.code = code
    this.wire = ERROR_CATALOGUE[code].wire
    this.data = data
  }

  toWire (): WireError {
    return { code: this.code, wire: this.wire, name: this.name, message: this.message, data: this.data }
  }
}

/**
 * An error raised by the remote side, rebuilt locally: EVALSERVER's "error brought
 * back locally with the remote message". `remoteName` and `remoteStack` are the
 * remote exception's class name and stack text.
 */
export class RemoteEvalError extends EvalMeshError {
  readonly remoteName: string
  readonly remoteStack: string | undefined
  readonly txn: string | undefined
  readonly node: string | undefined
  /** console output captured before the error, if any. */
  readonly output: string

  constructor (wire: WireError, context: { node?: string } = {}) {
    const code = isErrorCode(wire.code) ? wire.code : 'EVAL_ERROR'
    super(code, wire.message, wire.data ?? {})
    this.name = 'RemoteEvalError'
    this.remoteName = wire.name
    this.remoteStack = wire.stack
    this.txn = typeof wire.data?.txn === 'string' ? wire.data.txn : undefined
    this.node = context.node ?? (typeof wire.data?.node === 'string' ? wire.data.node : undefined)
    this.output = typeof wire.data?.output === 'string' ? wire.data.output : ''
    const where = this.node !== undefined ? ` on ${this.node}` : ''
    this.stack = `RemoteEvalError [${code}]${where}: ${wire.name}: ${wire.message}` +
      (wire.stack !== undefined ? `\n--- remote stack ---\n${wire.stack}` : '')
  }
}

/** Turn anything thrown into a WireError without leaking host stacks unless asked. */
export function toWireError (err: unknown, fallback: ErrorCode = 'EVAL_ERROR'): WireError {
  if (err instanceof EvalMeshError) return err.toWire()
  if (err instanceof Error) {
    const own = (err as { code?: unknown }).code
    const code = isErrorCode(own) ? own : fallback
    return { code, wire: wireCodeOf(code), name: err.name, message: err.message }
  }
  return { code: fallback, wire: wireCodeOf(fallback), name: 'Error', message: String(err) }
}

/** Validate an error object received from the wire; anything odd becomes BAD_MESSAGE text. */
export function parseWireError (value: unknown): WireError {
  if (typeof value !== 'object' || value === null) {
    return { code: 'BAD_MESSAGE', wire: wireCodeOf('BAD_MESSAGE'), name: 'Error', message: 'reply carried no error object' }
  }
  const v = value as Record<string, unknown>
  const wire = typeof v.wire === 'number' ? v.wire : -1
  const code = isErrorCode(v.code) ? v.code : (codeOfWire(wire) ?? 'EVAL_ERROR')
  const out: WireError = {
    code,
    wire: wireCodeOf(code),
    name: typeof v.name === 'string' ? v.name : 'Error',
    message: typeof v.message === 'string' ? v.message : ERROR_CATALOGUE[code].message
  }
  if (typeof v.stack === 'string') out.stack = v.stack
  if (typeof v.data === 'object' && v.data !== null && !Array.isArray(v.data)) out.data = v.data as Record<string, unknown>
  return out
}

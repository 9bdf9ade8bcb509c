/**
 * The error catalogue. Every error that crosses the wire carries a stable string
 * `code` and its numeric `wire` code; callers match on `code`. Codes are never
 * reused once retired. docs/PROTOCOL.md §6 lists the same table, and a test keeps
 * the two in sync.
 *
 * Ranges: 1xx framing and messages, 2xx trust, 3xx admission, 4xx transactions,
 * 5xx evaluation, 6xx client side, 7xx Megatest, 8xx control and policy.
 */
export const ERROR_CATALOGUE = {
  FRAME_TOO_LARGE: { wire: 100, message: 'frame exceeds the size limit' },
  MALFORMED_FRAME: { wire: 101, message: 'frame is not well-formed CBOR' },
  BAD_MESSAGE: { wire: 102, message: 'message does not have the required shape' },
  DEPTH_LIMIT: { wire: 103, message: 'frame nests deeper than the limit' },
  STRING_LIMIT: { wire: 104, message: 'frame holds a string longer than the limit' },
  UNSUPPORTED_VERSION: { wire: 105, message: 'no protocol version in common' },
  UNKNOWN_KIND: { wire: 106, message: 'unknown message kind' },
  HANDSHAKE_FAILED: { wire: 107, message: 'handshake failed' },
  ITEM_LIMIT: { wire: 108, message: 'frame holds more data items than the limit' },
  TAG_NOT_ALLOWED: { wire: 109, message: 'frame uses a CBOR tag outside the allowed set' },

  UNTRUSTED_PEER: { wire: 200, message: 'peer is not trusted by this node' },
  BAD_SIGNATURE: { wire: 201, message: 'peer failed to prove its identity' },
  CLIENT_ID_MISMATCH: { wire: 202, message: 'transaction client id does not belong to the authenticated peer' },
  BAD_DATAGRAM: { wire: 203, message: 'datagram failed authentication or replay check' },

  REFUSED: { wire: 300, message: 'request refused by the admission policy' },
  BUSY: { wire: 301, message: 'node is at capacity; retry later' },
  SHUTTING_DOWN: { wire: 302, message: 'node is shutting down' },
  NO_WILLING_SERVER: { wire: 303, message: 'no willing server answered in time' },

  NO_SUCH_TXN: { wire: 400, message: 'no such transaction' },
  AMBIGUOUS_TXN: { wire: 401, message: 'transaction id matches more than one client; give the client too' },
  TXN_CONFLICT: { wire: 402, message: 'transaction id was already used for a different request' },
  RESULT_NOT_KEPT: { wire: 403, message: 'result was not kept (over the retention budget or purged)' },
  TXN_WEDGED: { wire: 404, message: 'transaction did not stop when aborted' },
  TXN_NOT_DONE: { wire: 405, message: 'transaction has not finished yet' },

  EVAL_ERROR: { wire: 500, message: 'evaluation threw an error' },
  TIME_LIMIT: { wire: 501, message: 'evaluation exceeded its wall-time limit' },
  MEMORY_LIMIT: { wire: 502, message: 'evaluation exceeded its memory limit' },
  RESULT_LIMIT: { wire: 503, message: 'result exceeds the result size limit' },
  NOT_CLONEABLE: { wire: 504, message: 'result cannot be cloned (functions, symbols, host objects)' },
  ABORTED: { wire: 505, message: 'transaction was aborted' },
  SANDBOX_LOST: { wire: 506, message: 'the sandbox process died during the evaluation' },
  UNKNOWN_FUNCTION: { wire: 507, message: 'no function is registered under that name' },
  BAD_LIMITS: { wire: 508, message: 'requested limits are not valid' },

  LOST: { wire: 600, message: 'connection to the node was lost while waiting' },
  CONNECT_FAILED: { wire: 601, message: 'could not connect to the node' },
  CLIENT_TIMEOUT: { wire: 602, message: 'no reply within the client timeout' },
  UNKNOWN_HOST: { wire: 603, message: 'host is neither host:port nor a known peer name' },

  MEGATEST_ERROR: { wire: 700, message: 'Megatest command failed' },
  READ_ONLY: { wire: 701, message: 'area is read-only; write commands are refused' },
  UNKNOWN_AREA: { wire: 702, message: 'this node does not serve that Megatest area' },
  MEGATEST_BUSY: { wire: 703, message: 'Megatest server is past its load limit' },
  UNKNOWN_COMMAND: { wire: 704, message: 'unknown Megatest command' },

  BAD_COMMAND: { wire: 800, message: 'malformed control or policy command' }
} as const satisfies Record<string, { wire: number, message: string }>

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

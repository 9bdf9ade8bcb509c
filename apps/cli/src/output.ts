import { EvalMeshError, RemoteEvalError, escapeUnsafe, printable, type TxnRecord } from '@evalmesh/protocol'
import { showValue, stackFrames, terminalText } from '@evalmesh/repl'
import { CommandError, UsageError } from './args.js'

/*
 * Everything printed here that a peer chose (names, forms, reasons, error messages,
 * values, console output) is escaped before it reaches a terminal: printable() for one
 * line, terminalText() for text that keeps its lines. JSON stays JSON: the characters a
 * terminal could act on that JSON.stringify leaves as they are (C1 controls, bidi and
 * other format characters, line separators) are written as \u escapes, the same value.
 */

// JSON.stringify already escapes C0 controls and lone surrogates; these it does not.
const JSON_UNSAFE = /[\u007f-\u009f\p{Cf}\p{Zl}\p{Zp}]/gu

/** JSON text with every character a terminal may act on written as a \u escape (still the same JSON value). */
export function safeJson (json: string): string {
  return json.replace(JSON_UNSAFE, ch => {
    const units: string[] = []
    for (let i = 0; i < ch.length; i++) units.push('\\u' + ch.charCodeAt(i).toString(16).padStart(4, '0'))
    return units.join('')
  })
}

/** Values as JSON for --json: BigInt as "123n", Map as an object or entry list, Set as an array. */
export function toJson (value: unknown): string {
  return safeJson(JSON.stringify(jsonable(value)))
}

export function jsonable (value: unknown): unknown {
  if (typeof value === 'bigint') return `${value}n`
  if (value === undefined) return null
  if (value instanceof Date) return value.toISOString()
  if (value instanceof Map) {
    const entries = [...value.entries()]
    return entries.every(([k]) => typeof k === 'string') ? Object.fromEntries(entries.map(([k, v]) => [k, jsonable(v)])) : entries.map(([k, v]) => [jsonable(k), jsonable(v)])
  }
  if (value instanceof Set) return [...value].map(jsonable)
  if (ArrayBuffer.isView(value)) return Array.from(value as unknown as ArrayLike<number | bigint>, v => jsonable(v))
  if (Array.isArray(value)) return value.map(jsonable)
  if (typeof value === 'object' && value !== null) return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, jsonable(v)]))
  return value
}

/**
 * A result for stdout, as the REPL shows it: a string quoted (`'undefined'`, never to be
 * mistaken for the value undefined), an Error result (`{$error: {name, message}}`) as
 * `Error: message`, anything else through util.inspect. On a terminal it is escaped (and
 * coloured). With `raw`, a string goes byte for byte (escaped on a terminal), for scripts.
 */
export function show (value: unknown, tty = process.stdout.isTTY === true, raw = false): string {
  return showValue(value, { tty, raw })
}

/**
 * --json's one shape (README "--json"): `{"ok": true, "value": ...}` on success, with
 * eval's and apply's transaction fields (txn, node, output, ...) beside the value;
 * `{"ok": false, "error": {"code", "message", ...}}` on failure (errorJson). The exit
 * status is 0 exactly when ok is true.
 */
export function jsonOk (value: unknown, extra: Record<string, unknown> = {}): string {
  return toJson({ ok: true, ...extra, value })
}

/** Errors whose console output was already printed as it streamed: not printed again with the error. */
export const outputShown = new WeakSet<object>()

/** A form's console output for stderr: escaped when stderr is a terminal, as it is otherwise. */
export function showOutput (output: string, tty = process.stderr.isTTY === true): string {
  return tty ? terminalText(output) : output
}

export function errorJson (err: unknown): string {
  if (err instanceof CommandError) return toJson({ ok: false, error: { ...err.data, code: err.code, message: err.message } })
  if (err instanceof UsageError) return toJson({ ok: false, error: { code: 'USAGE', message: err.message } })
  if (err instanceof RemoteEvalError) {
    return toJson({ ok: false, error: { code: err.code, wire: err.wire, name: err.remoteName, message: err.message, stack: err.remoteStack, data: err.data } })
  }
  if (err instanceof EvalMeshError) return toJson({ ok: false, error: { code: err.code, wire: err.wire, name: err.name, message: err.message, data: err.data } })
  // Other errors that carry a code of their own (JobError's BAD_JOB, a system error's ENOENT) keep it.
  const code = (err as { code?: unknown }).code
  return toJson({ ok: false, error: { code: typeof code === 'string' ? code : 'ERROR', name: (err as Error).name ?? 'Error', message: (err as Error).message ?? String(err) } })
}

/** An error as a person should read it: the remote error with its remote stack. */
export function errorText (err: unknown): string {
  if (err instanceof RemoteEvalError) {
    // The node, the name, the message and the stack are the peer's: escaped.
    const where = err.node !== undefined ? ` (on ${printable(err.node, 63)}${err.txn !== undefined ? `, txn ${printable(err.txn, 120)}` : ''})` : ''
    const message = printable(err.message, 8192)
    const head = err.code === 'EVAL_ERROR' ? `${printable(err.remoteName, 200)}: ${message}` : `${printable(err.code, 40)}: ${message}`
    const frames = err.code === 'EVAL_ERROR' ? stackFrames(err.remoteStack, err.remoteName, err.message) : ''
    const stack = frames !== '' ? '\n' + frames : ''
    return `error${where}: ${head}${stack}`
  }
  if (err instanceof EvalMeshError) return `error: ${err.code}: ${printable(err.message, 8192)}`
  if (err instanceof CommandError) return `error: ${printable(err.message, 8192)}`
  return `error: ${printable((err as Error).message ?? String(err), 8192)}`
}

/** Columns padded to their widest cell; every cell on one line, unsafe characters shown as escapes. */
export function table (headers: string[], rows: string[][]): string {
  rows = rows.map(r => r.map(c => escapeUnsafe(c ?? '')))
  const widths = headers.map((h, i) => Math.max(h.length, ...rows.map(r => (r[i] ?? '').length)))
  const line = (cells: string[]): string => cells.map((c, i) => c.padEnd(widths[i]!)).join('  ').trimEnd()
  return [line(headers), ...rows.map(line)].join('\n')
}

/** `text` cut to `width` characters, with an ellipsis when cut. */
function clip (text: string, width: number): string {
  const chars = [...text]
  if (chars.length <= width) return text
  // printable() output: never cut inside a visible escape (\x1b, \u202e, \u{e0041}).
  let cut = chars.slice(0, width - 1).join('')
  const tail = /\\(?:x[0-9a-f]{0,1}|u(?:[0-9a-f]{0,3}|\{[0-9a-f]*))?$/.exec(cut)
  if (tail !== null) cut = cut.slice(0, tail.index)
  return cut.trimEnd() + '…'
}

export function recordRows (records: TxnRecord[]): string {
  if (records.length === 0) return '(no transactions)'
  return table(
    ['LIST', 'TXN', 'CLIENT', 'MODE', 'SECONDS', 'HOW STOPPED / WAITING', 'FORM'],
    records.map(r => [
      String(r.state).toUpperCase(), printable(r.txn, 120), printable(r.clientName, 63), printable(r.mode, 20), (r.seconds ?? 0).toFixed(3),
      r.howStopped !== undefined
        ? printable(r.howStopped, 20) + (r.reason !== undefined ? ` (${clip(printable(r.reason, 200), 40)})` : '')
        : r.state === 'input' && r.waiting !== undefined ? `waiting: ${clip(printable(r.waiting, 200), 60)}` : '',
      printable(r.summary, 200)
    ])
  )
}

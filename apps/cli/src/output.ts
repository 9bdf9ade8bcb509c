import { inspect } from 'node:util'
import { EvalMeshError, RemoteEvalError, type TxnRecord } from '@evalmesh/protocol'

/** Values as JSON for --json: BigInt as "123n", Map as an object or entry list, Set as an array. */
export function toJson (value: unknown): string {
  return JSON.stringify(jsonable(value))
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

export function show (value: unknown): string {
  return typeof value === 'string' ? value : inspect(value, { depth: 6, colors: process.stdout.isTTY, breakLength: 100 })
}

export function errorJson (err: unknown): string {
  if (err instanceof RemoteEvalError) {
    return toJson({ ok: false, error: { code: err.code, wire: err.wire, name: err.remoteName, message: err.message, stack: err.remoteStack, data: err.data } })
  }
  if (err instanceof EvalMeshError) return toJson({ ok: false, error: { code: err.code, wire: err.wire, name: err.name, message: err.message, data: err.data } })
  return toJson({ ok: false, error: { code: 'ERROR', name: (err as Error).name ?? 'Error', message: (err as Error).message ?? String(err) } })
}

/** An error as a person should read it: the remote error with its remote stack. */
export function errorText (err: unknown): string {
  if (err instanceof RemoteEvalError) {
    const where = err.node !== undefined ? ` (on ${err.node}${err.txn !== undefined ? `, txn ${err.txn}` : ''})` : ''
    const head = err.code === 'EVAL_ERROR' ? `${err.remoteName}: ${err.message}` : `${err.code}: ${err.message}`
    const stack = err.remoteStack !== undefined && err.code === 'EVAL_ERROR' ? '\n' + err.remoteStack.split('\n').slice(1).join('\n') : ''
    return `error${where}: ${head}${stack}`
  }
  if (err instanceof EvalMeshError) return `error: ${err.code}: ${err.message}`
  return `error: ${(err as Error).message ?? String(err)}`
}

export function table (headers: string[], rows: string[][]): string {
  const widths = headers.map((h, i) => Math.max(h.length, ...rows.map(r => (r[i] ?? '').length)))
  const line = (cells: string[]): string => cells.map((c, i) => c.padEnd(widths[i]!)).join('  ').trimEnd()
  return [line(headers), ...rows.map(line)].join('\n')
}

/** `text` cut to `width` characters, with an ellipsis when cut. */
function clip (text: string, width: number): string {
  return text.length <= width ? text : text.slice(0, width - 1).trimEnd() + '…'
}

export function recordRows (records: TxnRecord[]): string {
  if (records.length === 0) return '(no transactions)'
  return table(
    ['LIST', 'TXN', 'CLIENT', 'MODE', 'SECONDS', 'HOW STOPPED', 'FORM'],
    records.map(r => [
      r.state.toUpperCase(), r.txn, r.clientName, r.mode, (r.seconds ?? 0).toFixed(3),
      r.howStopped === undefined ? '' : r.howStopped + (r.reason !== undefined ? ` (${clip(r.reason, 40)})` : ''),
      r.summary
    ])
  )
}

import { printable, type EvalOutcome, type TraceEvent, type TxnRecord } from '@evalmesh/protocol'
import { seconds, traceLine } from './format.js'

/** Output kept per transaction for the detail view, and how many transactions keep some. */
const OUTPUT_BYTES = 16 * 1024
const OUTPUT_TXNS = 200
/** Trace lines kept per transaction. */
const TRACE_LINES = 20

/** How a transaction ended, for its detail: the outcome, or the error, as fetched by txn. */
export type Ending =
  | { kind: 'outcome', outcome: EvalOutcome }
  | { kind: 'error', code: string, message: string, output?: string }
  | { kind: 'unavailable', why: string }

/**
 * What the detail view shows of each transaction beyond its record: the console output
 * streamed while it ran and its trace lines. Bounded: the newest OUTPUT_TXNS transactions,
 * the last OUTPUT_BYTES of each one's output, the last TRACE_LINES of its trace.
 */
export class TxnNotes {
  readonly #output = new Map<string, string>()
  readonly #trace = new Map<string, TraceEvent[]>()

  output (txn: string, text: string): void {
    const kept = (this.#output.get(txn) ?? '') + text
    this.#output.delete(txn)
    this.#output.set(txn, kept.length > OUTPUT_BYTES ? kept.slice(-OUTPUT_BYTES) : kept)
    if (this.#output.size > OUTPUT_TXNS) this.#output.delete(this.#output.keys().next().value as string)
  }

  trace (event: TraceEvent): void {
    if (event.txn === undefined) return
    const lines = this.#trace.get(event.txn) ?? []
    lines.push(event)
    if (lines.length > TRACE_LINES) lines.shift()
    this.#trace.delete(event.txn)
    this.#trace.set(event.txn, lines)
    if (this.#trace.size > OUTPUT_TXNS) this.#trace.delete(this.#trace.keys().next().value as string)
  }

  outputOf (txn: string): string | undefined { return this.#output.get(txn) }
  traceOf (txn: string): TraceEvent[] { return this.#trace.get(txn) ?? [] }

  clear (): void {
    this.#output.clear()
    this.#trace.clear()
  }
}

function time (ms: number | undefined): string {
  return ms === undefined ? '-' : new Date(ms).toISOString().replace('T', ' ').replace('Z', '')
}

/** The detail of one transaction as lines: every field from a peer escaped (printable). */
export function detailLines (r: TxnRecord, notes: TxnNotes, ending: Ending | undefined, width: number): string[] {
  const w = Math.max(20, width)
  const p = (text: string, max = w): string => printable(text, max)
  const lines = [
    `txn        ${p(r.txn)}`,
    `client     ${p(r.clientName)} (${p(r.client, 40)})  ${p(r.kind, 8)} ${p(r.mode, 12)}${r.session !== undefined ? `  session ${p(r.session, 64)}` : ''}`,
    `form       ${p(r.summary)}`,
    `state      ${p(r.state, 10)}${r.howStopped !== undefined ? `, ${p(r.howStopped, 12)}` : ''}${r.errorCode !== undefined ? ` (${p(r.errorCode, 30)})` : ''}${r.reason !== undefined ? `: ${p(r.reason, 200)}` : ''}`,
    `queued     ${time(r.queuedAt)}`,
    `started    ${time(r.startedAt)}`,
    `ended      ${time(r.endedAt)}${r.seconds !== undefined ? `  took ${seconds(r.seconds)}` : ''}`
  ]
  if (r.waiting !== undefined) lines.push(`waiting    ${p(r.waiting, 200)}`)
  lines.push('')
  if (ending?.kind === 'outcome') {
    lines.push(`result     ${p(JSON.stringify(ending.outcome.value, (_k, v: unknown) => typeof v === 'bigint' ? `${v}n` : v) ?? 'undefined', 4 * w)}`)
  } else if (ending?.kind === 'error') {
    lines.push(`error      ${p(ending.code, 40)}: ${p(ending.message, 4 * w)}`)
  } else if (ending?.kind === 'unavailable') {
    lines.push(`result     (${p(ending.why, 200)})`)
  } else {
    lines.push(r.state === 'done' ? 'result     (asking the node...)' : 'result     (not done yet)')
  }
  const output = notes.outputOf(r.txn) ?? (ending?.kind === 'outcome' ? ending.outcome.output : ending?.kind === 'error' ? ending.output : undefined)
  lines.push('', '--- console output' + (output === undefined || output === '' ? ': none seen' : ' ---'))
  if (output !== undefined && output !== '') {
    for (const line of output.replace(/\n$/, '').split('\n').slice(-40)) lines.push(p(line))
  }
  const trace = notes.traceOf(r.txn)
  lines.push('', '--- trace' + (trace.length === 0 ? ': none (t turns tracing on)' : ' ---'))
  for (const e of trace) lines.push(traceLine(e).slice(0, w))
  lines.push('', 'Esc or Enter closes')
  return lines
}

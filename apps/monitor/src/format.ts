import { formatHost, printable, type PeerEntry, type TraceEvent, type TxnRecord } from '@evalmesh/protocol'

/*
 * Everything shown here that a peer chose (client names, forms, reasons, trace details,
 * peer names and addresses) goes through printable(): control characters, escape
 * sequences, newlines and bidi overrides appear as visible escapes (\x1b, \n, \u202e)
 * and never act on the terminal. monitor.ts uses it too for what it shows directly.
 */
export { printable }

export type ListName = 'running' | 'input' | 'done'

/** Pad or cut `text` to exactly `width` columns: one line, unsafe characters shown as escapes (printable). */
export function fit (text: string, width: number): string {
  if (width <= 0) return ''
  const clean = printable(text, width)
  return clean.padEnd(width)
}

/**
 * A txn id is long (<node id>.<tag>:<seq>); its tail tells transactions apart on one
 * screen: the client's instance tag and the sequence number.
 */
export function shortTxn (txn: string, width = 16): string {
  return txn.length <= width ? txn : '…' + txn.slice(txn.length - width + 1)
}

export function seconds (s: number | undefined): string {
  if (s === undefined || !Number.isFinite(s)) return ''
  if (s < 10) return s.toFixed(2) + 's'
  if (s < 600) return s.toFixed(1) + 's'
  return `${Math.floor(s / 60)}m${String(Math.floor(s % 60)).padStart(2, '0')}s`
}

interface Column { title: string, width: number, value: (r: TxnRecord) => string }

function columns (list: ListName, width: number, nodeNow: number): Column[] {
  const txnW = width >= 90 ? 22 : 14
  const clientW = width >= 70 ? 12 : 8
  const timeW = 8
  const txn: Column = { title: 'TXN', width: txnW, value: r => shortTxn(r.txn, txnW) }
  const client: Column = { title: 'CLIENT', width: clientW, value: r => r.clientName + (r.mode === 'broadcast' ? '*' : '') }
  const form: Column = { title: 'FORM', width: 0, value: r => r.summary }
  const cols: Column[] = [txn, client]
  if (list === 'running') {
    cols.push({ title: 'ELAPSED', width: timeW, value: r => seconds(r.seconds) }, form)
  } else if (list === 'input') {
    cols.push({ title: 'WAITING', width: timeW, value: r => seconds(Math.max(0, (nodeNow - r.queuedAt) / 1000)) }, form)
  } else {
    const howW = width >= 90 ? 30 : 18
    cols.push({ title: 'TOOK', width: timeW, value: r => seconds(r.seconds) }, form, {
      title: 'HOW STOPPED',
      width: howW,
      value: r => r.howStopped === 'completed' || r.reason === undefined
        ? r.howStopped ?? ''
        : r.reason.toLowerCase().startsWith(r.howStopped ?? '') ? r.reason : `${r.howStopped ?? ''}: ${r.reason}`
    })
  }
  const fixed = cols.reduce((n, c) => n + c.width, 0) + cols.length - 1
  form.width = Math.max(6, width - fixed)
  return cols
}

/** The header line and one line per record for a list pane `width` columns wide. */
export function tableLines (list: ListName, records: TxnRecord[], width: number, nodeNow = Date.now()): { header: string, rows: string[] } {
  const cols = columns(list, width, nodeNow)
  const line = (cells: string[]): string => cells.map((c, i) => fit(c, cols[i]!.width)).join(' ').slice(0, Math.max(0, width))
  return {
    header: line(cols.map(c => c.title)),
    rows: records.map(r => line(cols.map(c => c.value(r))))
  }
}

function clock (ms: number): string {
  const d = new Date(ms)
  const p = (n: number, w = 2): string => String(n).padStart(w, '0')
  return `${p(d.getHours())}:${p(d.getMinutes())}:${p(d.getSeconds())}.${p(d.getMilliseconds(), 3)}`
}

/** One trace event as a line: time, kind, txn, peer, detail. */
export function traceLine (e: TraceEvent): string {
  const parts = [clock(e.time), printable(String(e.kind), 20).padEnd(10)]
  if (e.txn !== undefined) parts.push(shortTxn(printable(String(e.txn), 80), 14))
  if (e.peer !== undefined) parts.push(printable(String(e.peer), 63))
  parts.push(printable(String(e.detail), 2000))
  return parts.join(' ')
}

/** Parse the gag editor's input: "+name" (or "name") gags, "-name" ungags. */
export function parseGagEdit (text: string): { gag: string[], ungag: string[] } {
  const gag: string[] = []
  const ungag: string[] = []
  for (const word of text.split(/[\s,]+/)) {
    if (word === '' || word === '+' || word === '-') continue
    if (word.startsWith('-')) ungag.push(word.slice(1))
    else gag.push(word.startsWith('+') ? word.slice(1) : word)
  }
  return { gag, ungag }
}

/** The node's peer table, one line each: name, address, and where the node learned of it. */
export function peerLines (peers: PeerEntry[]): string[] {
  if (peers.length === 0) return ['(no peers known)']
  return peers.map(p => `${printable(String(p.name), 63)} ${printable(formatHost(String(p.address), String(p.port)), 80)} (${printable(String(p.source), 20)})`)
}

import { inspect } from 'node:util'
import type { Client } from '@evalmesh/client'
import { escapeChar, printable, type TxnRecord } from '@evalmesh/protocol'

/*
 * How the CLI and the REPL show what a node sent: values (an Error result is the plain
 * map `{$error: {name, message}}`, PROTOCOL.md §1.3), text a peer chose, and what a
 * request is waiting for. Everything a peer chose is shown through printable() or
 * terminalText(): escape sequences, controls and bidi overrides appear as visible escapes.
 */

// What printable() escapes (its UNSAFE class), apart from newline and tab, which multi-line
// text keeps; an SGR colour sequence is matched whole so that inspect's colours can be kept.
const SGR = '\\x1b\\[[0-9;]*m'
const UNSAFE_IN_TEXT = /[\p{Cc}\p{Cf}\p{Zl}\p{Zp}\p{Cs}]/u
const UNSAFE_OR_SGR = new RegExp(`${SGR}|[\\p{Cc}\\p{Cf}\\p{Zl}\\p{Zp}\\p{Cs}]`, 'gu')

/**
 * Multi-line text made safe for a terminal: every line kept, tabs kept, every other control,
 * escape sequence, separator or bidi character shown as a visible escape (as printable()
 * shows it). `keepColours` keeps SGR colour sequences: for util.inspect output, which has
 * already escaped the controls inside the strings it shows, so any ESC left is its own.
 */
export function terminalText (text: string, options: { keepColours?: boolean } = {}): string {
  const s = typeof text === 'string' ? text : String(text)
  return s.replace(UNSAFE_OR_SGR, (m) => {
    if (m.length > 1) return options.keepColours === true ? m : [...m].map(ch => UNSAFE_IN_TEXT.test(ch) ? escapeChar(ch) : ch).join('')
    if (m === '\n' || m === '\t') return m
    return escapeChar(m)
  })
}

/**
 * The frames of a remote stack, without its head ("TypeError: message", which the caller
 * prints itself): the message may span lines, so the head is cut by its text, not as the
 * first line. Escaped for a terminal, one frame per line.
 */
export function stackFrames (stack: string | undefined, name: string, message: string): string {
  if (stack === undefined || stack === '') return ''
  const head = message === '' ? name : `${name}: ${message}`
  const rest = stack.startsWith(head) ? stack.slice(head.length) : stack.slice(Math.max(0, stack.indexOf('\n')))
  const frames = rest.startsWith('\n') ? rest.slice(1) : rest.includes('\n') ? rest.slice(rest.indexOf('\n') + 1) : ''
  return terminalText(frames.replace(/\n+$/, ''))
}

/** An Error result as the node sends it: `{$error: {name, message}}` and nothing else. */
export interface ErrorValue { $error: { name: string, message: string } }

export function isErrorValue (v: unknown): v is ErrorValue {
  if (typeof v !== 'object' || v === null || Array.isArray(v)) return false
  const proto = Object.getPrototypeOf(v)
  if (proto !== Object.prototype && proto !== null) return false
  const keys = Object.keys(v)
  if (keys.length !== 1 || keys[0] !== '$error') return false
  const e = (v as { $error: unknown }).$error
  return typeof e === 'object' && e !== null && typeof (e as { name?: unknown }).name === 'string' && typeof (e as { message?: unknown }).message === 'string'
}

/** `Error: message` (the name and message escaped: they are the peer's), as Node shows an error. */
export function errorValueText (v: ErrorValue): string {
  const { name, message } = v.$error
  return message === '' ? printable(name, 200) : `${printable(name, 200)}: ${printable(message, 8192)}`
}

const shown = new WeakSet<object>()

/**
 * Make the Error results inside `value` print readably, in place: each `{$error: {...}}`
 * map gets a non-enumerable util.inspect.custom, so util.inspect (and so the REPL) shows
 * `[TypeError: boom]` (`TypeError: boom` at the top level) while code still reads
 * `v.$error.message` and JSON is unchanged. Returns `value`.
 */
export function readableErrors<T> (value: T): T {
  const visit = (v: unknown, top: boolean, depth: number): void => {
    if (typeof v !== 'object' || v === null || depth > 64) return
    if (shown.has(v)) return
    shown.add(v)
    if (isErrorValue(v)) {
      const text = top ? errorValueText(v) : `[${errorValueText(v)}]`
      Object.defineProperty(v, inspect.custom, { value: () => text, enumerable: false, configurable: true })
      return
    }
    if (v instanceof Map) {
      for (const [k, x] of v) { visit(k, false, depth + 1); visit(x, false, depth + 1) }
    } else if (v instanceof Set) {
      for (const x of v) visit(x, false, depth + 1)
    } else if (Array.isArray(v)) {
      for (const x of v) visit(x, false, depth + 1)
    } else if (!ArrayBuffer.isView(v) && !(v instanceof Date)) {
      for (const x of Object.values(v)) visit(x, false, depth + 1)
    }
  }
  visit(value, true, 0)
  return value
}

/**
 * A value as a person should read it, the same in the CLI and the REPL: a string quoted
 * as the REPL shows it (`'undefined'` is the string, `undefined` the value), an Error
 * result as `Error: message`, anything else through util.inspect. With `tty`, the text is
 * made terminal-safe (colours kept). `raw` prints a string byte for byte instead (for
 * scripts: `evalmesh eval --raw`).
 */
export function showValue (value: unknown, options: { tty?: boolean, colors?: boolean, raw?: boolean } = {}): string {
  const tty = options.tty === true
  if (typeof value === 'string' && options.raw === true) return tty ? terminalText(value) : value
  if (isErrorValue(value)) return errorValueText(value)
  const text = inspect(readableErrors(value), { depth: 6, colors: options.colors ?? tty, breakLength: 100 })
  return tty ? terminalText(text, { keepColours: true }) : text
}

// ---- what a request waits for ------------------------------------------------

/** The default time before saying what a request waits for. */
export const WAIT_NOTICE_MS = 1000

const secs = (s: number | undefined): string => `${(s ?? 0).toFixed(1)} s`

/**
 * One line saying what `txn` is doing on the node, from its status record (and, when it
 * waits behind another run of its session, that run's record): "waiting: session default,
 * held by n1.ab:7 (running 3.2 s)" or "running for 1.0 s...", after the txn. Undefined once done.
 */
export function describeWait (record: TxnRecord, holder: TxnRecord | undefined, waitedMs: number): string | undefined {
  const txn = printable(record.txn, 120)
  if (record.state === 'running') return `txn ${txn} running for ${secs(record.seconds)}...`
  if (record.state !== 'input') return undefined
  const why = record.waiting !== undefined ? printable(record.waiting, 300) : 'queued on the node'
  const held = holder !== undefined && holder.state === 'running' ? ` (running ${secs(holder.seconds)})` : ''
  return `txn ${txn} waiting ${secs(waitedMs / 1000)}: ${why}${held}`
}

/**
 * Say once, after `afterMs` without an outcome, what the request `txn` on `host` is waiting
 * for: the node is asked with a status request for that txn (a client sees its own).
 * Returns a stop function: call it when the outcome arrives (it is then never printed).
 */
export function waitNotice (client: Pick<Client, 'status'>, host: string, txn: string, say: (line: string) => void, afterMs = WAIT_NOTICE_MS): () => void {
  let stopped = false
  const started = Date.now()
  const timer = setTimeout(() => {
    void (async () => {
      let line: string | undefined
      try {
        const [record] = await client.status(host, { which: 'all', id: txn })
        if (record === undefined) return
        let holder: TxnRecord | undefined
        if (record.state === 'input' && record.heldBy !== undefined) {
          holder = (await client.status(host, { which: 'all', id: record.heldBy }).catch(() => []))[0]
        }
        line = describeWait(record, holder, Date.now() - started)
      } catch {
        line = `txn ${printable(txn, 120)} waiting ${secs((Date.now() - started) / 1000)} for a reply`
      }
      if (!stopped && line !== undefined) say(line)
    })()
  }, afterMs)
  timer.unref?.()
  return () => { stopped = true; clearTimeout(timer) }
}

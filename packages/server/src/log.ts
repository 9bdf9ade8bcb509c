import { closeSync, fchmodSync, fstatSync, openSync, writeSync } from 'node:fs'
import type { Writable } from 'node:stream'
import { printable } from '@evalmesh/protocol'
import { eventsAtLeast, subscribeAll, LEVELS, type AnyEvent, type Level } from './events.js'

export type { Level as LogLevel }
export type LogFormat = 'text' | 'json'

export const LOG_LEVELS: readonly Level[] = ['debug', 'info', 'warn', 'error']
export const LOG_FORMATS: readonly LogFormat[] = ['text', 'json']

export interface NodeLoggerOptions {
  /** The lowest level written (default info). */
  level?: Level
  /** `text`: one aligned line per event; `json`: one JSON object per line (default text). */
  format?: LogFormat
  /** Where lines go (default process.stderr); ignored when `file` is given. */
  stream?: Writable
  /**
   * Append to this file instead (created owner-only, mode 0600; an existing file others
   * may read or write is made owner-only: a log quotes peer names, forms and reasons).
   */
  file?: string
  /** Log only the events of this node (a node id); default every node of the process. */
  node?: string
  /** The clock (tests). */
  now?: () => Date
}

export interface NodeLogger {
  readonly level: Level
  readonly format: LogFormat
  /** Write one line that is not a node event (the CLI's own notices), if `level` passes. */
  log: (level: Level, component: string, message: string, fields?: Record<string, unknown>) => void
  /** Stop logging: unsubscribe and close the file. Idempotent. */
  close: () => void
}

/** Longest text a peer's string may take in a text line. */
const FIELD_MAX = 500
const esc = (s: string): string => printable(String(s), FIELD_MAX)

export function isLogLevel (s: string): s is Level {
  return (LOG_LEVELS as readonly string[]).includes(s)
}

export function isLogFormat (s: string): s is LogFormat {
  return (LOG_FORMATS as readonly string[]).includes(s)
}

/**
 * The node's logger: one subscriber of the channels of events.ts, writing the events at
 * or above `level`, one line each. It subscribes only to those events, so events below
 * the level cost the node nothing.
 *
 * Text:  `2026-12-03T00:40:00.123Z warn  sandbox    restarted: out of memory`
 *        (time, level, component, what happened; then `txn=` and `peer=` when it has them).
 *        Every string a peer may have chosen is passed through printable(): a name with
 *        ESC or a newline cannot forge a line or drive a terminal.
 * JSON:  `{"time":"2026-...Z","level":"warn","component":"sandbox","event":"restart","message":"...",...payload}`
 *        (JSON escapes control characters itself).
 */
export function createNodeLogger (options: NodeLoggerOptions = {}): NodeLogger {
  const level = options.level ?? 'info'
  const format = options.format ?? 'text'
  if (!isLogLevel(level)) throw new Error(`log level must be one of ${LOG_LEVELS.join(', ')}, not "${String(level)}"`)
  if (!isLogFormat(format)) throw new Error(`log format must be text or json, not "${String(format)}"`)
  const now = options.now ?? (() => new Date())
  const min = LEVELS[level]

  let fd: number | undefined
  let stream: Writable | undefined
  const onStreamError = (): void => { /* stderr closed (EPIPE): the node carries on without a log */ }
  if (options.file !== undefined) {
    fd = openSync(options.file, 'a', 0o600)
    try {
      if ((fstatSync(fd).mode & 0o077) !== 0) fchmodSync(fd, 0o600)
    } catch (err) {
      closeSync(fd)
      throw err
    }
  } else {
    stream = options.stream ?? process.stderr
    stream.on('error', onStreamError)
  }

  let closed = false
  const write = (line: string): void => {
    if (closed) return
    try {
      if (fd !== undefined) writeSync(fd, line + '\n')
      else stream!.write(line + '\n')
    } catch { /* a full disk or a closed pipe must not stop the node */ }
  }

  const line = (lvl: Level, component: string, event: string | undefined, message: string, fields: Record<string, unknown>, txn?: string, peer?: string): string => {
    const time = now().toISOString()
    if (format === 'json') {
      const head: Record<string, unknown> = { time, level: lvl, component }
      if (event !== undefined) head.event = event
      head.message = message
      return JSON.stringify({ ...head, ...fields }, (_k, v: unknown) => typeof v === 'bigint' ? v.toString() : v)
    }
    let text = `${time} ${lvl.padEnd(5)} ${component.padEnd(10)} ${message}`
    if (txn !== undefined) text += ` txn=${esc(txn)}`
    if (peer !== undefined) text += ` peer=${esc(peer)}`
    return text
  }

  const unsubscribe = subscribeAll((e: AnyEvent) => {
    const payload = e.payload as unknown as Record<string, unknown>
    if (options.node !== undefined && payload.node !== options.node) return
    const spec = e.spec
    const s = format === 'json' ? (x: string) => x : esc
    const message = (spec.text ?? spec.detail)(e.payload, s)
    write(line(spec.level, spec.component, spec.event, message, payload, spec.txn?.(e.payload), spec.peer?.(e.payload)))
  }, eventsAtLeast(level))

  return {
    level,
    format,
    log (lvl, component, message, fields = {}) {
      if (LEVELS[lvl] < min) return
      write(line(lvl, component, undefined, format === 'json' ? message : esc(message), fields))
    },
    close () {
      if (closed) return
      closed = true
      unsubscribe()
      if (fd !== undefined) { try { closeSync(fd) } catch { } }
      stream?.off('error', onStreamError)
    }
  }
}

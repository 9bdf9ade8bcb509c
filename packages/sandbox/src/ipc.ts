import type { EvalLimits } from '@evalmesh/protocol'

/**
 * Messages between the parent and the sandbox child. Both directions send one
 * array per flush (a batch per event-loop turn), so 64 runs queued in one tick
 * cost one IPC write, not 64. The messages of the hot path, a run and its result,
 * are flat tuples: the structured-clone serializer then writes no property names.
 */

/**
 * A run: id, session, form, then its clamped limits (timeoutMs, memoryMb, resultBytes,
 * outputBytes), then its flags when it has any (RUN_TRANSIENT, RUN_STREAM).
 */
export type RunMsg = [id: number, session: string, form: string, timeoutMs: number, memoryMb: number, resultBytes: number, outputBytes: number, flags?: number]
/** The run has a fresh context of its own, dropped afterwards. */
export const RUN_TRANSIENT = 1
/** The run's console output is sent as it is written ({t: 'output'} messages before its result). */
export const RUN_STREAM = 2

/**
 * A result. A success without output is [id, value, seconds]; anything else is
 * [id, value or WireError, seconds, ok, output, outputTruncated].
 */
export type ResultMsg =
  | [id: number, value: unknown, seconds: number]
  | [id: number, valueOrError: unknown, seconds: number, ok: boolean, output: string, outputTruncated: boolean]
  | [id: number, valueOrError: unknown, seconds: number, ok: boolean, output: string, outputTruncated: boolean, contextLost: string]

export type ToChild =
  | RunMsg
  | { t: 'abort', id: number }
  | { t: 'reset', rid: number, session: string }
  | { t: 'grants', grants: string[] }
  | { t: 'host-result', cid: number, ok: true, value: unknown }
  | { t: 'host-result', cid: number, ok: false, message: string, code?: string }
  | { t: 'ping', n: number }
  | { t: 'stop' }

export type ToParent =
  | { t: 'ready', pid: number }
  | ResultMsg
  | { t: 'host-call', cid: number, id: number, name: string, args: unknown[] }
  | { t: 'output', id: number, text: string }
  | { t: 'reset-done', rid: number }
  | { t: 'pong', n: number }
  | { t: 'fatal', reason: string, culprit?: number }

export interface ChildInit {
  limits: EvalLimits
  maxSessions: number
  sessionIdleMs: number
  /** Sessions one client may hold in this process; its least recently used idle one goes first. */
  maxSessionsPerClient?: number
  /** Heap one client's sessions may hold in this process. */
  clientMemoryMb?: number
  grants: string[]
}

/** One IPC message: a batch plus the child's live session count and batched-run count, for stats. */
export interface ParentBatch { sessions: number, batched: number, heapBytes: number, msgs: ToParent[] }

// Megatest command names carry ! ? > and / (csv->test-data, teststep-set-status!): allowed after the first character.
const SEGMENT = /^[A-Za-z_$][\w$\-!?>/]*$/
const FORBIDDEN = new Set(['__proto__', 'constructor', 'prototype'])

/** A grant is a dotted name whose segments are identifiers, dashes allowed. */
export function checkGrant (name: unknown): string | undefined {
  if (typeof name !== 'string' || name.length === 0 || name.length > 200) return 'a grant must be a non-empty string of at most 200 characters'
  for (const seg of name.split('.')) {
    if (!SEGMENT.test(seg)) return `grant "${name}" has an invalid segment "${seg}" (a letter, _ or $, then letters, digits, _, $, -, !, ?, > or /)`
    if (FORBIDDEN.has(seg)) return `grant "${name}" uses the reserved segment "${seg}"`
  }
  return undefined
}

import { wireCodeOf, type ErrorCode, type WireError } from '@evalmesh/protocol'

export function wireError (code: ErrorCode, message: string, name = 'EvalMeshError', stack?: string): WireError {
  const err: WireError = { code, wire: wireCodeOf(code), name, message }
  if (stack !== undefined) err.stack = stack
  return err
}

const BOUNDARY = '(<isolated-vm boundary>)'

/**
 * Keep the frames that ran inside the isolate. isolated-vm appends the host's
 * frames after a boundary marker; those name host files and must not travel.
 */
export function userStack (stack: unknown): string | undefined {
  if (typeof stack !== 'string') return undefined
  const lines = stack.split('\n')
  const out: string[] = []
  for (const line of lines) {
    if (line.includes(BOUNDARY)) break
    out.push(line)
  }
  return out.join('\n')
}

/** True for a clone failure raised by isolated-vm on the host side, not by the form. */
export function isCloneFailure (err: unknown): boolean {
  if (!(err instanceof Error)) return false
  const m = err.message
  if (!(m.endsWith('could not be cloned.') || m === 'Unsupported type' || m.startsWith('A non-transferable value'))) return false
  return typeof err.stack !== 'string' || !err.stack.includes('\n    at ')
}

/** A form's exception, as a WireError: strings and plain values become messages. */
export function evalError (err: unknown): WireError {
  if (err instanceof Error || (typeof err === 'object' && err !== null && 'message' in err)) {
    const e = err as { name?: unknown, message?: unknown, stack?: unknown }
    const name = typeof e.name === 'string' && e.name.length > 0 ? e.name : 'Error'
    let message = typeof e.message === 'string' ? e.message : String(e.message)
    if (message.startsWith('An object was thrown from supplied code within isolated-vm')) {
      message = 'a non-Error object without a message was thrown'
      return wireError('EVAL_ERROR', message, 'Error', `Error: ${message}`)
    }
    return wireError('EVAL_ERROR', message, name, userStack(e.stack) ?? `${name}: ${message}`)
  }
  const message = typeof err === 'string' ? err : `a non-Error value was thrown: ${describe(err)}`
  return wireError('EVAL_ERROR', message, 'Error', `Error: ${message}`)
}

function describe (v: unknown): string {
  try {
    if (typeof v === 'bigint') return `${v}n`
    const s = JSON.stringify(v)
    return s === undefined ? String(v) : s.slice(0, 200)
  } catch {
    return String(v)
  }
}

/**
 * Whether a failed request may be sent again, and how: with the same txn (nothing was
 * recorded), with a new txn (the node recorded a failed transaction but did nothing), or
 * never (it ran, or may have: re-fetch its outcome by txn instead).
 *
 * TODO(issue 10.3): this mirrors the `retry` and `hint` fields being added to
 * ERROR_CATALOGUE in packages/protocol (same names, same signatures); once they land,
 * import `retryOf` and `retryAfterMs` from '@evalmesh/protocol' and delete this file.
 */
export type Retry = 'same-txn' | 'new-txn' | 'never'

const RETRY: Partial<Record<string, Retry>> = {
  // Refused before admission: nothing was recorded (PROTOCOL.md §3.4, §5.4).
  BUSY: 'same-txn',
  REFUSED: 'same-txn',
  // Nothing was sent, or nobody offered.
  NO_WILLING_SERVER: 'same-txn',
  CONNECT_FAILED: 'same-txn',
  // A Megatest area past its load limit: the node recorded a failed transaction.
  MEGATEST_BUSY: 'new-txn'
}

/** Where each code's back-off hint is in `data`, and its unit in ms. */
const HINT: Partial<Record<string, { field: string, unitMs: number }>> = {
  BUSY: { field: 'retryAfterMs', unitMs: 1 },
  MEGATEST_BUSY: { field: 'wait', unitMs: 1000 }
}

function codeOf (x: unknown): string | undefined {
  const code = typeof x === 'string' ? x : typeof x === 'object' && x !== null ? (x as { code?: unknown }).code : undefined
  return typeof code === 'string' ? code : undefined
}

/** The retry rule of a code or of an error carrying one; anything unknown is 'never' (it may have run). */
export function retryOf (x: unknown): Retry {
  const code = codeOf(x)
  return code === undefined ? 'never' : RETRY[code] ?? 'never'
}

/** The error's back-off hint in ms (BUSY's retryAfterMs, MEGATEST_BUSY's wait seconds), if it has one. */
export function retryAfterMs (err: unknown): number | undefined {
  const code = codeOf(err)
  const hint = code === undefined ? undefined : HINT[code]
  if (hint === undefined) return undefined
  const data = (err as { data?: Record<string, unknown> }).data
  const v = data?.[hint.field]
  return typeof v === 'number' && Number.isFinite(v) && v >= 0 ? v * hint.unitMs : undefined
}

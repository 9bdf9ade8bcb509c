import { EvalMeshError } from '@evalmesh/protocol'

/**
 * Whether a failed request may be sent again, and how: with the same txn (nothing was
 * recorded), with a new txn (the node recorded a failed transaction but did nothing), or
 * never (it ran, or may have: re-fetch its outcome by txn instead).
 */
export type Retry = 'same-txn' | 'new-txn' | 'never'

// TODO(issue 10.3): read ERROR_CATALOGUE[code].retry once packages/protocol carries it;
// until then this table is the one place in the client that decides.
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

/** The retry rule of an error code; anything not listed is 'never' (it may have run). */
export function retryOf (code: string): Retry {
  return RETRY[code] ?? 'never'
}

/** The retry rule of anything thrown: non-evalmesh errors are 'never'. */
export function retryOfError (err: unknown): Retry {
  return err instanceof EvalMeshError ? retryOf(err.code) : 'never'
}

/** True when the request did not run and the same txn may be sent again, anywhere. */
export function didNotRun (err: unknown): boolean {
  return retryOfError(err) === 'same-txn'
}

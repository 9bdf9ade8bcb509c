/**
 * @packageDocumentation
 * The client side of evalmesh: EVALSERVER's REMOTEVAL, REMOTEAPPLY and REMOTEABORT.
 *
 * ```ts
 * const client = new Client()                 // uses ~/.evalmesh, as `evalmesh serve` does
 * await client.remoteEval('x = 5', 'localhost:6680')
 * await client.remoteEval('x + 1', 'localhost:6680') // 6: the context persists per client
 * const txn = await client.remoteEval('while (true) {}', 'localhost:6680', { wait: false })
 * await client.remoteAbort(txn as string, 'localhost:6680')
 * ```
 */
export { Client, type ClientInit, type EvalOptions, type FetchOptions, type EvalResult, type AbortOptions, type PolicyChange, type EvalAllOptions, type EvalAllResult } from './client.js'
export { Broadcaster, type BroadcastConfig, type Offer } from './broadcast.js'
export type { NodeOutcome, FanOutOptions } from './fanout.js'
export { claimOne, claimOffer, type Claimed, type ClaimBody, type ClaimOneOptions, type Connections, type Offers } from './claim.js'
export { TxnBook, BOOK_FILE, SEQ_FILE, type BookEntry } from './txn-book.js'
export { resolveHost, formatHost, type Endpoint, type PeerLookup } from './host.js'
export { ControlSession, controlRequest, CONTROL_SOCKET } from './control.js'
export { RemoteEvalError, EvalMeshError } from '@evalmesh/protocol'
export { setBusyPoll, busyPollStats, busyPollMicrosFrom, DEFAULT_BUSY_POLL_MICROS, MAX_BUSY_POLL_MICROS, type BusyPollStats } from '@evalmesh/transport'

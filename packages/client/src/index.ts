/**
 * @packageDocumentation
 * The client side of evalmesh: EVALSERVER's REMOTEVAL, REMOTEAPPLY and REMOTEABORT.
 *
 * ```ts
 * const client = new Client()                 // uses ~/.evalmesh, as `evalmesh serve` does
 * await client.remoteEval('x = 5', 'localhost')
 * await client.remoteEval('x + 1', 'localhost') // 6: the context persists per client
 * const txn = await client.remoteEval('while (true) {}', 'localhost', { wait: false })
 * await client.remoteAbort(txn as string, 'localhost')
 * ```
 */
export { Client, type ClientInit, type EvalOptions, type FetchOptions, type EvalResult, type AbortOptions, type PolicyChange, type EvalAllOptions, type EvalAllResult } from './client.js'
export { Broadcaster, type BroadcastConfig, type Offer } from './broadcast.js'
export type { NodeOutcome, FanOutOptions } from './fanout.js'
export { claimOne, claimOffer, type Claimed, type ClaimBody, type ClaimOneOptions, type Connections, type Offers } from './claim.js'
export { resolveHost, formatHost, type Endpoint, type PeerLookup } from './host.js'
export { RemoteEvalError, EvalMeshError } from '@evalmesh/protocol'

import { EvalMeshError, retryOf, type ReplyOf, type RequestBody } from '@evalmesh/protocol'
import type { ClientConnection, RequestOptions } from '@evalmesh/transport'
import { noWillingServer, type Broadcaster, type Offer, type QueryHandle } from './broadcast.js'
import { formatHost, type Endpoint } from './host.js'

/**
 * The claim primitive (PROTOCOL.md §5.4): offer -> connect -> claim -> release, written
 * once for broadcast (claimOne), fan-out (claimOffer per offer) and the CI agent.
 */

/** What a claim needs from the client: its pool of authenticated connections. */
export interface Connections {
  connection: (endpoint: Endpoint) => Promise<Pick<ClientConnection, 'request'>>
}

/** What a claim needs from the broadcaster: ask for offers, release those not taken. */
export type Offers = Pick<Broadcaster, 'query' | 'release' | 'releaseAll' | 'where'>

/** A request that can follow a broadcast offer: eval or apply, with its txn. */
export type ClaimBody = (RequestBody<'eval'> | RequestBody<'apply'>) & { txn: string }

export interface Claimed {
  reply: ReplyOf<'eval' | 'apply'>
  offer: Offer
  /** host:port of the node that took it, to send follow-up work there. */
  host: string
}

/** Where the node that made an offer listens, and the id it must prove; through NATS when the offer came that way. */
export function endpointOf (offer: Offer): Endpoint {
  if (offer.via === 'nats') return { host: offer.node.name, port: 0, id: offer.node.id, label: offer.node.name, via: 'nats' }
  return { host: offer.address, port: offer.port, id: offer.node.id, label: offer.node.name, ...(offer.tls === true ? { tls: true } : {}) }
}

/** How the node that made an offer is named afterwards: host:port, or its name when it is reached through NATS. */
export function hostOf (offer: Offer): string {
  return offer.via === 'nats' ? offer.node.name : formatHost(offer.address, offer.port)
}

/**
 * Claim one offer: connect to the node that made it (it must prove the id it offered
 * with) and send `body` with the offer's token. When the connection cannot be opened
 * nothing was sent: the offer is released and CONNECT_FAILED thrown, which may be
 * retried with the same txn elsewhere. Once sent, the txn is bound to that node: what
 * comes back is its outcome, its error (REFUSED or BUSY mean it did not admit the claim),
 * or LOST / CLIENT_TIMEOUT, after which the outcome is re-fetched there, never elsewhere.
 */
export async function claimOffer (connections: Connections, broadcaster: Offers, offer: Offer, body: ClaimBody, request: RequestOptions = {}): Promise<Claimed> {
  let conn: Pick<ClientConnection, 'request'>
  try {
    conn = await connections.connection(endpointOf(offer))
  } catch (err) {
    void broadcaster.release(offer)
    if (err instanceof EvalMeshError && err.code === 'CONNECT_FAILED') throw err
    throw new EvalMeshError('CONNECT_FAILED', `cannot claim ${body.txn} on ${offer.node.name} at ${hostOf(offer)}: ${(err as Error).message}`,
      { txn: body.txn, node: offer.node.name }, { cause: err })
  }
  const reply = await conn.request({ ...body, claim: offer.token }, request)
  return { reply, offer, host: hostOf(offer) }
}

export interface ClaimOneOptions {
  /** Give up (NO_WILLING_SERVER) at this time, epoch ms. */
  deadline: number
  /**
   * When the wait began (epoch ms, default: the call): NO_WILLING_SERVER says how long that
   * was, so a caller that set the deadline a moment before the call gives it, and the
   * message says the 1500 ms the user asked for, not 1499.
   */
  startedAt?: number
  /**
   * Ask in rounds of this long until the deadline (default: one round). All nodes
   * being busy is normal in CI; each round asks every node afresh.
   */
  roundMs?: number
  /** Per-request timeout of the claimed request (CLIENT_TIMEOUT). */
  timeoutMs?: number
  /** Event frames on the claimed request's id (its streamed output). */
  onEvents?: RequestOptions['onEvents']
  /** Stops asking between rounds (ABORTED). */
  signal?: AbortSignal
}

/**
 * Broadcast: at most one willing node runs `body`. Take the first offer (the least
 * loaded of those that arrive together), claim it, release the rest. A claim that did
 * not run (no connection, REFUSED, BUSY) is tried on another offer with the same txn;
 * once a node admitted it, its outcome or its error is the answer.
 */
export async function claimOne (connections: Connections, broadcaster: Offers, body: ClaimBody, opts: ClaimOneOptions): Promise<Claimed> {
  const started = opts.startedAt ?? Date.now()
  while (true) {
    if (opts.signal?.aborted === true) throw new EvalMeshError('ABORTED', `stopped looking for a node to run ${body.txn}`, { txn: body.txn })
    const roundEnd = Math.min(opts.deadline, Date.now() + (opts.roundMs ?? Infinity))
    // Within a round a node that did not admit the claim is not asked again.
    const tried = new Set<string>()
    while (true) {
      const offer = await firstOffer(broadcaster, body.txn, roundEnd, tried)
      if (offer === undefined) break
      tried.add(offer.node.id)
      try {
        const request: RequestOptions = {}
        if (opts.timeoutMs !== undefined) request.timeoutMs = opts.timeoutMs
        if (opts.onEvents !== undefined) request.onEvents = opts.onEvents
        return await claimOffer(connections, broadcaster, offer, body, request)
      } catch (err) {
        if (retryOf(err) !== 'same-txn' || Date.now() >= opts.deadline) throw err
      }
    }
    if (Date.now() >= opts.deadline) throw noWillingServer(body.txn, opts.deadline - started, broadcaster)
    await new Promise(resolve => setTimeout(resolve, Math.min(100, Math.max(0, opts.deadline - Date.now()))))
  }
}

/** How long to wait for a better offer when every offer so far is from a node with no free slot. */
const SATURATED_WAIT_MS = 8

/**
 * The offer to claim: of those that arrive in the same I/O turn as the first, the least
 * loaded one, ties broken at random (so a burst of broadcasts spreads over idle nodes).
 * When even the best of them has no free slot, a few more milliseconds may bring an
 * offer from a node that has one: waiting costs little next to queueing behind a full
 * node. The others are released with one datagram; undefined if none came by `deadline`.
 */
async function firstOffer (broadcaster: Offers, txn: string, deadline: number, skip: Set<string>): Promise<Offer | undefined> {
  return await new Promise<Offer | undefined>((resolve) => {
    const candidates: Offer[] = []
    let chosen: Offer | undefined
    let handle: QueryHandle | undefined
    let waited = false
    // The node's other offers count as load, as the node itself counts them: in a burst they
    // become claims, so an idle node's offer beats a third one from a node that answered
    // first twice already, even when that node's offers come a few milliseconds sooner.
    const load = (o: Offer): number => (o.load.running + o.load.queued + Math.max(0, (o.load.held ?? 1) - 1)) / Math.max(1, o.load.concurrency)
    const choose = (): void => {
      if (chosen !== undefined) return
      const best = Math.min(...candidates.map(load))
      if (best >= 1 && !waited && Date.now() + SATURATED_WAIT_MS < deadline) {
        waited = true
        setTimeout(choose, SATURATED_WAIT_MS).unref()
        return
      }
      // Among the least loaded, the one holding fewest other offers: in a burst those become claims.
      const atBest = candidates.filter(o => load(o) === best)
      const fewest = Math.min(...atBest.map(o => o.load.held ?? 0))
      const least = atBest.filter(o => (o.load.held ?? 0) === fewest)
      chosen = least[Math.floor(Math.random() * least.length)]!
      void broadcaster.releaseAll(txn, chosen.node.id)
      resolve(chosen)
      // Stop asking, but listen a moment longer to release late offers.
      handle?.quiet()
      setTimeout(() => handle?.stop(), 250).unref()
    }
    void broadcaster.query(txn, 'one', deadline, (event) => {
      if (event.kind !== 'offer') return
      const offer = event.offer
      if (skip.has(offer.node.id)) { void broadcaster.release(offer); return }
      if (chosen !== undefined) return // a late offer: the release already sent covers it
      candidates.push(offer)
      if (candidates.length === 1) setImmediate(choose)
      else if (waited && load(offer) < 1) choose() // the free slot we waited for
    }, () => { if (chosen === undefined && candidates.length === 0) resolve(undefined) }).then(h => { handle = h; if (chosen !== undefined) h.quiet() })
  })
}

import { EvalMeshError, RemoteEvalError } from '@evalmesh/protocol'
import type { Offer } from './broadcast.js'
import { claimOffer, endpointOf, hostOf, type ClaimBody, type Connections, type Offers } from './claim.js'

/** One node's answer to a fan-out (remoteEvalAll). */
export interface NodeOutcome {
  node: string
  id: string
  address: string
  /** ok: it ran and returned; error: it ran and threw (or hit a limit); refused: it declined;
   *  timeout: no answer by the deadline; lost: its connection died mid-run. */
  status: 'ok' | 'error' | 'refused' | 'timeout' | 'lost'
  value?: unknown
  output?: string
  seconds?: number
  error?: EvalMeshError
  /** For refused: the rule that declined it. */
  rule?: string
}

export interface FanOutOptions {
  /** Overall deadline, ms (default 5000). Nodes still running then are aborted and reported as timeout. */
  timeout?: number
  /** Stop once this many nodes have answered ok (the rest are aborted). */
  quorum?: number
  /** Ask at most this many nodes (the first offers win). */
  limit?: number
  /** How long to collect offers, ms (default min(timeout / 2, 300)). */
  gatherMs?: number
  session?: string
}

/**
 * Run one request on every willing node: query with mode "all", claim every offer
 * (up to `limit`) over TCP as it arrives, and yield each node's outcome as it lands.
 */
export async function * fanOut (connections: Connections, broadcaster: Offers, body: ClaimBody, opts: FanOutOptions): AsyncGenerator<NodeOutcome> {
  const timeout = opts.timeout ?? 5000
  const deadline = Date.now() + timeout
  const gatherUntil = Date.now() + (opts.gatherMs ?? Math.min(timeout / 2, 300))
  const ready: NodeOutcome[] = []
  let wake: (() => void) | undefined
  const push = (o: NodeOutcome): void => { ready.push(o); wake?.() }
  const running = new Map<string, { offer: Offer, done: boolean }>()
  let claimed = 0
  let gathering = true
  let okCount = 0

  const claim = (offer: Offer): void => {
    if (!gathering || (opts.limit !== undefined && claimed >= opts.limit)) { void broadcaster.release(offer); return }
    claimed++
    const entry = { offer, done: false }
    running.set(offer.node.id, entry)
    const base = { node: offer.node.name, id: offer.node.id, address: hostOf(offer) }
    const finish = (o: NodeOutcome): void => { if (!entry.done) { entry.done = true; push(o) } }
    void (async () => {
      try {
        const { reply: r } = await claimOffer(connections, broadcaster, offer, body, { timeoutMs: Math.max(1, deadline - Date.now()) })
        // The request waits (wait: true), so the reply is the outcome, not an acknowledgement.
        if ('value' in r) finish({ ...base, status: 'ok', value: r.value, output: r.output, seconds: r.seconds })
        else finish({ ...base, status: 'ok' })
      } catch (err) {
        const e = err instanceof EvalMeshError ? err : new EvalMeshError('LOST', String(err))
        const status = e.code === 'REFUSED' || e.code === 'BUSY' ? 'refused'
          : e.code === 'CLIENT_TIMEOUT' ? 'timeout'
            : e.code === 'LOST' || e.code === 'CONNECT_FAILED' ? 'lost' : 'error'
        const o: NodeOutcome = { ...base, status, error: e }
        if (e instanceof RemoteEvalError) { o.output = e.output; if (typeof e.data.rule === 'string') o.rule = e.data.rule }
        finish(o)
      }
    })()
  }

  const query = await broadcaster.query(body.txn, 'all', gatherUntil, (event) => {
    if (event.kind === 'offer') claim(event.offer)
    else push({ node: event.decline.node.name, id: event.decline.node.id, address: '', status: 'refused', rule: event.decline.rule })
  }, () => { gathering = false; wake?.() })

  const timer = setTimeout(() => { wake?.() }, Math.max(0, deadline - Date.now()))
  try {
    while (true) {
      while (ready.length > 0) {
        const o = ready.shift()!
        if (o.status === 'ok') okCount++
        yield o
        if (opts.quorum !== undefined && okCount >= opts.quorum) return
      }
      const pending = [...running.values()].some(e => !e.done)
      if ((!gathering && !pending) || Date.now() >= deadline) return
      await new Promise<void>(resolve => { wake = resolve; setTimeout(resolve, Math.max(1, Math.min(deadline, gathering ? gatherUntil : deadline) - Date.now())).unref() })
      wake = undefined
    }
  } finally {
    clearTimeout(timer)
    gathering = false
    query.stop()
    // Whatever is still running past the deadline or the quorum is stopped, not abandoned.
    for (const { offer, done } of running.values()) {
      if (done) continue
      const reason = okCount >= (opts.quorum ?? Infinity) ? 'quorum reached' : 'fan-out deadline passed'
      void connections.connection(endpointOf(offer)).then(c => c.request({ kind: 'abort', txn: body.txn, reason })).catch(() => {})
    }
  }
}

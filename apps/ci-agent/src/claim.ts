import { Broadcaster, EvalMeshError, RemoteEvalError, type BroadcastConfig, type Client, type Offer } from '@evalmesh/client'

/**
 * Claim a willing node for one test: broadcast a small form (it sets up the test's
 * session) and keep the address of the node that took it, so the test's steps can
 * then run there, in order, as directed requests. `Client.evalDetailed` with no
 * host does the same broadcast but does not say where the form ran (only the node
 * name), so the offer/claim exchange (PROTOCOL.md §5) is done here with the
 * client's public pieces: a Broadcaster, `client.connection`, the claim token.
 */

export interface Claimed {
  /** host:port of the node that claimed the test. */
  host: string
  node: { id: string, name: string }
  txn: string
  value: unknown
}

type RequestBody = Parameters<Awaited<ReturnType<Client['connection']>>['request']>[0]

const sleep = async (ms: number): Promise<void> => await new Promise(resolve => setTimeout(resolve, ms))

export class Claimer {
  readonly #client: Client
  readonly #broadcaster: Broadcaster
  readonly #roundMs: number

  constructor (client: Client, config: BroadcastConfig, roundMs = 2000) {
    this.#client = client
    this.#broadcaster = new Broadcaster(client.identity, client.trust, config)
    this.#roundMs = roundMs
  }

  /**
   * Run `form` in `session` on the first willing node. Rounds of queries repeat
   * until `deadline` (all nodes busy is normal in CI: tests queue for nodes);
   * after that, NO_WILLING_SERVER. A refusal or BUSY at claim time means the form
   * did not run, so another node is asked; LOST once it was sent is thrown.
   */
  async claim (form: string, session: string, deadline: number, signal?: AbortSignal): Promise<Claimed> {
    while (true) {
      if (signal?.aborted === true) throw new EvalMeshError('ABORTED', 'the run was interrupted before this test found a node')
      const txn = this.#client.nextTxn()
      const roundEnd = Math.min(deadline, Date.now() + this.#roundMs)
      const tried = new Set<string>()
      while (Date.now() < roundEnd) {
        const offer = await this.#firstOffer(txn, roundEnd, tried)
        if (offer === undefined) break
        tried.add(offer.node.id)
        let conn
        try {
          conn = await this.#client.connection({ host: offer.address, port: offer.port, id: offer.node.id, label: offer.node.name })
        } catch {
          void this.#broadcaster.release(offer)
          continue
        }
        const host = offer.address.includes(':') ? `[${offer.address}]:${offer.port}` : `${offer.address}:${offer.port}`
        const body = { kind: 'eval', txn, form, wait: true, session, claim: offer.token } as unknown as RequestBody
        try {
          const r = await conn.request(body) as { value: unknown }
          return { host, node: { id: offer.node.id, name: offer.node.name }, txn, value: r.value }
        } catch (err) {
          if (err instanceof RemoteEvalError && (err.code === 'REFUSED' || err.code === 'BUSY')) continue
          if (err instanceof EvalMeshError) { err.data.node = offer.node.name; err.data.host = host; err.data.txn = txn }
          throw err
        }
      }
      if (Date.now() >= deadline) {
        throw new EvalMeshError('NO_WILLING_SERVER', `no willing node took the test before its claim deadline (${this.#broadcaster.config.targets?.length ?? 0} node(s) asked by unicast${this.#broadcaster.config.interface !== undefined ? ', and the LAN' : ''})`)
      }
      await sleep(100)
    }
  }

  close (): void {
    this.#broadcaster.close()
  }

  async #firstOffer (txn: string, deadline: number, skip: Set<string>): Promise<Offer | undefined> {
    return await new Promise<Offer | undefined>((resolve) => {
      let chosen: Offer | undefined
      let stop: (() => void) | undefined
      let quiet: (() => void) | undefined
      void this.#broadcaster.query(txn, 'one', deadline, (event) => {
        if (event.kind !== 'offer') return
        const offer = event.offer
        if (chosen !== undefined || skip.has(offer.node.id)) { void this.#broadcaster.release(offer); return }
        chosen = offer
        resolve(offer)
        quiet?.()
        // Keep listening a moment to release late offers, then end the query.
        setTimeout(() => stop?.(), 250).unref()
      }, () => resolve(chosen)).then(h => { stop = h.stop; quiet = h.quiet; if (chosen !== undefined) h.quiet() })
    })
  }
}

import { Broadcaster, Client, EvalMeshError, claimOne, type BroadcastConfig } from '@evalmesh/client'

/**
 * Claim a willing node for one test: broadcast a small form (it sets up the test's
 * session) and keep the address of the node that took it, so the test's steps can
 * then run there, in order, as directed requests. The offer -> claim -> release
 * sequence and the "it did not run, ask again" decision are the client's claim
 * primitive (claimOne); this only asks in rounds until the test's claim deadline,
 * because all nodes being busy is normal in CI: tests queue for nodes.
 */

export interface Claimed {
  /** host:port of the node that claimed the test. */
  host: string
  node: { name: string }
  txn: string
  value: unknown
}

export class Claimer {
  readonly #client: Client
  readonly #broadcaster: Broadcaster
  readonly #roundMs: number

  /**
   * `client` holds the agent's key; `config` says where this run's tests may go (it
   * can differ from the client's own, e.g. with a node started for the area added).
   */
  constructor (client: Client, config: BroadcastConfig, roundMs = 2000) {
    // Same key, so the same sessions on the nodes: the steps the agent's client sends
    // later see what the claim form set up.
    this.#client = new Client({ identity: client.identity, trust: client.trust })
    this.#broadcaster = new Broadcaster(client.identity, client.trust, config)
    this.#roundMs = roundMs
  }

  /**
   * Run `form` in `session` on the first willing node, asking again until `deadline`;
   * after that, NO_WILLING_SERVER. A LOST once the form was sent is thrown, never
   * retried elsewhere: at most one node runs a broadcast.
   */
  async claim (form: string, session: string, deadline: number, signal?: AbortSignal): Promise<Claimed> {
    const body = { kind: 'eval' as const, txn: this.#client.nextTxn(), form, session, wait: true }
    const options: Parameters<typeof claimOne>[3] = { deadline, roundMs: this.#roundMs }
    if (signal !== undefined) options.signal = signal
    try {
      const { reply, host, offer } = await claimOne(this.#client, this.#broadcaster, body, options)
      return { host, node: { name: offer.node.name }, txn: reply.txn, value: 'value' in reply ? reply.value : undefined }
    } catch (err) {
      if (err instanceof EvalMeshError && err.code === 'ABORTED' && signal?.aborted === true) {
        throw new EvalMeshError('ABORTED', 'the run was interrupted before this test found a node', err.data, { cause: err })
      }
      throw err
    }
  }

  close (): void {
    this.#broadcaster.close()
    this.#client.close()
  }
}

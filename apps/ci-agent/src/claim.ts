import { Client, EvalMeshError, RemoteEvalError, type BroadcastConfig } from '@evalmesh/client'

/**
 * Claim a willing node for one test: broadcast a small form (it sets up the test's
 * session) and keep the address of the node that took it, so the test's steps can
 * then run there, in order, as directed requests. The broadcast itself is the
 * client's (`evalDetailed` with no host: offers, the least loaded claimed, the rest
 * released); this adds rounds until the test's claim deadline, because all nodes
 * being busy is normal in CI: tests queue for nodes.
 */

export interface Claimed {
  /** host:port of the node that claimed the test. */
  host: string
  node: { name: string }
  txn: string
  value: unknown
}

const sleep = async (ms: number): Promise<void> => await new Promise(resolve => setTimeout(resolve, ms))

export class Claimer {
  readonly #client: Client
  readonly #config: BroadcastConfig
  readonly #roundMs: number

  /**
   * `client` holds the agent's key; `config` says where this run's tests may go (it
   * can differ from the client's own, e.g. with a node started for the area added).
   */
  constructor (client: Client, config: BroadcastConfig, roundMs = 2000) {
    // Same key, so the same sessions on the nodes: the steps the agent's client sends
    // later see what the claim form set up.
    this.#client = new Client({ identity: client.identity, trust: client.trust, broadcast: config })
    this.#config = config
    this.#roundMs = roundMs
  }

  /**
   * Run `form` in `session` on the first willing node, asking again until `deadline`;
   * after that, NO_WILLING_SERVER. A LOST once the form was sent is thrown, never
   * retried elsewhere: at most one node runs a broadcast.
   */
  async claim (form: string, session: string, deadline: number, signal?: AbortSignal): Promise<Claimed> {
    while (true) {
      if (signal?.aborted === true) throw new EvalMeshError('ABORTED', 'the run was interrupted before this test found a node')
      const waitMs = Math.max(1, Math.min(this.#roundMs, deadline - Date.now()))
      try {
        const r = await this.#client.evalDetailed(form, null, { session, broadcastTimeoutMs: waitMs })
        return { host: r.host!, node: { name: r.node }, txn: r.txn, value: 'value' in r ? r.value : undefined }
      } catch (err) {
        // No offer, or refused/busy at claim time: the form did not run, ask again.
        const notRun = (err instanceof EvalMeshError && err.code === 'NO_WILLING_SERVER') ||
          (err instanceof RemoteEvalError && (err.code === 'REFUSED' || err.code === 'BUSY'))
        if (!notRun) throw err
      }
      if (Date.now() >= deadline) {
        throw new EvalMeshError('NO_WILLING_SERVER', `no willing node took the test before its claim deadline (${this.#config.targets?.length ?? 0} node(s) asked by unicast${this.#config.interface !== undefined ? ', and the LAN' : ''})`)
      }
      await sleep(100)
    }
  }

  close (): void {
    this.#client.close()
  }
}

import { createSocket, type Socket } from 'node:dgram'
import { isIPv6 } from 'node:net'
import { BROADCAST_PORT, EvalMeshError, broadcastGroupFor } from '@evalmesh/protocol'
import { multicastInterfaceFor } from '@evalmesh/discovery'
import { ReplayWindow, newDatagramCounters, openDatagram, sealDatagram, type DatagramCounters, type DatagramSender } from '@evalmesh/transport'
import type { Identity, TrustStore } from '@evalmesh/trust'

/** Where a client sends broadcast queries. */
export interface BroadcastConfig {
  /**
   * Address of the LAN interface to multicast from, IPv4 or IPv6 (then queries go to
   * the IPv6 group). Without it, queries go only to `targets` by unicast (the loopback
   * default: no multicast at all).
   */
  interface?: string
  /** Default: 239.255.66.80, or ff12::6680 for an IPv6 interface. */
  group?: string
  /** UDP port of the multicast group (default 6680). */
  port?: number
  /** Nodes to ask by unicast: the local node, static seeds. */
  targets?: Array<{ address: string, port: number }>
}

/**
 * Another carrier of the same sealed datagrams besides UDP: a NATS backbone
 * (PROTOCOL.md §9.4). Queries and releases of all offers but one go to every node on it;
 * the release of one offer to that node; answers come back to this client's inbox.
 */
export interface DatagramCarrier {
  /** Start receiving answers (called once, before the first send). */
  open: (onDatagram: (datagram: Buffer) => void) => Promise<void>
  broadcast: (datagram: Buffer) => void
  sendTo: (nodeId: string, datagram: Buffer) => void
  /** For messages: "on NATS mesh default". */
  describe: string
}

/** A node's answer to a query: it will run the txn if claimed with `token`. */
export interface Offer {
  txn: string
  token: string
  address: string
  port: number
  node: DatagramSender
  load: { running: number, queued: number, held?: number, concurrency: number }
  /** The node's UDP address the offer came from (where a release goes). */
  origin: { address: string, port: number }
  /** The node serves TLS (PROTOCOL.md §2.5): the claim connects with TLS. */
  tls?: boolean
  /** The offer came over NATS: the claim opens a stream to the node through NATS, whatever its address. */
  via?: 'nats'
}

export interface Decline { txn: string, node: DatagramSender, rule: string }

export interface QueryHandle {
  /** End the query now (onDone runs). */
  stop: () => void
  /** Stop re-sending the query, but keep listening (e.g. to release late offers). */
  quiet: () => void
}

export type QueryEvent = { kind: 'offer', offer: Offer } | { kind: 'decline', decline: Decline }

/**
 * Retransmit schedule of a query (ms after the first send), for lost datagrams only:
 * every resend makes every node answer again, so resending early on a loaded network
 * makes it worse. Idempotent on the node side.
 */
const RESEND_AT = [0, 250, 750, 1750, 3250, 5250, 8250]

/**
 * The client's half of the broker-free broadcast (PROTOCOL.md §5): multicast and
 * unicast "who will run txn T?", collect authenticated offers and declines, release
 * offers it will not use.
 */
export class Broadcaster {
  readonly counters: DatagramCounters = newDatagramCounters()
  readonly #identity: Identity
  readonly #trust: TrustStore
  readonly #config: BroadcastConfig
  readonly #replay = new ReplayWindow()
  #socket: Promise<Socket> | undefined
  readonly #queries = new Map<string, { deliver: (event: QueryEvent) => void, stop: () => void }>()
  readonly #carrier: DatagramCarrier | undefined
  #carrierOpen: Promise<void> | undefined

  constructor (identity: Identity, trust: TrustStore, config: BroadcastConfig, carrier?: DatagramCarrier) {
    this.#identity = identity
    this.#trust = trust
    this.#config = config
    this.#carrier = carrier
  }

  get config (): BroadcastConfig { return this.#config }

  /** Where queries go, for messages. */
  get where (): string {
    const udp = this.#config.interface !== undefined ? `on the LAN via ${this.#config.interface}` : `among ${this.#config.targets?.length ?? 0} known node(s)`
    return this.#carrier === undefined ? udp : `${udp} or ${this.#carrier.describe}`
  }

  /**
   * Ask for offers to run `txn`: send the query now and again on a backing-off schedule
   * until `deadline`, calling `onEvent` for each offer or decline (once per node).
   * `onDone` runs when the query ends: at the deadline, on stop(), or on close().
   */
  async query (txn: string, mode: 'one' | 'all', deadline: number, onEvent: (e: QueryEvent) => void, onDone: () => void): Promise<QueryHandle> {
    const socket = await this.#open()
    await this.#openCarrier()
    const seen = new Set<string>()
    const resends: NodeJS.Timeout[] = []
    let end: NodeJS.Timeout | undefined
    let stopped = false
    const quiet = (): void => { for (const t of resends) clearTimeout(t); resends.length = 0 }
    const stop = (): void => {
      if (stopped) return
      stopped = true
      quiet()
      if (end !== undefined) clearTimeout(end)
      this.#queries.delete(txn)
      onDone()
    }
    this.#queries.set(txn, {
      stop,
      deliver: (event) => {
        const node = event.kind === 'offer' ? event.offer.node : event.decline.node
        if (seen.has(node.id)) return // a retransmitted answer
        seen.add(node.id)
        onEvent(event)
      }
    })
    const send = (): void => {
      if (stopped) return
      // Sealed afresh each time: a resend with the old nonce would be dropped as a replay.
      const datagram = sealDatagram(this.#identity, this.#trust, { kind: 'query', txn, mode })
      this.#sendToAll(socket, datagram)
    }
    // The first send goes out now: a timer of 0 ms would add a millisecond to every broadcast.
    if (Date.now() < deadline) send()
    for (const at of RESEND_AT.slice(1)) {
      if (Date.now() + at >= deadline) break
      resends.push(setTimeout(send, at))
    }
    end = setTimeout(stop, Math.max(0, deadline - Date.now()))
    return { stop, quiet }
  }

  /**
   * Tell every node that offered for `txn`, except `keep`, to free its slot: one datagram,
   * sent where the query went (instead of one signed release per offer).
   */
  async releaseAll (txn: string, keep: string): Promise<void> {
    if (this.#socket === undefined) return
    const socket = await this.#open()
    this.#sendToAll(socket, sealDatagram(this.#identity, this.#trust, { kind: 'release', txn, keep }))
  }

  /** One datagram to everywhere queries go: the LAN group, the known targets, the carrier. */
  #sendToAll (socket: Socket, datagram: Buffer): void {
    // A node that answers nothing (down, filtered) must not stop us asking the others; a
    // socket closed under us ends the query (close()), and unclaimed offers expire.
    try {
      if (this.#config.interface !== undefined) socket.send(datagram, this.#config.port ?? BROADCAST_PORT, this.#config.group ?? broadcastGroupFor(this.#config.interface))
      for (const t of this.#config.targets ?? []) socket.send(datagram, t.port, t.address)
    } catch { /* see above */ }
    this.#carrier?.broadcast(datagram)
  }

  /** Tell a node we will not claim its offer, so it frees the slot now. */
  async release (offer: Offer): Promise<void> {
    if (this.#socket === undefined) return
    if (offer.via === 'nats') {
      this.#carrier?.sendTo(offer.node.id, sealDatagram(this.#identity, this.#trust, { kind: 'release', txn: offer.txn, token: offer.token }))
      return
    }
    const socket = await this.#open()
    try {
      socket.send(sealDatagram(this.#identity, this.#trust, { kind: 'release', txn: offer.txn, token: offer.token }), offer.origin.port, offer.origin.address)
    } catch { /* closed: the offer expires by itself */ }
  }

  close (): void {
    for (const q of [...this.#queries.values()]) q.stop()
    this.#socket?.then(s => s.close(), () => {})
    this.#socket = undefined
  }

  async #openCarrier (): Promise<void> {
    if (this.#carrier === undefined) return
    this.#carrierOpen ??= this.#carrier.open(datagram => this.#onMessage(datagram, undefined))
    await this.#carrierOpen
  }

  async #open (): Promise<Socket> {
    this.#socket ??= new Promise((resolve, reject) => {
      // One address family per broadcaster: IPv6 when the interface (or, on loopback, the
      // first target) is an IPv6 address, so a node on [::1] is reachable; IPv4 otherwise.
      const v6 = isIPv6(this.#config.interface ?? this.#config.targets?.[0]?.address ?? '')
      const socket = createSocket({ type: v6 ? 'udp6' : 'udp4' })
      socket.on('message', (buf, rinfo) => this.#onMessage(buf, rinfo))
      socket.on('error', () => { /* per-send errors are not fatal: other targets may still answer */ })
      socket.once('error', reject)
      socket.bind(0, this.#config.interface ?? (v6 ? '::1' : '127.0.0.1'), () => {
        socket.off('error', reject)
        // Every node answers every query: a burst of broadcasts on a large LAN brings
        // hundreds of offers at once, more than the default buffer holds.
        try { socket.setRecvBufferSize(4 * 1024 * 1024) } catch { /* capped by net.core.rmem_max */ }
        // IPv6 names the interface by its scope (::%lan0); IPv4 by the address itself.
        if (this.#config.interface !== undefined) socket.setMulticastInterface(multicastInterfaceFor(this.#config.interface))
        socket.unref()
        resolve(socket)
      })
    })
    return await this.#socket
  }

  /** A datagram from UDP (`rinfo` the sender) or from the carrier (undefined). */
  #onMessage (buf: Buffer, rinfo: { address: string, port: number } | undefined): void {
    const opened = openDatagram(buf, this.#trust, this.#replay, this.counters)
    if (!opened.ok) return
    const m = opened.message
    const txn = typeof m.txn === 'string' ? m.txn : ''
    const listener = this.#queries.get(txn)?.deliver
    if (listener === undefined) return
    if (m.kind === 'offer' && typeof m.token === 'string' && typeof m.port === 'number' && m.id === opened.sender.id) {
      const load = (typeof m.load === 'object' && m.load !== null ? m.load : {}) as Offer['load']
      const origin = rinfo ?? { address: 'nats', port: 0 }
      const address = typeof m.address === 'string' && m.address !== '0.0.0.0' ? m.address : origin.address
      const offer: Offer = { txn, token: m.token, address, port: m.port, node: opened.sender, load, origin }
      if (m.tls === true) offer.tls = true
      if (rinfo === undefined) offer.via = 'nats'
      listener({ kind: 'offer', offer })
    } else if (m.kind === 'decline') {
      listener({ kind: 'decline', decline: { txn, node: opened.sender, rule: typeof m.rule === 'string' ? m.rule : 'declined' } })
    }
  }
}

export function noWillingServer (txn: string, ms: number, broadcaster: Pick<Broadcaster, 'where'>): EvalMeshError {
  const where = broadcaster.where
  return new EvalMeshError('NO_WILLING_SERVER', `no willing server ${where} offered to run ${txn} within ${ms} ms`, { txn })
}

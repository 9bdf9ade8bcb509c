import { randomBytes } from 'node:crypto'
import { createSocket, type Socket } from 'node:dgram'
import { isIPv6 } from 'node:net'
import { BROADCAST_GROUP, isTxnString, nodeIdOfClient } from '@evalmesh/protocol'
import { ReplayWindow, newDatagramCounters, openDatagram, sealDatagram, type DatagramCounters, type DatagramSender } from '@evalmesh/transport'
import type { PeerInfo } from '@evalmesh/transport'
import type { Identity, TrustStore } from '@evalmesh/trust'
import type { AdmissionPolicy, RequestMode } from './policy.js'
import { channels, publish } from './events.js'
import type { NodeCounters } from '@evalmesh/protocol'

/** What the responder needs of the node: who it is, whom it trusts, its policy and its load. */
export interface ResponderParts {
  readonly identity: Identity
  readonly trust: TrustStore
  readonly policy: AdmissionPolicy
  readonly counters: NodeCounters
  readonly limits: { concurrency: number, queueLength: number }
  /** Transactions running and waiting now. */
  load (): { running: number, queued: number }
  /** True if this node already holds a record of the txn (claimed here before). */
  knows (txn: string): boolean
  /** True while the node drains (it takes no new work): it makes no offers. */
  draining?: () => boolean
}

/**
 * The node's half of the broker-free broadcast (PROTOCOL.md §5): answer "who will run
 * txn T?" with an offer when the policy admits the broadcast and there is capacity,
 * hold a slot briefly, and honour the offer when the client claims it over TCP.
 */
export interface ResponderInit {
  /** Address to bind the UDP socket to: an interface address, or 0.0.0.0 on a LAN. */
  bindAddress: string
  port: number
  /** On a LAN: join the broadcast group on this interface. */
  multicastInterface?: string
  group?: string
  /** Where clients should connect for TCP (the node's listen address and port). */
  tcpAddress: string
  tcpPort: number
  /** The node serves TLS there: offers say so (PROTOCOL.md §5.3). */
  tls?: boolean
  /** How long an offer holds a slot (default 3000 ms). */
  offerTtlMs?: number
}

/** Sends one sealed datagram back to where a query came from. */
export type Reply = (datagram: Buffer) => void

interface Offer {
  token: string
  peerId: string
  txn: string
  expires: number
}

export class BroadcastResponder {
  readonly counters: DatagramCounters = newDatagramCounters()
  readonly stats = { queries: 0, offers: 0, declined: 0, busy: 0, claimed: 0, expired: 0 }
  readonly #server: ResponderParts
  readonly #init: ResponderInit
  readonly #replay = new ReplayWindow()
  readonly #offers = new Map<string, Offer>() // by token
  readonly #byTxn = new Map<string, string>() // `${peerId} ${txn}` -> token
  #socket: Socket | undefined
  #sweep: NodeJS.Timeout | undefined

  constructor (server: ResponderParts, init: ResponderInit) {
    this.#server = server
    this.#init = init
  }

  /** Offers outstanding: slots held for clients that may claim them. */
  get held (): number { return this.#offers.size }

  async start (): Promise<void> {
    // The UDP socket follows the listen address's family: a node on [::1] answers over IPv6.
    const socket = createSocket({ type: isIPv6(this.#init.bindAddress) ? 'udp6' : 'udp4', reuseAddr: true })
    this.#socket = socket
    socket.on('message', (msg, rinfo) => this.receive(msg, rinfo, datagram => socket.send(datagram, rinfo.port, rinfo.address)))
    socket.on('error', (err) => publish(channels.broadcastError, { node: this.#server.identity.id, where: 'socket', message: err.message }))
    await new Promise<void>((resolve, reject) => {
      socket.once('error', reject)
      socket.bind(this.#init.port, this.#init.bindAddress, () => { socket.off('error', reject); resolve() })
    })
    try { socket.setRecvBufferSize(2 * 1024 * 1024) } catch { /* capped by net.core.rmem_max */ }
    if (this.#init.multicastInterface !== undefined) {
      socket.addMembership(this.#init.group ?? BROADCAST_GROUP, this.#init.multicastInterface)
      socket.setMulticastInterface(this.#init.multicastInterface)
    }
    this.#sweep = setInterval(() => this.#expire(), 500)
    this.#sweep.unref()
  }

  async stop (): Promise<void> {
    if (this.#sweep !== undefined) clearInterval(this.#sweep)
    const s = this.#socket
    this.#socket = undefined
    if (s !== undefined) await new Promise<void>(resolve => s.close(() => resolve()))
  }

  /** Validate a claim from a TCP request: the offer must be ours, for this peer and txn, and live. */
  claim (token: string, peer: PeerInfo, txn: string): RequestMode | undefined {
    const offer = this.#offers.get(token)
    if (offer === undefined || offer.peerId !== peer.id || offer.txn !== txn || offer.expires < Date.now()) return undefined
    this.#drop(offer)
    this.stats.claimed++
    return 'broadcast'
  }

  /**
   * One datagram, from wherever it came: the UDP socket, or a carrier such as NATS
   * (PROTOCOL.md §9.4), which passes where answers go (`reply`) and a `from` for the log.
   */
  receive (buf: Buffer, from: { address: string, port: number }, reply: Reply | undefined): void {
    const opened = openDatagram(buf, this.#server.trust, this.#replay, this.counters)
    if (!opened.ok) {
      publish(channels.datagramDropped, { node: this.#server.identity.id, address: from.address, port: from.port, reason: opened.reason, detail: opened.detail })
      return
    }
    const { message, sender } = opened
    if (message.kind === 'query' && reply !== undefined) this.#onQuery(message, sender, reply)
    else if (message.kind === 'release') this.#onRelease(message, sender)
  }

  #onQuery (m: Record<string, unknown>, sender: DatagramSender, reply: Reply): void {
    const txn = m.txn
    if (!isTxnString(txn) || nodeIdOfClient(txn.split(':')[0]!) !== sender.id) return
    this.stats.queries++
    const all = m.mode === 'all'
    const server = this.#server
    // A repeated query for the same txn gets the same offer (retransmits are idempotent).
    const existing = this.#byTxn.get(`${sender.id} ${txn}`)
    if (existing !== undefined) {
      const offer = this.#offers.get(existing)
      if (offer !== undefined) { this.#sendOffer(offer, reply); return }
    }
    if (server.knows(txn)) return // already claimed here; the client has its answer
    if (server.draining?.() === true) {
      this.stats.busy++
      if (all) this.#send({ kind: 'decline', txn, rule: 'draining' }, reply)
      return
    }
    // The name in the datagram is the sender's claim; policy matches the name this node gives its key.
    sender.name = server.trust.nameOrId(sender.key)
    const decision = server.policy.decide({ id: sender.id, name: sender.name, self: sender.self }, 'broadcast')
    if (!decision.admit) {
      this.stats.declined++
      server.counters.declined++
      publish(channels.broadcastDeclined, { node: server.identity.id, peer: sender.name, peerId: sender.id, txn, rule: decision.rule })
      if (all) this.#send({ kind: 'decline', txn, rule: decision.rule }, reply)
      return
    }
    const { concurrency, queueLength } = server.limits
    const now = server.load()
    const load = now.running + now.queued + this.#offers.size
    if (load >= concurrency + queueLength) {
      this.stats.busy++
      publish(channels.broadcastBusy, { node: server.identity.id, peer: sender.name, peerId: sender.id, txn, load })
      if (all) this.#send({ kind: 'decline', txn, rule: 'busy' }, reply)
      return
    }
    const offer: Offer = { token: randomBytes(12).toString('base64url'), peerId: sender.id, txn, expires: Date.now() + (this.#init.offerTtlMs ?? 3000) }
    this.#offers.set(offer.token, offer)
    this.#byTxn.set(`${sender.id} ${txn}`, offer.token)
    this.stats.offers++
    publish(channels.broadcastOffered, { node: server.identity.id, peer: sender.name, peerId: sender.id, txn, rule: decision.rule, load, concurrency })
    // The least loaded node answers first: a node with free slots at once, a busy one
    // a little later. The other offers it holds count as load: in a burst of broadcasts
    // each one is likely to become a claim, and a node that answered the first queries
    // at once must let the others answer the rest first.
    const pending = now.running + now.queued + this.#offers.size - 1
    const delayMs = all || pending < concurrency ? 0 : Math.min(20, Math.round((pending / concurrency) * 4))
    if (delayMs === 0) this.#sendOffer(offer, reply)
    else setTimeout(() => this.#sendOffer(offer, reply), delayMs).unref()
  }

  #sendOffer (offer: Offer, reply: Reply): void {
    const s = this.#server
    const { running, queued } = s.load()
    this.#send({
      kind: 'offer', txn: offer.txn, token: offer.token, address: this.#init.tcpAddress, port: this.#init.tcpPort, id: s.identity.id,
      load: { running, queued, held: this.#offers.size, concurrency: s.limits.concurrency },
      ...(this.#init.tls === true ? { tls: true } : {})
    }, reply)
  }

  /** A release names one offer by token, or every offer for the txn but the kept node's. */
  #onRelease (m: Record<string, unknown>, sender: DatagramSender): void {
    if (typeof m.token === 'string') {
      const offer = this.#offers.get(m.token)
      if (offer !== undefined && offer.peerId === sender.id) this.#drop(offer)
      return
    }
    if (typeof m.txn !== 'string' || m.keep === this.#server.identity.id) return
    const token = this.#byTxn.get(`${sender.id} ${m.txn}`)
    const offer = token === undefined ? undefined : this.#offers.get(token)
    if (offer !== undefined) this.#drop(offer)
  }

  #send (message: Record<string, unknown>, reply: Reply): void {
    if (this.#socket === undefined) return
    try {
      reply(sealDatagram(this.#server.identity, this.#server.trust, message))
    } catch (err) {
      publish(channels.broadcastError, { node: this.#server.identity.id, where: 'a broadcast client', message: (err as Error).message })
    }
  }

  #drop (offer: Offer): void {
    this.#offers.delete(offer.token)
    this.#byTxn.delete(`${offer.peerId} ${offer.txn}`)
  }

  #expire (): void {
    const now = Date.now()
    for (const offer of this.#offers.values()) {
      if (offer.expires < now) { this.#drop(offer); this.stats.expired++ }
    }
  }
}

import type { Socket } from 'node:net'
import type { Peer } from '@evalmesh/discovery'
import { NatsCarrier, NatsPresence, type NatsConfig, type Subscription } from '@evalmesh/nats'
import type { Listener } from '@evalmesh/transport'
import type { Identity, TrustStore } from '@evalmesh/trust'
import type { BroadcastResponder } from './broadcast-responder.js'
import { channels, publish } from './events.js'

/** Most handshakes in progress over NATS at once (all of them count as one address, "nats"). */
export const NATS_HANDSHAKES = 64

/** `serve --nats`: the backbone to join, and how often to announce this node there. */
export interface NatsInit extends NatsConfig {
  /** Presence announcements this often (default 5000 ms). */
  presenceMs?: number
}

export interface NatsLinkParts {
  identity: Identity
  trust: TrustStore
  listener: Listener
  responder: BroadcastResponder
  version: number
  caps: string[]
}

/**
 * The node on a NATS backbone (PROTOCOL.md §9): streams opened to its id or name are
 * handed to the listener, which authenticates them like TCP sockets; broadcast queries
 * on the mesh subject go to the same responder as UDP ones, answered to their reply
 * inbox; presence announces it and lists the others (`peers`, source "nats").
 */
export class NatsLink {
  readonly carrier: NatsCarrier
  readonly presence: NatsPresence
  readonly #node: string
  /** What brings new work: stream opens and broadcast queries (closed first when the node stops). */
  readonly #intake: Subscription[]
  /** Between a disconnect and the reconnect that follows it, false. */
  #connected = true

  private constructor (carrier: NatsCarrier, presence: NatsPresence, node: string, intake: Subscription[]) {
    this.carrier = carrier
    this.presence = presence
    this.#node = node
    this.#intake = intake
  }

  static async start (parts: NatsLinkParts, init: NatsInit): Promise<NatsLink> {
    const node = parts.identity.id
    let link: NatsLink | undefined
    const carrier = await NatsCarrier.connect(init, {
      onDrop: d => publish(channels.natsDropped, { node, ...d }),
      onStatus: s => {
        if (link !== undefined && s.type === 'disconnect') link.#connected = false
        if (link !== undefined && s.type === 'reconnect') link.#connected = true
        publish(channels.natsStatus, { node, ...s })
      }
    }, `evalmesh node ${parts.identity.name}`)
    // Every stream over NATS comes from the one address "nats": a larger share of the
    // unfinished handshakes than one TCP address gets, so that many clients may connect at once.
    const intake = carrier.serveStreams({ id: node, name: parts.identity.name }, stream => parts.listener.accept(stream as unknown as Socket, { maxPerAddress: NATS_HANDSHAKES }))
    const from = { address: 'nats', port: 0 }
    const onDatagram = (data: Buffer, reply: string | undefined): void => {
      parts.responder.receive(data, from, reply === undefined ? undefined : datagram => carrier.publish(reply, datagram))
    }
    intake.push(carrier.listen(carrier.subjects.broadcast, onDatagram), carrier.listen(carrier.subjects.release(node), onDatagram))
    const presence = new NatsPresence(carrier, { identity: parts.identity, trust: parts.trust, version: parts.version, caps: parts.caps, ...(init.presenceMs === undefined ? {} : { intervalMs: init.presenceMs }) })
    presence.on('drop', (d: { reason: string, detail: string }) => publish(channels.natsDropped, { node, subject: carrier.subjects.presence, ...d }))
    for (const ev of ['appear', 'disappear'] as const) {
      presence.on(ev, (p: { name: string, id: string }) => {
        publish(ev === 'appear' ? channels.peerAppeared : channels.peerDisappeared, { node, name: p.name, address: 'nats', port: 0, id: p.id })
      })
    }
    presence.start()
    // Reachable once started: the server has the subscriptions before anyone is told.
    await carrier.nc.flush()
    publish(channels.natsJoined, { node, servers: init.servers, mesh: carrier.mesh, server: carrier.server })
    link = new NatsLink(carrier, presence, node, intake)
    return link
  }

  /** The nodes seen on the backbone, as peer-table rows (address "nats", port 0). */
  peers (): Peer[] {
    return this.presence.peers().map(p => ({ name: p.name, id: p.id, address: 'nats', port: 0, version: p.version, caps: p.caps, lastSeen: p.lastSeen, source: 'nats' }))
  }

  /** For describe: the mesh, the server the connection is on, whether it is up, the nodes seen. */
  describe (): { mesh: string, server: string, connected: boolean, peers: number } {
    const nc = this.carrier.nc
    return { mesh: this.carrier.mesh, server: this.carrier.server, connected: !nc.isClosed() && this.#connected, peers: this.presence.peers().length }
  }

  /**
   * The node is stopping: say goodbye on the presence subject and take no new streams or
   * queries (as the TCP listener stops accepting), while the streams already open finish.
   */
  quiesce (): void {
    this.presence.stop()
    for (const sub of this.#intake) { try { sub.unsubscribe() } catch { /* closed already */ } }
  }

  /** Quiesce, then close the connection once what is queued has gone out. */
  async stop (): Promise<void> {
    this.quiesce()
    await this.carrier.close()
    publish(channels.natsStatus, { node: this.#node, type: 'closed', data: '' })
  }
}

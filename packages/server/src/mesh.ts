import { EventEmitter } from 'node:events'
import { existsSync } from 'node:fs'
import { isIPv6 } from 'node:net'
import { join } from 'node:path'
import { BROADCAST_PORT, PROTOCOL_VERSION, broadcastGroupFor } from '@evalmesh/protocol'
import { createDiscovery, multicastInterfaceFor, PeerTable, readSeedsFile, type Discovery, type Peer } from '@evalmesh/discovery'
import type { PeerInfo } from '@evalmesh/transport'
import { BroadcastResponder, type ResponderParts } from './broadcast-responder.js'
import { channels, publish } from './events.js'
import { claimLocator, releaseLocator, type NodeLocator } from './local-nodes.js'
import type { RequestMode } from './policy.js'

/** What the mesh needs of the node: the responder's parts, and what it advertises. */
export interface MeshParts extends ResponderParts {
  readonly stateDir: string
  readonly startedAt: number
  /** The capabilities advertised in mDNS TXT records (and describe). */
  capabilities (): string[]
}

export interface MeshOptions {
  /** The LAN address to serve broadcasts and mDNS on; none: loopback only, seeds only. */
  lan?: string | undefined
  /** UDP port for broadcast queries on a LAN (default BROADCAST_PORT); off a LAN the TCP port. */
  broadcastPort?: number | undefined
  /** Static seeds (default `<stateDir>/peers`). */
  peersFile?: string | undefined
  /** mDNS record TTL, seconds. */
  discoveryTtl?: number | undefined
  /** The node serves TLS: its broadcast offers and locator say so. */
  tls: boolean
}

/**
 * The node's place in the mesh: the broadcast responder, discovery (mDNS and seeds on a
 * LAN, seeds alone off one) and the locator files through which local clients find the
 * node. Started once the listener is up, because all three carry its address. Emits
 * 'peers' when the peer table changes.
 */
export class Mesh extends EventEmitter {
  readonly #parts: MeshParts
  readonly #options: MeshOptions
  #responder: BroadcastResponder | undefined
  #discovery: Discovery | undefined
  #seeds: PeerTable | undefined
  #locator: NodeLocator | undefined

  constructor (parts: MeshParts, options: MeshOptions) {
    super()
    this.#parts = parts
    this.#options = options
  }

  get broadcast (): BroadcastResponder | undefined { return this.#responder }
  /** The name mDNS advertises (NAME-2 after a conflict), or null off a LAN. */
  get advertisedName (): string | null { return this.#discovery?.advertisedName ?? null }

  /** Nodes found by mDNS (on a LAN) and static seeds. */
  peers (): Peer[] {
    return this.#discovery?.peers() ?? this.#seeds?.peers() ?? []
  }

  /** Whether a broadcast claim names an offer this node made (undefined: it did not). */
  claim (claim: string, peer: PeerInfo, txn: string): RequestMode | undefined {
    return this.#responder?.claim(claim, peer, txn)
  }

  /** Start answering broadcasts, discovery and the locators; resolves with the started broadcast responder. */
  async start (listening: { host: string, port: number }): Promise<BroadcastResponder> {
    const { host, port } = listening
    const { lan } = this.#options
    const parts = this.#parts
    const udpPort = lan !== undefined ? (this.#options.broadcastPort ?? BROADCAST_PORT) : port
    // A LAN node binds the wildcard of its LAN address's family and joins that family's
    // group on the LAN interface (an IPv6 one named by scope, ::%lan0: PROTOCOL.md §5.2).
    const responderInit: ConstructorParameters<typeof BroadcastResponder>[1] = lan !== undefined
      ? {
        bindAddress: isIPv6(lan) ? '::' : '0.0.0.0', port: udpPort, multicastInterface: multicastInterfaceFor(lan), group: broadcastGroupFor(lan),
        tcpAddress: host === '0.0.0.0' || host === '::' ? lan : host, tcpPort: port
      }
      : { bindAddress: host, port: udpPort, tcpAddress: host, tcpPort: port }
    if (this.#options.tls) responderInit.tls = true
    const responder = new BroadcastResponder(parts, responderInit)
    this.#responder = responder
    await responder.start()

    const peersFile = this.#options.peersFile ?? join(parts.stateDir, 'peers')
    const seeds = existsSync(peersFile) ? readSeedsFile(peersFile) : []
    if (lan !== undefined) await this.#startDiscovery(lan, port, seeds)
    else {
      this.#seeds = new PeerTable()
      this.#seeds.setSelf(parts.identity.name, parts.identity.id)
      for (const seed of seeds) this.#seeds.upsert({ name: seed.name, id: seed.id ?? '', address: seed.address, port: seed.port, version: seed.version ?? PROTOCOL_VERSION, caps: seed.caps ?? [] }, { source: 'seed' })
    }
    this.#locator = {
      name: parts.identity.name, id: parts.identity.id, pid: process.pid, host: responderInit.tcpAddress, port,
      udp: { address: lan ?? host, port: udpPort }, lan: lan ?? null, startedAt: parts.startedAt,
      ...(this.#options.tls ? { tls: true } : {})
    }
    const holder = claimLocator(parts.stateDir, this.#locator)
    if (holder !== undefined) {
      publish(channels.nodeLocatorKept, { node: parts.identity.id, stateDir: parts.stateDir, holder: holder.name, pid: holder.pid, port: holder.port })
    }
    return responder
  }

  async #startDiscovery (lan: string, port: number, seeds: ReturnType<typeof readSeedsFile>): Promise<void> {
    const node = this.#parts.identity
    const init: Parameters<typeof createDiscovery>[0] = { interfaceAddress: lan, seeds }
    if (this.#options.discoveryTtl !== undefined) init.ttl = this.#options.discoveryTtl
    const discovery = createDiscovery(init)
    this.#discovery = discovery
    discovery.on('warning', (err: Error) => publish(channels.discoveryWarning, { node: node.id, message: err.message }))
    // Logged once, through its event (events.ts says how it reads); not repeated as a 'warning'.
    discovery.on('conflict', (c: { name: string, address: string, renamedTo?: string }) => {
      publish(channels.discoveryConflict, c.renamedTo === undefined ? { node: node.id, name: c.name, address: c.address } : { node: node.id, name: c.name, address: c.address, renamedTo: c.renamedTo })
    })
    for (const ev of ['appear', 'disappear'] as const) {
      discovery.on(ev, (p: Peer) => {
        publish(ev === 'appear' ? channels.peerAppeared : channels.peerDisappeared, { node: node.id, name: p.name, address: p.address, port: p.port, id: p.id })
        this.emit('peers')
      })
    }
    await discovery.start()
    discovery.advertise({ name: node.name, id: node.id, port, version: PROTOCOL_VERSION, caps: this.#parts.capabilities() })
    discovery.browse()
  }

  /** Take the node out of the mesh: no local client is sent to it, no broadcast answered, goodbye on the LAN. */
  releaseLocator (): void {
    if (this.#locator !== undefined) releaseLocator(this.#parts.stateDir, this.#locator)
  }

  async stop (): Promise<void> {
    this.releaseLocator()
    await this.#responder?.stop()
    await this.#discovery?.stop()
  }
}

import { EventEmitter } from 'node:events'
import { ReplayWindow, newDatagramCounters, openDatagram, sealDatagram, type DatagramCounters } from '@evalmesh/transport'
import type { Identity, TrustStore } from '@evalmesh/trust'
import type { NatsCarrier } from './carrier.js'

/** A node seen on the NATS backbone (its signed announcement, PROTOCOL.md §9.5). */
export interface NatsPeer {
  name: string
  id: string
  version: number
  caps: string[]
  lastSeen: number
}

/** Most nodes a presence table holds: announcements from further new keys are dropped. */
export const MAX_NATS_PEERS = 4096

export interface PresenceInit {
  identity: Identity
  trust: TrustStore
  version: number
  caps: string[]
  /** Announce this often (default 5000 ms); a node not heard for 3 times this leaves the table. */
  intervalMs?: number
}

/**
 * Presence over NATS: each node publishes a signed `announce` datagram on the mesh's
 * presence subject when it joins, every interval, and when it hears a node it did not
 * know (so a newcomer learns the others within a moment); `leave` when it stops.
 * Announcements from keys this node does not trust are dropped like any datagram.
 *
 * Events: 'appear' (NatsPeer), 'disappear' (NatsPeer), 'drop' ({ reason, detail }).
 */
export class NatsPresence extends EventEmitter {
  readonly counters: DatagramCounters = newDatagramCounters()
  readonly #carrier: NatsCarrier
  readonly #init: PresenceInit
  readonly #replay = new ReplayWindow()
  readonly #peers = new Map<string, NatsPeer>()
  #timer: NodeJS.Timeout | undefined
  #answer: NodeJS.Timeout | undefined
  #stopped = false

  constructor (carrier: NatsCarrier, init: PresenceInit) {
    super()
    this.#carrier = carrier
    this.#init = init
  }

  get intervalMs (): number { return this.#init.intervalMs ?? 5000 }

  start (): void {
    this.#carrier.listen(this.#carrier.subjects.presence, data => this.#onMessage(data))
    this.#announce()
    this.#timer = setInterval(() => { this.#expire(); this.#announce() }, this.intervalMs)
    this.#timer.unref()
  }

  /** Say goodbye (peers drop this node at once) and stop announcing. */
  stop (): void {
    if (this.#stopped) return
    this.#stopped = true
    if (this.#timer !== undefined) clearInterval(this.#timer)
    if (this.#answer !== undefined) clearTimeout(this.#answer)
    this.#publish({ kind: 'leave', id: this.#init.identity.id })
  }

  peers (): NatsPeer[] {
    this.#expire()
    return [...this.#peers.values()]
  }

  #announce (): void {
    this.#publish({ kind: 'announce', id: this.#init.identity.id, version: this.#init.version, caps: this.#init.caps })
  }

  #publish (message: Record<string, unknown>): void {
    this.#carrier.publish(this.#carrier.subjects.presence, sealDatagram(this.#init.identity, this.#init.trust, message))
  }

  #onMessage (data: Buffer): void {
    const opened = openDatagram(data, this.#init.trust, this.#replay, this.counters)
    if (!opened.ok) { this.emit('drop', { reason: opened.reason, detail: opened.detail }); return }
    const { message: m, sender } = opened
    if (sender.self || m.id !== sender.id) return
    // The node's trusted-keys label for the key when it has one; else the name the peer
    // announces (as mDNS names are on the LAN), if it is a plain label; else its id.
    const name = this.#init.trust.nameOf(sender.key) ?? (/^[A-Za-z0-9_-]{1,63}$/.test(sender.name) ? sender.name : sender.id)
    if (m.kind === 'leave') {
      const known = this.#peers.get(sender.id)
      if (known !== undefined) { this.#peers.delete(sender.id); this.emit('disappear', known) }
      return
    }
    if (m.kind !== 'announce') return
    const caps = Array.isArray(m.caps) ? m.caps.filter((c): c is string => typeof c === 'string').slice(0, 32) : []
    const peer: NatsPeer = { name, id: sender.id, version: typeof m.version === 'number' ? m.version : 0, caps, lastSeen: Date.now() }
    const isNew = !this.#peers.has(sender.id)
    if (isNew && this.#peers.size >= MAX_NATS_PEERS) { this.emit('drop', { reason: 'full', detail: `already ${MAX_NATS_PEERS} nodes in the NATS presence table` }); return }
    this.#peers.set(sender.id, peer)
    if (isNew) {
      this.emit('appear', peer)
      if (this.#stopped) return
      // Answer a newcomer soon, once for a burst of them, so it need not wait an interval.
      this.#answer ??= setTimeout(() => { this.#answer = undefined; this.#announce() }, 50 + Math.floor(Math.random() * 200))
      this.#answer.unref()
    }
  }

  #expire (): void {
    const cutoff = Date.now() - 3 * this.intervalMs
    for (const [id, p] of this.#peers) {
      if (p.lastSeen < cutoff) { this.#peers.delete(id); this.emit('disappear', p) }
    }
  }
}

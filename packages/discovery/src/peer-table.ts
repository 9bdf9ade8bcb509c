import { EventEmitter } from 'node:events'
import type { PeerEntry } from '@evalmesh/protocol'
import { readSeedsFile, type SeedPeer } from './seeds.js'

/** Where a peer was seen: mDNS on the LAN, the peers file, or presence on a NATS backbone (not kept in this table: the node merges those rows). */
export type PeerSource = PeerEntry['source']

/**
 * A node we know of, as the rest of the mesh sees it: one row of the `peers` reply
 * (PROTOCOL.md §3.8), the id from the peer's TXT record or the seeds file.
 */
export type Peer = PeerEntry

/** What an upsert provides; the table fills in lastSeen and source. */
export type PeerInput = Omit<Peer, 'lastSeen' | 'source'>

export interface PeerTableInit {
  /** Clock, for tests; defaults to Date.now. */
  now?: () => number
}

interface Entry {
  peer: Peer
  /** ms since the epoch; Infinity for seeds. */
  expiresAt: number
}

/**
 * The peer table: live peers keyed by name, from two sources. An mDNS entry lives
 * until its TTL runs out, a goodbye or `remove`; a seed lives until removed. When
 * both know a name, the mDNS entry is the one shown (it carries id, version and caps);
 * when it expires, the seed shows again.
 *
 * Events, each with the Peer as shown: 'appear' (a name becomes visible), 'update'
 * (what is shown for it changed: address, port, id, version, caps or source; not
 * lastSeen alone), 'disappear' (no source knows it any more).
 */
export class PeerTable extends EventEmitter {
  readonly #now: () => number
  readonly #mdns = new Map<string, Entry>()
  readonly #seeds = new Map<string, Entry>()
  #selfName: string | undefined
  #selfId: string | undefined

  constructor (init: PeerTableInit = {}) {
    super()
    this.#now = init.now ?? Date.now
  }

  /** Never list ourselves: entries with this name or id are ignored. */
  setSelf (name: string | undefined, id?: string): void {
    this.#selfName = name
    this.#selfId = id
    for (const key of [...this.#mdns.keys(), ...this.#seeds.keys()]) {
      const shown = this.#shown(key)
      if (shown !== undefined && this.#isSelf(shown.peer)) {
        const before = shown.peer
        this.#mdns.delete(key)
        this.#seeds.delete(key)
        this.emit('disappear', before)
      }
    }
  }

  /**
   * Add or refresh a peer. `ttl` (seconds) bounds an mDNS entry's life from now; seeds
   * never expire. Returns the peer as shown, or undefined if it was ignored (self).
   */
  upsert (input: PeerInput, opts: { source: PeerSource, ttl?: number }): Peer | undefined {
    const now = this.#now()
    const peer: Peer = { ...input, caps: [...input.caps], lastSeen: now, source: opts.source }
    if (this.#isSelf(peer)) return undefined
    const expiresAt = opts.source === 'seed' || opts.ttl === undefined ? Infinity : now + opts.ttl * 1000
    const before = this.#shown(peer.name)?.peer
    const map = opts.source === 'mdns' ? this.#mdns : this.#seeds
    map.set(peer.name, { peer, expiresAt })
    return this.#changed(peer.name, before)
  }

  /** Forget a peer from one source (or both). Returns whether anything was removed. */
  remove (name: string, source?: PeerSource): boolean {
    const before = this.#shown(name)?.peer
    let removed = false
    if (source !== 'seed') removed = this.#mdns.delete(name) || removed
    if (source !== 'mdns') removed = this.#seeds.delete(name) || removed
    this.#changed(name, before)
    return removed
  }

  /** Drop mDNS entries whose TTL has run out. Returns the peers that disappeared. */
  expire (now = this.#now()): Peer[] {
    const gone: Peer[] = []
    for (const [name, entry] of [...this.#mdns]) {
      if (entry.expiresAt > now) continue
      const before = this.#shown(name)?.peer
      this.#mdns.delete(name)
      this.#changed(name, before)
      if (this.#shown(name) === undefined && before !== undefined) gone.push(copy(before))
    }
    return gone
  }

  /** When the shown mDNS entry for `name` expires (ms since the epoch). */
  expiresAt (name: string): number | undefined {
    return this.#mdns.get(name)?.expiresAt
  }

  /** Live peers, sorted by name (expired entries are dropped first, with events). */
  peers (): Peer[] {
    this.expire()
    const names = new Set([...this.#mdns.keys(), ...this.#seeds.keys()])
    const out: Peer[] = []
    for (const name of [...names].sort()) {
      const shown = this.#shown(name)
      if (shown !== undefined) out.push(copy(shown.peer))
    }
    return out
  }

  /** Look a peer up by name first, then by id. */
  peer (nameOrId: string): Peer | undefined {
    this.expire()
    const byName = this.#shown(nameOrId)
    if (byName !== undefined) return copy(byName.peer)
    if (nameOrId === '') return undefined
    return this.peers().find(p => p.id === nameOrId)
  }

  get size (): number {
    return this.peers().length
  }

  /** Add these seeds (replacing seeds of the same name). Returns the peers as shown. */
  addSeeds (seeds: SeedPeer[]): Peer[] {
    const out: Peer[] = []
    for (const s of seeds) {
      const shown = this.upsert({
        name: s.name, id: s.id ?? '', address: s.address, port: s.port, version: s.version ?? 0, caps: s.caps ?? []
      }, { source: 'seed' })
      if (shown !== undefined) out.push(shown)
    }
    return out
  }

  /**
   * Replace all seeds with the peers of a seeds file (format: parseSeeds). Throws
   * SeedFileError, naming the file and line, and then leaves the table unchanged.
   */
  loadSeeds (file: string): Peer[] {
    const seeds = readSeedsFile(file)
    const keep = new Set(seeds.map(s => s.name))
    for (const name of [...this.#seeds.keys()]) if (!keep.has(name)) this.remove(name, 'seed')
    return this.addSeeds(seeds)
  }

  /** Remove everything, emitting 'disappear' for each peer that was shown. */
  clear (): void {
    const shown = this.peers()
    this.#mdns.clear()
    this.#seeds.clear()
    for (const p of shown) this.emit('disappear', p)
  }

  #isSelf (peer: Peer): boolean {
    return (this.#selfName !== undefined && peer.name === this.#selfName) ||
      (this.#selfId !== undefined && this.#selfId !== '' && peer.id === this.#selfId)
  }

  #shown (name: string): Entry | undefined {
    return this.#mdns.get(name) ?? this.#seeds.get(name)
  }

  #changed (name: string, before: Peer | undefined): Peer | undefined {
    const after = this.#shown(name)?.peer
    if (before === undefined && after !== undefined) this.emit('appear', copy(after))
    else if (before !== undefined && after === undefined) this.emit('disappear', copy(before))
    else if (before !== undefined && after !== undefined && !samePeer(before, after)) this.emit('update', copy(after))
    return after === undefined ? undefined : copy(after)
  }
}

function copy (p: Peer): Peer {
  return { ...p, caps: [...p.caps] }
}

function samePeer (a: Peer, b: Peer): boolean {
  return a.name === b.name && a.id === b.id && a.address === b.address && a.port === b.port &&
    a.version === b.version && a.source === b.source && a.caps.join(',') === b.caps.join(',')
}

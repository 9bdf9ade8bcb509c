import { EventEmitter } from 'node:events'
import { isIP, isIPv4, isIPv6 } from 'node:net'
import { createSocket, type RemoteInfo } from 'node:dgram'
import makeMdns from 'multicast-dns'
import type { Question } from 'dns-packet'
import {
  ANNOUNCE_COUNT, ANNOUNCE_INTERVAL_MS, BROWSE_FIRST_INTERVAL_MS, BROWSE_MAX_INTERVAL_MS, DEFAULT_HOST_TTL,
  MAX_INSTANCES, MAX_LABEL_BYTES, MDNS_GROUP_V4, MDNS_GROUP_V6, MDNS_PORT, OWN_PACKET_WINDOW_MS, PROBE_COUNT, PROBE_INTERVAL_MS, REFRESH_POINTS, SERVICE_TYPE,
  RECV_BUFFER_BYTES, SHARED_DELAY_MAX_MS, SHARED_DELAY_MIN_MS, TICK_MS
} from './constants.js'
import { PeerTable, type Peer } from './peer-table.js'
import {
  allRecords, answerQuery, badServiceInfo, decodeTxt, instanceLabel, ownRecords, questionClassOk, sameRecord,
  type DnsRecord, type OwnRecords, type ServiceInfo
} from './records.js'
import { badNodeName, readSeedsFile, type SeedPeer } from './seeds.js'
import { compareAddresses, interfaceOf, isLinkLocalV6, isOwnAddress, multicastInterfaceFor, onLink, type LanInterface } from './interfaces.js'

export interface DiscoveryInit {
  /** An address of the interface to use, IPv4 or IPv6, e.g. 198.18.0.3 or 2001:db8::3. */
  interfaceAddress: string
  /**
   * The addresses to advertise (A for IPv4, AAAA for IPv6), all on that interface:
   * where the node takes connections. Default: interfaceAddress alone. mDNS runs on
   * 224.0.0.251 when one is IPv4 and on ff02::fb when one is IPv6 (a dual-stack node: both).
   */
  addresses?: string[]
  /** TTL in seconds of our SRV and A records, default 120. Peers drop us this long after we vanish. */
  ttl?: number
  /** Static peers: a seeds file path (see parseSeeds) or the entries themselves. */
  seeds?: string | SeedPeer[]
}

/**
 * mDNS / DNS-SD on one interface. Events: 'appear', 'update', 'disappear' (Peer);
 * 'conflict' ({name, address, renamedTo?}) when another host answers for our name:
 *   while probing, the node then advertises as `renamedTo` (`name-2`, `name-3`...);
 * 'warning' (Error) for undecodable packets and socket trouble. Never 'error'.
 */
export interface Discovery extends EventEmitter {
  /** Open the socket. Rejects with a clear Error if the address is not on any interface or 5353 cannot be bound. */
  start (): Promise<void>
  /** Send goodbyes (TTL 0) for what we advertised, then close. Safe to call twice. */
  stop (): Promise<void>
  /** Probe, then announce (twice, 1 s apart) and answer queries. Calling again with new caps re-announces. */
  advertise (info: ServiceInfo): void
  /** Query for peers (known answers included) and keep the table fresh. */
  browse (): void
  /** Live peers, not including this node, from mDNS and seeds. */
  peers (): Peer[]
  peer (nameOrId: string): Peer | undefined
  /** The underlying table (seeds can be added to it directly). */
  readonly table: PeerTable
  /** The name advertised: the one asked for, or `name-2`... after a conflict on the LAN. */
  readonly advertisedName: string | undefined
}

interface Timed { ttl: number, receivedAt: number }
interface SrvRec extends Timed { port: number, target: string }
interface TxtRec extends Timed { id: string, version: number, caps: string[] }
interface HostRec extends Timed { address: string, family: 4 | 6 }
interface Instance {
  label: string
  srv?: SrvRec
  txt?: TxtRec
  /** Index into REFRESH_POINTS of the next maintenance query. */
  refreshStep: number
  /** Last time we asked for this instance's missing records (ms). */
  askedAt: number
}

const lc = (s: string): string => s.toLowerCase()
const rand = (lo: number, hi: number): number => lo + Math.random() * (hi - lo)

/** One mDNS socket: IPv4 on 224.0.0.251, or IPv6 on ff02::fb (RFC 6762 §3). */
interface Link { family: 4 | 6, mdns: makeMdns.MulticastDNS }

/** A fingerprint of a packet's sections that survives encode + decode. */
function fingerprint (p: { type?: string, questions?: Question[], answers?: DnsRecord[], additionals?: DnsRecord[], authorities?: DnsRecord[] }): string {
  const q = (p.questions ?? []).map(x => `${lc(x.name)}/${x.type}`).join(',')
  const r = (list: DnsRecord[] | undefined): string => (list ?? []).map(x => `${lc(x.name)}/${x.type}/${x.ttl ?? 0}`).join(',')
  return `${p.type ?? ''}|${q}|${r(p.answers)}|${r(p.additionals)}|${r(p.authorities)}`
}

class MdnsDiscovery extends EventEmitter implements Discovery {
  readonly table = new PeerTable()
  readonly #address: string
  /** What we advertise: the interface address first, then any other of the node's. */
  readonly #addresses: string[]
  readonly #ttl: number
  readonly #seeds: string | SeedPeer[] | undefined
  #iface: LanInterface | undefined
  #links: Link[] = []
  #state: 'new' | 'starting' | 'running' | 'stopping' | 'stopped' = 'new'
  #starting: Promise<void> | undefined
  #stopping: Promise<void> | undefined
  readonly #timers = new Set<NodeJS.Timeout>()
  #tick: NodeJS.Timeout | undefined

  // Advertising
  #info: ServiceInfo | undefined
  #own: OwnRecords | undefined
  #phase: 'idle' | 'probing' | 'announced' | 'conflict' = 'idle'
  #generation = 0
  /** The name asked for, once a conflict made us advertise under another. */
  #baseName: string | undefined
  #renames = 0
  #conflictTimes: number[] = []

  // Browsing
  #browsing = false
  #browseInterval = BROWSE_FIRST_INTERVAL_MS
  /** Another host asked our browse question since our last one (RFC 6762 §7.3). */
  #browseAnsweredElsewhere = false
  readonly #instances = new Map<string, Instance>()
  readonly #hosts = new Map<string, HostRec>()
  readonly #sent = new Map<string, number[]>()

  constructor (init: DiscoveryInit) {
    super()
    if (typeof init?.interfaceAddress !== 'string' || isIP(init.interfaceAddress) === 0) {
      throw new TypeError(`interfaceAddress must be an IPv4 or IPv6 address, got ${JSON.stringify(init?.interfaceAddress)}`)
    }
    const addresses = [...new Set([init.interfaceAddress, ...(init.addresses ?? [])])]
    for (const a of addresses) {
      if (isIP(a) === 0 || isLinkLocalV6(a)) throw new TypeError(`cannot advertise ${JSON.stringify(a)}: give IPv4 or global IPv6 addresses (a link-local one needs its interface named, which A/AAAA cannot carry)`)
    }
    const ttl = init.ttl ?? DEFAULT_HOST_TTL
    if (!Number.isInteger(ttl) || ttl < 1 || ttl > 86400) throw new RangeError(`ttl must be an integer from 1 to 86400 seconds, got ${init.ttl}`)
    this.#address = init.interfaceAddress
    this.#addresses = addresses
    this.#ttl = ttl
    this.#seeds = init.seeds
    for (const ev of ['appear', 'update', 'disappear'] as const) {
      this.table.on(ev, (p: Peer) => this.emit(ev, p))
    }
  }

  async start (): Promise<void> {
    if (this.#state === 'running') return
    if (this.#starting !== undefined) return await this.#starting
    if (this.#state === 'stopping' || this.#state === 'stopped') throw new Error('discovery was stopped; create a new one')
    this.#state = 'starting'
    this.#starting = this.#open()
    try {
      await this.#starting
    } catch (err) {
      this.#state = 'stopped'
      throw err
    }
  }

  async #open (): Promise<void> {
    const iface = interfaceOf(this.#address)
    if (iface === undefined) throw new Error(`no network interface has the address ${this.#address}`)
    for (const a of this.#addresses) {
      if (!isOwnAddress(iface, a)) throw new Error(`${a} is not an address of ${iface.name}, the interface of ${this.#address}`)
    }
    this.#iface = iface
    if (this.#seeds !== undefined) {
      this.table.addSeeds(typeof this.#seeds === 'string' ? readSeedsFile(this.#seeds) : this.#seeds)
    }
    const families = [...new Set(this.#addresses.map(a => isIPv6(a) ? 6 as const : 4 as const))]
    try {
      for (const family of families) this.#links.push(await this.#openLink(family))
    } catch (err) {
      for (const link of this.#links) link.mdns.destroy()
      this.#links = []
      throw err
    }
    this.#state = 'running'
    this.#tick = setInterval(() => this.#maintain(), TICK_MS)
    this.#tick.unref()
    if (this.#info !== undefined) this.#beginAdvertising()
    if (this.#browsing) this.#beginBrowsing()
  }

  /**
   * One mDNS socket on our interface. Bound to the wildcard of its family: binding to the
   * interface address would deliver no multicast on Linux (multicast-dns #53); the
   * membership and the multicast interface pick the link (an IPv6 one by its scope,
   * `::%lan0`). Our own socket for a larger receive buffer: when many nodes boot together
   * every host hears every probe, announcement and answer at once, and the default 208 KiB
   * overflowed (hundreds of drops per host with 32 nodes), losing goodbyes with it.
   */
  async #openLink (family: 4 | 6): Promise<Link> {
    const v6 = family === 6
    const local = v6 ? this.#addresses.find(a => isIPv6(a)) as string : this.#addresses.find(a => isIPv4(a)) as string
    // ipv6Only: the IPv6 socket must not also take IPv4 datagrams to 5353 (the other link's).
    const socket = createSocket({ type: v6 ? 'udp6' : 'udp4', reuseAddr: true, recvBufferSize: RECV_BUFFER_BYTES, ...(v6 ? { ipv6Only: true } : {}) })
    const mdns = makeMdns({
      type: v6 ? 'udp6' : 'udp4', ip: v6 ? MDNS_GROUP_V6 : MDNS_GROUP_V4, interface: multicastInterfaceFor(local), bind: v6 ? '::' : '0.0.0.0', socket
    })
    const group = v6 ? `[${MDNS_GROUP_V6}]` : MDNS_GROUP_V4
    await new Promise<void>((resolve, reject) => {
      const onError = (err: Error): void => {
        mdns.removeListener('ready', onReady)
        try { mdns.destroy() } catch {}
        reject(new Error(`cannot open mDNS on ${group}:${MDNS_PORT} (interface ${this.#iface?.name ?? '?'}, ${local}): ${err.message}`, { cause: err }))
      }
      const onReady = (): void => { mdns.removeListener('error', onError); resolve() }
      mdns.once('error', onError)
      mdns.once('ready', onReady)
    })
    mdns.on('error', (err: Error) => this.emit('warning', err))
    mdns.on('warning', (err: Error) => this.emit('warning', err))
    mdns.on('packet', (packet, rinfo) => {
      try {
        this.#onPacket(packet as unknown as Record<string, unknown>, rinfo)
      } catch (err) {
        // A packet that decodes but breaks our handling is the sender's problem, not ours.
        this.emit('warning', new Error(`ignored a malformed mDNS packet from ${rinfo.address}: ${(err as Error).message}`))
      }
    })
    return { family, mdns }
  }

  async stop (): Promise<void> {
    if (this.#stopping !== undefined) return await this.#stopping
    this.#stopping = this.#close()
    return await this.#stopping
  }

  async #close (): Promise<void> {
    if (this.#starting !== undefined) await this.#starting.catch(() => {})
    this.#state = 'stopping'
    if (this.#tick !== undefined) clearInterval(this.#tick)
    for (const t of this.#timers) clearTimeout(t)
    this.#timers.clear()
    this.#generation++
    if (this.#links.length > 0) {
      if (this.#phase === 'announced' && this.#info !== undefined) {
        // Goodbye (RFC 6762 §10.1): same records, TTL 0, so peers drop us now, not at expiry.
        const bye = ownRecords(this.#info, this.#addresses, this.#ttl, true)
        await this.#send({ type: 'response', answers: allRecords(bye) })
      }
      await Promise.all(this.#links.map(async link => await new Promise<void>(resolve => link.mdns.destroy(() => resolve()))))
    }
    this.#links = []
    this.#state = 'stopped'
  }

  advertise (info: ServiceInfo): void {
    const bad = badNodeName(info?.name) ?? badServiceInfo(info)
    if (bad !== undefined) throw new TypeError(`cannot advertise: ${bad}`)
    if (this.#state === 'stopping' || this.#state === 'stopped') throw new Error('discovery was stopped')
    const prev = this.#info
    // Re-advertising (new caps) under the name asked for keeps the one a conflict gave us.
    const keepRename = prev !== undefined && info.name === this.#baseName
    const name = keepRename ? prev.name : info.name
    if (!keepRename) { this.#baseName = undefined; this.#renames = 0 }
    this.#info = { name, id: info.id, port: info.port, version: info.version, caps: [...info.caps] }
    this.table.setSelf(name, info.id)
    if (this.#state !== 'running') return
    if (prev !== undefined && prev.name === name && this.#phase === 'announced') {
      // Same name, new data: no need to probe again, just tell everyone (RFC 6762 §8.4).
      this.#own = ownRecords(this.#info, this.#addresses, this.#ttl)
      this.#announce(this.#generation)
      return
    }
    if (prev !== undefined && this.#phase === 'announced') {
      // Goodbye for the old name, which was ours (never for one we were still probing).
      void this.#send({ type: 'response', answers: allRecords(ownRecords(prev, this.#addresses, this.#ttl, true)) })
    }
    this.#beginAdvertising()
  }

  browse (): void {
    if (this.#state === 'stopping' || this.#state === 'stopped') throw new Error('discovery was stopped')
    if (this.#browsing) return
    this.#browsing = true
    if (this.#state === 'running') this.#beginBrowsing()
  }

  peers (): Peer[] {
    return this.table.peers()
  }

  peer (nameOrId: string): Peer | undefined {
    return this.table.peer(nameOrId)
  }

  // ---- timers -------------------------------------------------------------------

  #later (ms: number, fn: () => void): void {
    const t = setTimeout(() => { this.#timers.delete(t); fn() }, ms)
    this.#timers.add(t)
  }

  // ---- sending ------------------------------------------------------------------

  /** Multicast on every link (a dual-stack node speaks on both groups); unicast on the link of `to`. */
  async #send (packet: Record<string, unknown>, to?: { address: string, port: number }): Promise<void> {
    const links = to === undefined ? this.#links : this.#links.filter(l => l.family === (isIPv6(to.address) ? 6 : 4))
    await Promise.all(links.map(async link => await this.#sendOn(link.mdns, packet, to)))
  }

  async #sendOn (mdns: makeMdns.MulticastDNS, packet: Record<string, unknown>, to?: { address: string, port: number }): Promise<void> {
    const fp = fingerprint(packet as Parameters<typeof fingerprint>[0])
    if (to === undefined) {
      const list = this.#sent.get(fp) ?? []
      list.push(Date.now())
      this.#sent.set(fp, list)
    }
    return await new Promise(resolve => {
      const cb = (err: Error | null): void => {
        if (err != null) this.emit('warning', new Error(`mDNS send failed: ${err.message}`, { cause: err }))
        resolve()
      }
      try {
        if (packet.type === 'response') mdns.respond(packet as never, (to ?? undefined) as never, cb)
        else mdns.query(packet as never, (to ?? undefined) as never, cb)
      } catch (err) {
        cb(err as Error)
      }
    })
  }

  /** Multicast loopback hands our own packets back; recognise them by fingerprint. */
  #isOwn (packet: Record<string, unknown>, rinfo: RemoteInfo): boolean {
    // Our IPv6 packets leave from the interface's link-local address, not the advertised one.
    if (this.#iface === undefined || !isOwnAddress(this.#iface, rinfo.address) || rinfo.port !== MDNS_PORT) return false
    const fp = fingerprint(packet as Parameters<typeof fingerprint>[0])
    const list = this.#sent.get(fp)
    if (list === undefined) return false
    const now = Date.now()
    while (list.length > 0 && now - (list[0] as number) > OWN_PACKET_WINDOW_MS) list.shift()
    const mine = list.length > 0
    if (mine) list.shift()
    if (list.length === 0) this.#sent.delete(fp)
    return mine
  }

  // ---- advertising --------------------------------------------------------------

  #beginAdvertising (): void {
    const gen = ++this.#generation
    this.#own = ownRecords(this.#info as ServiceInfo, this.#addresses, this.#ttl)
    this.#phase = 'probing'
    const probe = (n: number): void => {
      if (gen !== this.#generation || this.#phase !== 'probing') return
      if (n === PROBE_COUNT) {
        this.#phase = 'announced'
        this.#announce(gen)
        return
      }
      const own = this.#own as OwnRecords
      void this.#send({
        type: 'query',
        questions: [{ name: own.instance, type: 'ANY' }, { name: own.host, type: 'ANY' }],
        authorities: [own.srv, own.txt, ...own.addresses]
      })
      this.#later(PROBE_INTERVAL_MS, () => probe(n + 1))
    }
    this.#later(rand(0, PROBE_INTERVAL_MS), () => probe(0))
  }

  #announce (gen: number, n = 0): void {
    if (gen !== this.#generation || this.#phase !== 'announced' || this.#own === undefined) return
    void this.#send({ type: 'response', answers: allRecords(this.#own) })
    if (n + 1 < ANNOUNCE_COUNT) this.#later(ANNOUNCE_INTERVAL_MS, () => this.#announce(gen, n + 1))
  }

  #conflict (from: string): void {
    if (this.#phase === 'conflict') return
    const info = this.#info
    const name = info?.name ?? ''
    if (this.#phase !== 'probing' || info === undefined) {
      // We own the name already; the other host should have probed. Keep it.
      this.emit('conflict', { name, address: from })
      return
    }
    // Someone already owns the name: take the next one and probe again, as avahi does
    // (RFC 6762 §9). Past 15 conflicts in 10 s, wait 5 s between tries (§8.1).
    const now = Date.now()
    this.#conflictTimes = [...this.#conflictTimes.filter(t => now - t < 10_000), now]
    this.#renames++
    const base = this.#baseName ?? name
    this.#baseName = base
    const suffix = `-${this.#renames + 1}`
    const renamedTo = base.slice(0, MAX_LABEL_BYTES - suffix.length) + suffix
    this.#info = { ...info, name: renamedTo }
    this.table.setSelf(renamedTo, info.id)
    this.#phase = 'conflict'
    this.#generation++
    this.emit('conflict', { name, address: from, renamedTo })
    this.#later(this.#conflictTimes.length > 15 ? 5000 : 0, () => { if (this.#state === 'running' && this.#phase === 'conflict') this.#beginAdvertising() })
  }

  /** The family of the interface address: the one a dual-stack peer is reached by. */
  get #family (): 4 | 6 { return isIPv6(this.#address) ? 6 : 4 }

  /** The name this node is advertised under: its own, or the one taken after a conflict. */
  get advertisedName (): string | undefined {
    return this.#info?.name
  }

  #onQuery (packet: Record<string, unknown>, rinfo: RemoteInfo): void {
    const own = this.#own
    if (own === undefined) return
    const questions = Array.isArray(packet.questions) ? packet.questions as Question[] : []
    if (this.#phase === 'probing') {
      // A simultaneous probe for our name from another host (RFC 6762 §8.2): the
      // lexicographically later data wins; compare addresses, the only data that differs
      // (an address record of the same type as our first).
      const auth = Array.isArray(packet.authorities) ? packet.authorities as DnsRecord[] : []
      const mine = own.addresses[0] as DnsRecord
      const theirs = auth.find(a => a.type === mine.type && lc(a.name) === lc(own.host))
      if (theirs !== undefined && typeof theirs.data === 'string' && isIP(theirs.data) !== 0 && !isOwnAddress(this.#iface as LanInterface, theirs.data) &&
          compareAddresses(theirs.data, mine.data as string) > 0) {
        this.#conflict(theirs.data)
      }
      return
    }
    if (this.#phase !== 'announced') return
    const known = Array.isArray(packet.answers) ? packet.answers as DnsRecord[] : []
    const legacy = rinfo.port !== MDNS_PORT
    const reply = answerQuery(questions, known, own, { legacy })
    if (reply === undefined) return
    if (legacy) {
      // Legacy unicast (RFC 6762 §6.7): reply to the sender's port, echoing id and questions.
      void this.#send({
        type: 'response', id: packet.id, questions: questions.filter(questionClassOk).map(q => ({ name: q.name, type: q.type, class: 'IN' })),
        answers: reply.answers, additionals: reply.additionals
      }, { address: rinfo.address, port: rinfo.port })
      return
    }
    const send = (): void => { void this.#send({ type: 'response', answers: reply.answers, additionals: reply.additionals }) }
    if (reply.shared) this.#later(rand(SHARED_DELAY_MIN_MS, SHARED_DELAY_MAX_MS), send)
    else send()
  }

  // ---- browsing -----------------------------------------------------------------

  #beginBrowsing (): void {
    this.#browseInterval = BROWSE_FIRST_INTERVAL_MS
    const step = (): void => {
      if (this.#state !== 'running') return
      // Duplicate question suppression: the answers to their query reached us too.
      if (this.#browseAnsweredElsewhere) this.#browseAnsweredElsewhere = false
      else this.#queryPtr()
      this.#later(this.#browseInterval, step)
      this.#browseInterval = Math.min(this.#browseInterval * 2, BROWSE_MAX_INTERVAL_MS)
    }
    // RFC 6762 §5.2: a small random delay so that hosts booted together don't collide.
    this.#later(rand(SHARED_DELAY_MIN_MS, SHARED_DELAY_MAX_MS), step)
  }

  #queryPtr (): void {
    void this.#send({ type: 'query', questions: [{ name: SERVICE_TYPE, type: 'PTR' }], answers: this.#knownPtrs(Date.now()) })
  }

  #knownPtrs (now: number): DnsRecord[] {
    const known: DnsRecord[] = []
    for (const inst of this.#instances.values()) {
      if (this.table.expiresAt(inst.label) === undefined) continue
      // Our PTR knowledge is as fresh as the instance; list it only while more than half is left.
      const remaining = this.#remainingTtl(inst, now)
      if (remaining === undefined) continue
      known.push({ name: SERVICE_TYPE, type: 'PTR', ttl: remaining, data: `${inst.label}.${SERVICE_TYPE}` })
    }
    return known
  }

  /**
   * RFC 6762 §7.3: someone else asked our browse question, listing no known answer
   * that we would not list ourselves, so every answer we could get went out to all.
   */
  #noteForeignQuery (packet: Record<string, unknown>): void {
    if (!this.#browsing) return
    const questions = Array.isArray(packet.questions) ? packet.questions as Question[] : []
    const asksBrowse = questions.some(q => lc(String(q.name)) === SERVICE_TYPE && q.type === 'PTR' && q.class === 'IN')
    if (!asksBrowse) return
    const theirs = (Array.isArray(packet.answers) ? packet.answers as DnsRecord[] : []).filter(a => a.type === 'PTR' && lc(String(a.name)) === SERVICE_TYPE)
    const ours = this.#knownPtrs(Date.now())
    if (theirs.every(t => ours.some(o => lc(String(o.data)) === lc(String(t.data))))) this.#browseAnsweredElsewhere = true
  }

  /** Remaining TTL (s) of the instance's least-fresh record, for known answers. */
  #remainingTtl (inst: Instance, now: number): number | undefined {
    const recs = this.#recordsOf(inst)
    if (recs === undefined) return undefined
    const left = Math.min(...recs.map(r => r.ttl - (now - r.receivedAt) / 1000))
    return left > 0 ? Math.floor(left) : undefined
  }

  #recordsOf (inst: Instance): Timed[] | undefined {
    if (inst.srv === undefined || inst.txt === undefined) return undefined
    const host = this.#hosts.get(lc(inst.srv.target))
    if (host === undefined) return undefined
    return [inst.srv, inst.txt, host]
  }

  #onResponse (packet: Record<string, unknown>, rinfo: RemoteInfo): void {
    const records = [
      ...(Array.isArray(packet.answers) ? packet.answers as DnsRecord[] : []),
      ...(Array.isArray(packet.additionals) ? packet.additionals as DnsRecord[] : [])
    ]
    const now = Date.now()
    const own = this.#own
    const touched = new Set<string>()
    const targets = new Set<string>()
    const hostRecords: DnsRecord[] = []

    for (const rec of records) {
      if (typeof rec?.name !== 'string') continue
      const name = lc(rec.name)
      const ttl = typeof rec.ttl === 'number' ? rec.ttl : 0
      if (own !== undefined && (name === lc(own.instance) || name === lc(own.host))) {
        // Records for our own names from someone else: a conflict unless they match ours.
        const mine = [own.srv, own.txt, ...own.addresses].find(o => o.type === rec.type && lc(o.name) === name)
        if (mine !== undefined && ttl > 0 && !sameRecord(mine, rec) && this.#phase !== 'idle') this.#conflict(claimantOf(records, own, rinfo.address))
        continue
      }
      if (rec.type === 'A' || rec.type === 'AAAA') { hostRecords.push(rec); continue }
      if (!this.#browsing) continue
      if (rec.type === 'PTR' && name === SERVICE_TYPE && typeof rec.data === 'string') {
        const label = instanceLabel(rec.data)
        if (label === undefined || (own !== undefined && lc(label) === lc(this.#info?.name ?? ''))) continue
        if (ttl === 0) { this.#drop(label); continue }
        if (this.#instance(label, true) !== undefined) touched.add(label)
        continue
      }
      const label = instanceLabel(rec.name)
      if (label === undefined) continue
      if (rec.type === 'SRV') {
        const d = rec.data as { port?: unknown, target?: unknown } | undefined
        if (ttl === 0) { this.#drop(label); continue }
        if (typeof d?.port !== 'number' || d.port < 1 || d.port > 65535 || typeof d.target !== 'string' || d.target.length === 0) continue
        const inst = this.#instance(label, true)
        if (inst === undefined) continue
        inst.srv = { port: d.port, target: d.target, ttl, receivedAt: now }
        targets.add(lc(d.target))
        touched.add(label)
      } else if (rec.type === 'TXT') {
        if (ttl === 0) { this.#drop(label); continue }
        const txt = decodeTxt(rec.data)
        if (txt === undefined) continue
        const inst = this.#instance(label, true)
        if (inst === undefined) continue
        inst.txt = { ...txt, ttl, receivedAt: now }
        touched.add(label)
      }
    }

    // Address records after the rest, so that an A in the same packet as its SRV is kept.
    for (const rec of hostRecords) {
      if (!this.#browsing) break
      const name = lc(rec.name)
      const known = targets.has(name) || [...this.#instances.values()].some(i => i.srv !== undefined && lc(i.srv.target) === name)
      const family = rec.type === 'AAAA' ? 6 : 4
      if (!known || typeof rec.data !== 'string' || isIP(rec.data) !== family || isLinkLocalV6(rec.data)) continue
      if (!this.#links.some(l => l.family === family)) continue // an address of a family we do not speak
      const held = this.#hosts.get(name)
      if ((rec.ttl ?? 0) === 0) {
        if (held?.address === rec.data) this.#hosts.delete(name)
        continue
      }
      // A dual-stack peer sends both: keep the family of our interface address, which we reach it by first.
      if (held !== undefined && held.family !== family && held.family === this.#family && held.receivedAt + held.ttl * 1000 > now) continue
      this.#hosts.set(name, { address: rec.data, family, ttl: rec.ttl as number, receivedAt: now })
      for (const inst of this.#instances.values()) if (inst.srv !== undefined && lc(inst.srv.target) === name) touched.add(inst.label)
    }
    for (const label of touched) this.#reconcile(label, now)
  }

  #instance (label: string, create: boolean): Instance | undefined {
    const key = lc(label)
    let inst = this.#instances.get(key)
    if (inst === undefined && create) {
      if (this.#instances.size >= MAX_INSTANCES) return undefined
      inst = { label, refreshStep: 0, askedAt: 0 }
      this.#instances.set(key, inst)
    }
    return inst
  }

  #drop (label: string): void {
    const inst = this.#instances.get(lc(label))
    this.#instances.delete(lc(label))
    if (inst?.srv !== undefined) {
      const target = lc(inst.srv.target)
      if (![...this.#instances.values()].some(i => i.srv !== undefined && lc(i.srv.target) === target)) this.#hosts.delete(target)
    }
    this.table.remove(inst?.label ?? label, 'mdns')
  }

  /** Bring the table in line with the cache for one instance; ask for what is missing. */
  #reconcile (label: string, now: number): void {
    const inst = this.#instances.get(lc(label))
    if (inst === undefined) return
    const recs = this.#recordsOf(inst)
    if (recs === undefined) {
      this.table.remove(inst.label, 'mdns')
      if (now - inst.askedAt > 1000) {
        inst.askedAt = now
        this.#queryInstance(inst)
      }
      return
    }
    const host = this.#hosts.get(lc((inst.srv as SrvRec).target)) as HostRec
    const txt = inst.txt as TxtRec
    const expiresIn = Math.min(...recs.map(r => r.receivedAt + r.ttl * 1000)) - now
    if (expiresIn <= 0) { this.#drop(inst.label); return }
    if (badNodeName(inst.label) !== undefined) return
    const used = Math.max(...recs.map(r => (now - r.receivedAt) / (r.ttl * 1000)))
    inst.refreshStep = REFRESH_POINTS.findIndex(p => p > used)
    if (inst.refreshStep < 0) inst.refreshStep = REFRESH_POINTS.length
    this.table.upsert({
      name: inst.label, id: txt.id, address: host.address, port: (inst.srv as SrvRec).port, version: txt.version, caps: txt.caps
    }, { source: 'mdns', ttl: expiresIn / 1000 })
  }

  #queryInstance (inst: Instance, questions: Question[] = [], known: DnsRecord[] = []): void {
    const qs = this.#instanceQuestions(inst, Date.now(), known)
    void this.#send({ type: 'query', questions: [...questions, ...qs], answers: known })
  }

  #instanceQuestions (inst: Instance, now: number, known: DnsRecord[]): Question[] {
    const fqdn = `${inst.label}.${SERVICE_TYPE}`
    const qs: Question[] = [{ name: fqdn, type: 'SRV' }, { name: fqdn, type: 'TXT' }]
    if (inst.srv !== undefined) {
      for (const link of this.#links) qs.push({ name: inst.srv.target, type: link.family === 6 ? 'AAAA' : 'A' })
      const left = inst.srv.ttl - (now - inst.srv.receivedAt) / 1000
      if (left > 0) known.push({ name: fqdn, type: 'SRV', ttl: Math.floor(left), data: { priority: 0, weight: 0, port: inst.srv.port, target: inst.srv.target } })
      const host = this.#hosts.get(lc(inst.srv.target))
      if (host !== undefined) {
        const hl = host.ttl - (now - host.receivedAt) / 1000
        if (hl > 0) known.push({ name: inst.srv.target, type: host.family === 6 ? 'AAAA' : 'A', ttl: Math.floor(hl), data: host.address })
      }
    }
    return qs
  }

  /** Every tick: expire what ran out, and re-query at 80/85/90/95% of TTL. */
  #maintain (): void {
    if (this.#state !== 'running') return
    const now = Date.now()
    for (const [fp, list] of this.#sent) {
      while (list.length > 0 && now - (list[0] as number) > OWN_PACKET_WINDOW_MS) list.shift()
      if (list.length === 0) this.#sent.delete(fp)
    }
    const questions: Question[] = []
    const known: DnsRecord[] = []
    for (const inst of [...this.#instances.values()]) {
      const recs = this.#recordsOf(inst)
      if (recs === undefined) {
        // Half-known instances (PTR without SRV, say) that never completed: forget them.
        if (inst.askedAt > 0 && now - inst.askedAt > 10_000) this.#instances.delete(lc(inst.label))
        continue
      }
      const used = Math.max(...recs.map(r => (now - r.receivedAt) / (r.ttl * 1000)))
      if (used >= 1) { this.#drop(inst.label); continue }
      const point = REFRESH_POINTS[inst.refreshStep]
      if (point !== undefined && used >= point) {
        // Skip the points already passed, so one late tick sends one query, not four.
        while (inst.refreshStep < REFRESH_POINTS.length && used >= (REFRESH_POINTS[inst.refreshStep] as number)) inst.refreshStep++
        if (questions.length < 60) questions.push(...this.#instanceQuestions(inst, now, known))
      }
    }
    this.table.expire(now)
    if (questions.length > 0) void this.#send({ type: 'query', questions, answers: known })
  }

  // ---- receiving ----------------------------------------------------------------

  #onPacket (packet: Record<string, unknown>, rinfo: RemoteInfo): void {
    if (this.#state !== 'running') return
    // Every instance bound to the wildcard hears every link; keep only our link's packets.
    if (this.#iface === undefined || !onLink(this.#iface, rinfo.address)) return
    if (this.#isOwn(packet, rinfo)) return
    if (packet.type === 'query') {
      this.#noteForeignQuery(packet)
      this.#onQuery(packet, rinfo)
    } else if (packet.type === 'response') this.#onResponse(packet, rinfo)
  }
}

/** Create mDNS discovery on one interface (IPv4, IPv6 or both); call start(), then advertise() and/or browse(). */
export function createDiscovery (init: DiscoveryInit): Discovery {
  return new MdnsDiscovery(init)
}

/**
 * The address to name in a conflict warning: the one the other host advertises for our
 * host name, of our own family first. An IPv6 packet's source is usually its link-local
 * fe80:: address, which tells an operator less than the address the host serves on.
 */
function claimantOf (records: DnsRecord[], own: OwnRecords, source: string): string {
  const type = own.addresses[0]?.type
  const theirs = records.filter(r => (r.type === 'A' || r.type === 'AAAA') && typeof r.data === 'string' && lc(r.name) === lc(own.host) &&
    !own.addresses.some(o => o.type === r.type && o.data === r.data))
  const pick = theirs.find(r => r.type === type) ?? theirs[0]
  return typeof pick?.data === 'string' ? pick.data : source
}

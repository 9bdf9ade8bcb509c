import { EventEmitter } from 'node:events'
import { readFileSync } from 'node:fs'
import { EvalMeshError, asRecord, decodeValue, encodeValue } from '@evalmesh/protocol'
import type { ConnectionOptions, Msg, NatsConnection, Subscription } from 'nats'
import { NatsStream, type StreamDrop } from './stream.js'

/**
 * nats.js, loaded by the first connect: it takes about 50 ms to load, which every `evalmesh`
 * command and client would otherwise pay without ever using NATS.
 */
let nats: typeof import('nats') | undefined
function natsLoaded (): typeof import('nats') {
  if (nats === undefined) throw new Error('nats.js is loaded by NatsCarrier.connect, which made this carrier')
  return nats
}

/** How a node or a client joins a NATS backbone (`serve --nats`, `Client({ nats })`). */
export interface NatsConfig {
  /** nats://host:port URLs of the servers of one cluster; the client fails over among them. */
  servers: string[]
  /** A NATS credentials file (JWT and NKey seed) for the account, when the servers require one. */
  credsFile?: string
  /** Which mesh's subjects to use (default "default"): meshes sharing a backbone stay apart. */
  mesh?: string
}

/** The subjects of one mesh (PROTOCOL.md §9.1). */
export interface MeshSubjects {
  /** Open a stream to the node with this id. */
  openId: (id: string) => string
  /** Open a stream to the node with this name. */
  openName: (name: string) => string
  /** Broadcast queries and releases of every offer but one. */
  broadcast: string
  /** Releases of one node's offer. */
  release: (id: string) => string
  /** Presence announcements. */
  presence: string
}

const MESH_NAME = /^[A-Za-z0-9_-]{1,64}$/
/** A literal subject: tokens of safe characters, no wildcards. */
const LITERAL_SUBJECT = /^[A-Za-z0-9_$-]+(\.[A-Za-z0-9_$-]+)*$/
/** The open request and its reply are small CBOR maps. */
const OPEN_LIMITS = { maxFrameBytes: 1024, maxDepth: 2, maxStringBytes: 256, maxItems: 16 }

export function meshSubjects (mesh: string): MeshSubjects {
  if (!MESH_NAME.test(mesh)) throw new EvalMeshError('BAD_MESSAGE', `bad NATS mesh name "${mesh}": use 1-64 letters, digits, _ or -`)
  const base = `evalmesh.${mesh}`
  return {
    openId: id => `${base}.open.id.${id}`,
    openName: name => `${base}.open.name.${name}`,
    broadcast: `${base}.bcast`,
    release: id => `${base}.bcast.${id}`,
    presence: `${base}.presence`
  }
}

/** Whether a reply inbox a peer gave may be used: literal, and not one of the mesh's own subjects. */
export function isUsableInbox (subject: unknown): subject is string {
  return typeof subject === 'string' && subject.length <= 200 && LITERAL_SUBJECT.test(subject) && !subject.startsWith('evalmesh.')
}

/** Parse `nats://a:4222,nats://b:4222` (or bare host:port) into server URLs. */
export function parseServers (text: string): string[] {
  const servers = text.split(',').map(s => s.trim()).filter(s => s !== '')
  if (servers.length === 0) throw new EvalMeshError('BAD_MESSAGE', '--nats needs at least one server URL, e.g. nats://127.0.0.1:4222')
  return servers
}

export interface CarrierEvents {
  /** A message from the backbone that was dropped, and why (for the node's log). */
  onDrop?: (drop: StreamDrop) => void
  /** The NATS connection's state changed: disconnect, reconnect (with the server), error. */
  onStatus?: (status: { type: string, data: string }) => void
}

/**
 * One connection to a NATS cluster, and the evalmesh subjects of one mesh on it: opening
 * and accepting virtual streams, publishing and answering broadcast datagrams. It carries
 * the protocol, it does not take part in it: everything it moves is signed or tagged end
 * to end by the nodes and clients themselves.
 */
export class NatsCarrier extends EventEmitter {
  readonly nc: NatsConnection
  readonly mesh: string
  readonly subjects: MeshSubjects
  readonly #events: CarrierEvents
  #closed = false

  private constructor (nc: NatsConnection, mesh: string, events: CarrierEvents) {
    super()
    this.nc = nc
    this.mesh = mesh
    this.subjects = meshSubjects(mesh)
    this.#events = events
    void this.#watch()
  }

  /**
   * Connect to the cluster. The connection follows the cluster's servers, reconnects
   * without end (every 250 ms) while any is reachable, and re-subscribes on its own.
   */
  static async connect (config: NatsConfig, events: CarrierEvents = {}, name = 'evalmesh'): Promise<NatsCarrier> {
    const mesh = config.mesh ?? 'default'
    meshSubjects(mesh)
    const lib = nats ??= await import('nats')
    const opts: ConnectionOptions = {
      servers: config.servers, name, maxReconnectAttempts: -1, reconnectTimeWait: 250, reconnectJitter: 100,
      pingInterval: 10_000, maxPingOut: 2, timeout: 5000, waitOnFirstConnect: false
    }
    if (config.credsFile !== undefined) opts.authenticator = lib.credsAuthenticator(readFileSync(config.credsFile))
    let nc: NatsConnection
    try {
      nc = await lib.connect(opts)
    } catch (err) {
      throw new EvalMeshError('CONNECT_FAILED', `cannot connect to NATS at ${config.servers.join(', ')}: ${(err as Error).message}`)
    }
    return new NatsCarrier(nc, mesh, events)
  }

  /** The largest message the server takes (its max_payload). */
  get maxPayload (): number { return this.nc.info?.max_payload ?? 1024 * 1024 }

  get closed (): boolean { return this.#closed }

  /** Which server the connection is on now ("host:port"), for describe and logs. */
  get server (): string { return this.nc.getServer() }

  drop (drop: StreamDrop): void { this.#events.onDrop?.(drop) }

  /**
   * Accept streams for the node `who` (PROTOCOL.md §9.3): answer opens on its id and its
   * name with a fresh inbox, and hand each new stream to `onStream`, which runs the
   * handshake over it as over an accepted socket.
   */
  serveStreams (who: { id: string, name: string }, onStream: (stream: NatsStream) => void): Subscription[] {
    const onOpen = (msg: Msg): void => {
      let peerInbox: string
      try {
        const m = asRecord(decodeValue(msg.data, OPEN_LIMITS), 'stream open')
        if (m.v !== 1 || !isUsableInbox(m.inbox)) throw new Error('it needs v: 1 and a literal inbox subject outside evalmesh.*')
        if (msg.reply === undefined || msg.reply === '') throw new Error('it has no reply subject')
        peerInbox = m.inbox
      } catch (err) {
        this.drop({ subject: msg.subject, reason: 'malformed', detail: `bad stream open: ${(err as Error).message}` })
        return
      }
      const stream = this.#stream(natsLoaded().createInbox(), `a client via NATS (${peerInbox})`)
      stream.connectTo(peerInbox)
      msg.respond(encodeValue({ v: 1, inbox: stream.inbox, id: who.id, name: who.name }))
      onStream(stream)
    }
    return [this.subjects.openId(who.id), this.subjects.openName(who.name)].map(subject =>
      this.nc.subscribe(subject, { callback: (err, msg) => { if (err === null) onOpen(msg) } }))
  }

  /**
   * Open a stream to a node, by id when it is known, else by name. CONNECT_FAILED when
   * no node on the backbone answers to it in time.
   */
  async openStream (target: { id?: string, name: string }, timeoutMs: number): Promise<NatsStream> {
    const label = `node ${target.name} via NATS`
    const subject = target.id !== undefined && target.id !== '' ? this.subjects.openId(target.id) : this.subjects.openName(target.name)
    const stream = this.#stream(natsLoaded().createInbox(), label)
    let reply: Msg
    try {
      reply = await this.nc.request(subject, encodeValue({ v: 1, inbox: stream.inbox }), { timeout: timeoutMs })
    } catch (err) {
      stream.destroy()
      const code = (err as { code?: string }).code
      const why = code === '503' ? 'no node on the NATS backbone answers to it' : code === 'TIMEOUT' ? `no answer within ${timeoutMs} ms` : (err as Error).message
      throw new EvalMeshError('CONNECT_FAILED', `cannot open a stream to ${label} (${subject}): ${why}`, { node: target.name })
    }
    try {
      const m = asRecord(decodeValue(reply.data, OPEN_LIMITS), 'stream open reply')
      if (m.v !== 1 || !isUsableInbox(m.inbox)) throw new Error('it needs v: 1 and a literal inbox subject')
      stream.connectTo(m.inbox)
    } catch (err) {
      stream.destroy()
      throw new EvalMeshError('CONNECT_FAILED', `cannot open a stream to ${label}: a bad answer to the open (${(err as Error).message})`, { node: target.name })
    }
    return stream
  }

  /** Subscribe `subject`; `onMessage` gets each message's bytes and its reply subject, if any. */
  listen (subject: string, onMessage: (data: Buffer, reply: string | undefined) => void): Subscription {
    return this.nc.subscribe(subject, {
      callback: (err, msg) => {
        if (err !== null) return
        const reply = msg.reply !== undefined && msg.reply !== '' ? msg.reply : undefined
        onMessage(Buffer.from(msg.data.buffer, msg.data.byteOffset, msg.data.byteLength), reply)
      }
    })
  }

  /** A fresh inbox of this connection, subscribed; `onMessage` gets each message's bytes. */
  inbox (onMessage: (data: Buffer) => void): string {
    const inbox = natsLoaded().createInbox()
    this.listen(inbox, data => onMessage(data))
    return inbox
  }

  publish (subject: string, data: Uint8Array, reply?: string): void {
    if (this.#closed) return
    try {
      this.nc.publish(subject, data, reply === undefined ? undefined : { reply })
    } catch { /* closed or draining: the message is lost, as on a lossy network */ }
  }

  async close (): Promise<void> {
    if (this.#closed) return
    this.#closed = true
    try { await this.nc.drain() } catch { await this.nc.close().catch(() => {}) }
  }

  #stream (inbox: string, label: string): NatsStream {
    return new NatsStream({ nc: this.nc, inbox, maxPayload: this.maxPayload, label, onDrop: d => this.drop(d) })
  }

  async #watch (): Promise<void> {
    for await (const s of this.nc.status()) {
      this.#events.onStatus?.({ type: String(s.type), data: typeof s.data === 'string' ? s.data : JSON.stringify(s.data) })
    }
  }
}

import { existsSync, readFileSync } from 'node:fs'
import { isIP } from 'node:net'
import { join } from 'node:path'
import { Client, TxnBook, formatHost, type BroadcastConfig, type Endpoint, type PeerLookup } from '@evalmesh/client'
import { meshSubjects, parseServers, type NatsConfig } from '@evalmesh/nats'
import { TLS_CAP, readSeedsFile, type SeedPeer } from '@evalmesh/discovery'
import { BROADCAST_PORT, EvalMeshError } from '@evalmesh/protocol'
import { readLocalNodes, readNodeLocator, type NodeLocator } from '@evalmesh/server'
import { defaultStateDir } from '@evalmesh/trust'
import { UsageError, str, type Parsed } from './args.js'

/*
 * One rule for "the local node" and for --host, used by every command, the REPL and the
 * status window (README "Which node a command talks to"):
 *
 *   1. --host H, when given (never empty);
 *   2. the node started from the state dir: of those alive, the most recently started
 *      (<state-dir>/nodes/, else <state-dir>/node.json);
 *   3. $EVALMESH_HOST, else "host" in <state-dir>/client.json;
 *   4. otherwise an error that says how to name one.
 *
 * A bare address (127.0.0.1, localhost, ::1) means the port the node there advertises (a
 * node started from this state dir, or the peers file); with none, it is an error asking
 * for host:port. Ports are never guessed.
 */

/** The environment variable naming the default node when none runs from the state dir. */
export const HOST_ENV = 'EVALMESH_HOST'
/** The state dir's client settings: `{"host": "host:port"}`. */
export const CLIENT_CONFIG = 'client.json'

/** The state dir a command uses: --state-dir, else $EVALMESH_STATE_DIR, else ~/.evalmesh. */
export function stateDirOf (p: Parsed): string {
  return str(p, 'state-dir') ?? defaultStateDir()
}

/** The live nodes started from this state dir, the most recently started first. */
export function localNodes (stateDir: string): NodeLocator[] {
  const nodes = readLocalNodes(stateDir)
  // A node from before nodes/ existed only wrote node.json.
  const first = readNodeLocator(stateDir)
  if (first !== undefined && !nodes.some(n => n.pid === first.pid && n.port === first.port)) nodes.push(first)
  return nodes
}

/** The default host from the environment or the state dir's client.json, if one is set. */
function configuredHost (stateDir: string): { host: string, from: string } | undefined {
  const env = process.env[HOST_ENV]
  if (env !== undefined && env.trim() !== '') return { host: env.trim(), from: `$${HOST_ENV}` }
  const file = join(stateDir, CLIENT_CONFIG)
  if (!existsSync(file)) return undefined
  let config: unknown
  try { config = JSON.parse(readFileSync(file, 'utf8')) } catch (err) {
    throw new EvalMeshError('UNKNOWN_HOST', `${file} is not JSON (${(err as Error).message}); it should be {"host": "host:port"}`)
  }
  const host = (config as { host?: unknown } | null)?.host
  if (host === undefined) return undefined
  if (typeof host !== 'string' || host.trim() === '') throw new EvalMeshError('UNKNOWN_HOST', `${file}: "host" must be a non-empty string such as "127.0.0.1:6680"`)
  return { host: host.trim(), from: file }
}

/** The local node as host:port (see the rule above), or an error that names the fix. */
export function localNodeOf (p: Parsed): string {
  const stateDir = stateDirOf(p)
  const n = localNodes(stateDir)[0]
  if (n !== undefined) return formatHost(connectable(n.host), n.port)
  const configured = configuredHost(stateDir)
  if (configured !== undefined) return configured.host
  throw new EvalMeshError('UNKNOWN_HOST', `no local node: none is running with state dir ${stateDir} (start one with \`evalmesh serve\`), and neither $${HOST_ENV} nor ${join(stateDir, CLIENT_CONFIG)} names a default; give --host host:port`)
}

/** --host as given (an empty one is a mistake, never "broadcast"), else undefined. */
export function givenHost (p: Parsed): string | undefined {
  const h = str(p, 'host')
  if (h !== undefined && h.trim() === '') throw new UsageError('--host is empty: give host:port or a peer name (leave --host out to use the local node, or to broadcast where a command does)')
  return h
}

/** The node a single-node command talks to: --host, else the local node. */
export function targetOf (p: Parsed): string {
  return givenHost(p) ?? localNodeOf(p)
}

/** Where a node listening on `host` is reached from this machine (a wildcard listens on loopback too). */
function connectable (host: string): string {
  return host === '0.0.0.0' ? '127.0.0.1' : host === '::' ? '::1' : host
}

const LOOPBACK_V4 = /^127\./

function sameAddress (a: string, b: string): boolean {
  const norm = (x: string): string => x === 'localhost' ? '127.0.0.1' : x.toLowerCase()
  const x = norm(a); const y = norm(b)
  if (x === y) return true
  // A node listening on the wildcard answers on loopback.
  if ((x === '0.0.0.0' && LOOPBACK_V4.test(y)) || (y === '0.0.0.0' && LOOPBACK_V4.test(x))) return true
  return (x === '::' && y === '::1') || (y === '::' && x === '::1')
}

function seedsOf (stateDir: string): SeedPeer[] {
  const peersFile = join(stateDir, 'peers')
  return existsSync(peersFile) ? readSeedsFile(peersFile) : []
}

/**
 * Names and bare addresses: a peer name from `<state-dir>/peers`; a bare address through
 * the port of the node started from this state dir there, else the one peers-file entry
 * at that address. Several different ports at one address are not guessed between.
 */
function lookupFor (stateDir: string, seeds: SeedPeer[]): PeerLookup {
  return (name) => {
    const s = seeds.find(x => x.name === name)
    if (s !== undefined) {
      const tls = s.caps?.includes(TLS_CAP) === true ? { tls: true } : {}
      return s.id !== undefined && s.id !== '' ? { address: s.address, port: s.port, id: s.id, ...tls } : { address: s.address, port: s.port, ...tls }
    }
    if (name !== 'localhost' && isIP(name) === 0) return undefined
    const address = name === 'localhost' ? '127.0.0.1' : name
    const local = localNodes(stateDir).find(n => sameAddress(n.host, address))
    if (local !== undefined) return { address, port: local.port, id: local.id, ...(local.tls === true ? { tls: true } : {}) }
    const ports = new Set(seeds.filter(x => sameAddress(x.address, address)).map(x => x.port))
    if (ports.size === 1) return { address, port: [...ports][0]! }
    return undefined
  }
}

/**
 * Where this user's broadcasts go: the local nodes and the peers file by unicast, and on a
 * LAN (the local node's, or --lan ADDR / $EVALMESH_LAN) the multicast group too. A
 * peers-file entry on loopback gets its own port only: its node answers broadcast queries
 * there, and the default port at that address is another user's node on a shared machine.
 */
export function broadcastConfigFor (p: Parsed): BroadcastConfig {
  const stateDir = stateDirOf(p)
  const seeds = seedsOf(stateDir)
  const locals = localNodes(stateDir)
  const targets: Array<{ address: string, port: number }> = []
  const add = (t: { address: string, port: number }): void => { if (!targets.some(x => x.address === t.address && x.port === t.port)) targets.push(t) }
  const config: BroadcastConfig = { targets }
  const lan = str(p, 'lan') ?? process.env.EVALMESH_LAN ?? locals.find(n => n.lan !== null)?.lan ?? undefined
  if (lan !== undefined && lan !== '') config.interface = lan
  for (const n of locals) add(n.udp)
  for (const s of seeds) {
    add({ address: s.address, port: s.port })
    // A LAN node takes broadcast queries on the broadcast port, whatever its TCP port.
    if (s.port !== BROADCAST_PORT && !isLoopback(s.address)) add({ address: s.address, port: BROADCAST_PORT })
  }
  return config
}

function isLoopback (address: string): boolean {
  return address === 'localhost' || address === '::1' || LOOPBACK_V4.test(address)
}

/** Whether a broadcast from this user reaches anything: a local node, the peers file or a LAN. */
export function canBroadcast (config: BroadcastConfig): boolean {
  return (config.targets?.length ?? 0) > 0 || config.interface !== undefined
}

/** The options that put a node or a client on a NATS backbone (PROTOCOL.md §9). */
export const natsOptions = { nats: { type: 'string' }, 'nats-creds': { type: 'string' }, 'nats-mesh': { type: 'string' } } as const

/** --nats URL[,URL...] [--nats-creds FILE] [--nats-mesh NAME], or undefined without --nats. */
export function natsFrom (p: Parsed): NatsConfig | undefined {
  const servers = str(p, 'nats')
  const creds = str(p, 'nats-creds')
  const mesh = str(p, 'nats-mesh')
  if (servers === undefined) {
    if (creds !== undefined || mesh !== undefined) throw new UsageError('--nats-creds and --nats-mesh go with --nats URL')
    return undefined
  }
  let config: NatsConfig
  try { config = { servers: parseServers(servers) } } catch (err) { throw new UsageError((err as Error).message) }
  if (creds !== undefined) {
    if (!existsSync(creds)) throw new UsageError(`--nats-creds ${creds}: no such file`)
    config.credsFile = creds
  }
  if (mesh !== undefined) {
    try { meshSubjects(mesh) } catch (err) { throw new UsageError(`--nats-mesh: ${(err as Error).message}`) }
    config.mesh = mesh
  }
  return config
}

/** The book of this user's transactions (sequence counter and where each went). */
export function bookOf (p: Parsed): TxnBook {
  return new TxnBook(stateDirOf(p))
}

/** A client with this user's key, resolving names and bare addresses by the rule above. */
export function clientFor (p: Parsed): Client {
  const stateDir = stateDirOf(p)
  const nats = natsFrom(p)
  return new Client({
    stateDir,
    broadcast: broadcastConfigFor(p),
    lookup: lookupFor(stateDir, seedsOf(stateDir)),
    // A name the peers file does not hold may be one the local nodes discovered on the LAN.
    peerTables: () => localNodes(stateDir).map(n => {
      const e: Endpoint = { host: connectable(n.host), port: n.port, id: n.id, label: `the local node ${n.name}` }
      if (n.tls === true) e.tls = true
      return e
    }),
    tls: p.values.tls === true ? true : 'peers',
    book: bookOf(p),
    ...(nats === undefined ? {} : { nats })
  })
}

import { isIP } from 'node:net'
import { DEFAULT_PORT, EvalMeshError, formatHost } from '@evalmesh/protocol'

export { formatHost }

export interface Endpoint {
  host: string
  port: number
  /** The node id the server must prove, when the peer table knows it. */
  id?: string
  /** The name the caller used, for messages. */
  label: string
  /** The node serves TLS (its peer entry says `tls`: PROTOCOL.md §2.5, §5.5). */
  tls?: boolean
  /**
   * Reach the node through the client's NATS backbone (PROTOCOL.md §9.3): by `id` when
   * known, else by the name in `host`; `port` is then 0.
   */
  via?: 'nats'
}

/**
 * A node name resolver: a peer table (static seeds, later mDNS). It is also asked about a
 * bare address (`127.0.0.1`, `localhost`, `::1`), to say which port the node there
 * advertises; undefined when it knows none.
 */
export type PeerLookup = (name: string) => { address: string, port: number, id?: string, tls?: boolean } | undefined

/**
 * Turn what a user typed into an endpoint: `host:port`, `[v6]:port`, a node name known to
 * the peer table, or a bare address (`localhost`, an IP address) whose port the peer
 * table knows. Ports are never guessed: a bare address nobody advertises a port for is
 * an error that says to give one.
 */
export function resolveHost (spec: string, lookup?: PeerLookup): Endpoint {
  const text = spec.trim()
  if (text === '') throw new EvalMeshError('UNKNOWN_HOST', 'empty host: give host:port or a peer name')
  const v6 = /^\[([0-9a-fA-F:.]+)\](?::(\d+))?$/.exec(text)
  if (v6 !== null && v6[2] !== undefined) return { host: v6[1]!, port: port(v6[2], text), label: text }
  const hp = /^([^:\s]+):(\d+)$/.exec(text)
  if (hp !== null) return { host: hp[1]!, port: port(hp[2], text), label: text }
  const bare = v6 !== null ? v6[1]! : text
  const peer = lookup?.(bare)
  if (peer !== undefined) {
    const e: Endpoint = { host: peer.address, port: peer.port, label: text }
    if (peer.id !== undefined) e.id = peer.id
    if (peer.tls === true) e.tls = true
    return e
  }
  if (bare === 'localhost' || isIP(bare) !== 0) {
    const example = formatHost(bare, DEFAULT_PORT)
    throw new EvalMeshError('UNKNOWN_HOST', `"${text}" has no port, and no node known here advertises one at that address: give host:port (e.g. ${example})`, { host: text })
  }
  throw new EvalMeshError('UNKNOWN_HOST', `"${text}" is neither host:port nor a known peer name (peers come from the peers file and discovery)`, { host: text })
}

function port (text: string, spec: string): number {
  const n = Number(text)
  if (!Number.isInteger(n) || n < 1 || n > 65535) throw new EvalMeshError('UNKNOWN_HOST', `bad port in "${spec}"`)
  return n
}

import { DEFAULT_PORT, EvalMeshError } from '@evalmesh/protocol'

export interface Endpoint {
  host: string
  port: number
  /** The node id the server must prove, when the peer table knows it. */
  id?: string
  /** The name the caller used, for messages. */
  label: string
  /** The node serves TLS (its peer entry says `tls`: PROTOCOL.md §2.5, §5.5). */
  tls?: boolean
}

/** A node name resolver: a peer table (static seeds, later mDNS). */
export type PeerLookup = (name: string) => { address: string, port: number, id?: string, tls?: boolean } | undefined

/**
 * Turn what a user typed into an endpoint: `host:port`, `[v6]:port`, `localhost`,
 * an IP address (default port), or a node name known to the peer table.
 */
export function resolveHost (spec: string, lookup?: PeerLookup): Endpoint {
  const text = spec.trim()
  if (text === '') throw new EvalMeshError('UNKNOWN_HOST', 'empty host')
  const v6 = /^\[([0-9a-fA-F:.]+)\](?::(\d+))?$/.exec(text)
  if (v6 !== null) return { host: v6[1]!, port: port(v6[2], text), label: text }
  const hp = /^([^:\s]+):(\d+)$/.exec(text)
  if (hp !== null) return { host: hp[1]!, port: port(hp[2], text), label: text }
  const peer = lookup?.(text)
  if (peer !== undefined) {
    const e: Endpoint = { host: peer.address, port: peer.port, label: text }
    if (peer.id !== undefined) e.id = peer.id
    if (peer.tls === true) e.tls = true
    return e
  }
  if (text === 'localhost' || /^\d{1,3}(\.\d{1,3}){3}$/.test(text) || /^[0-9a-fA-F:]+:[0-9a-fA-F:]*$/.test(text)) {
    return { host: text === 'localhost' ? '127.0.0.1' : text, port: DEFAULT_PORT, label: text }
  }
  throw new EvalMeshError('UNKNOWN_HOST', `"${text}" is neither host:port nor a known peer name (peers come from the peers file and discovery)`, { host: text })
}

/** The inverse of resolveHost for an address: `host:port`, or `[v6]:port`. */
export function formatHost (address: string, port: number): string {
  return address.includes(':') ? `[${address}]:${port}` : `${address}:${port}`
}

function port (text: string | undefined, spec: string): number {
  if (text === undefined) return DEFAULT_PORT
  const n = Number(text)
  if (!Number.isInteger(n) || n < 1 || n > 65535) throw new EvalMeshError('UNKNOWN_HOST', `bad port in "${spec}"`)
  return n
}

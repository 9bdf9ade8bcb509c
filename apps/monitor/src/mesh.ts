import { formatHost, type Client } from '@evalmesh/client'
import type { DescribeReply, PeerEntry } from '@evalmesh/protocol'
import { fit, printable } from './format.js'

/** A node the mesh view knows of, and what it said when last asked. */
export interface MeshNode {
  name: string
  /** host:port ([v6]:port), the key of the board. */
  host: string
  /** Where the node was learned: the peers file, discovery (mdns), or the node first watched. */
  source: string
  /** Answered the last describe; undefined until asked. */
  up: boolean | undefined
  error?: string
  describe?: DescribeReply
  checkedAt?: number
}

/** Where a node was learned, before it was asked. */
export interface NodeSource { name: string, host: string, source: string }

/** The most nodes one board asks at once: a big mesh costs the window a bounded burst. */
const MAX_NODES = 64

/**
 * The mesh view's model: every node known from the peers file, discovery (the watched
 * node's peer table) or the window's start, each asked `describe` every few seconds, so
 * the nodes pane can show its load, lists, policy and whether it is up.
 */
export class NodeBoard {
  readonly #nodes = new Map<string, MeshNode>()
  readonly #client: Client
  readonly #timeoutMs: number

  constructor (client: Client, timeoutMs: number) {
    this.#client = client
    this.#timeoutMs = timeoutMs
  }

  /** The nodes, by name. */
  get nodes (): MeshNode[] {
    return [...this.#nodes.values()].sort((a, b) => a.name.localeCompare(b.name) || a.host.localeCompare(b.host))
  }

  /** Learn the nodes in `sources` (new ones are added; known ones keep their state), then ask each. */
  async refresh (sources: NodeSource[]): Promise<void> {
    for (const s of sources) {
      if (this.#nodes.size >= MAX_NODES && !this.#nodes.has(s.host)) break
      const known = this.#nodes.get(s.host)
      if (known === undefined) this.#nodes.set(s.host, { ...s, up: undefined })
      else if (known.name === s.host) known.name = s.name
    }
    await Promise.all([...this.#nodes.values()].map(async n => await this.#ask(n)))
  }

  async #ask (n: MeshNode): Promise<void> {
    try {
      const d = await this.#client.request(n.host, { kind: 'describe' }, this.#timeoutMs)
      n.describe = d
      n.up = true
      n.name = d.name
      delete n.error
    } catch (err) {
      n.up = false
      n.error = (err as Error).message
    }
    n.checkedAt = Date.now()
  }
}

/** A peer table's entries as node sources (the node's own view of the mesh). */
export function peerSources (peers: PeerEntry[]): NodeSource[] {
  return peers.map(p => ({ name: String(p.name), host: formatHost(String(p.address), Number(p.port)), source: String(p.source) }))
}

/** One line per node for a pane `width` wide: up or down, name, address, lists, load and policy. */
export function nodeLines (nodes: MeshNode[], width: number, watched: string): string[] {
  if (nodes.length === 0) return ['(no nodes known yet)']
  const nameW = Math.min(16, Math.max(6, ...nodes.map(n => n.name.length)))
  const hostW = Math.min(22, Math.max(9, ...nodes.map(n => n.host.length)))
  return nodes.map(n => {
    const mark = n.host === watched ? '>' : ' '
    const state = n.up === undefined ? 'asking' : n.up ? 'up' : 'down'
    let rest: string
    if (n.up === true && n.describe !== undefined) {
      const d = n.describe
      const gags = d.policy.gags.length === 0 ? '-' : d.policy.gags.join(',')
      rest = `run ${d.lists.running} queue ${d.lists.input} done ${d.lists.done}` +
        (d.restarts > 0 ? ` restarts ${d.restarts}` : '') +
        (d.draining !== null ? ' draining' : '') +
        `  hosts ${d.policy.hosts.join(',')} gags ${gags}`
    } else {
      rest = n.error === undefined ? '' : n.error
    }
    return `${mark}${fit(n.name, nameW)} ${fit(n.host, hostW)} ${fit(state, 6)} ${printable(rest, Math.max(0, width - nameW - hostW - 10))}`.slice(0, Math.max(0, width))
  })
}

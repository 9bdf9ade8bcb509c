import { mkdirSync, readdirSync, readFileSync, rmSync } from 'node:fs'
import { join } from 'node:path'
import { writePrivateFile } from '@evalmesh/trust'

/** What a running node writes to `<stateDir>/node.json`, so that local clients find it. */
export interface NodeLocator {
  name: string
  id: string
  pid: number
  host: string
  port: number
  /** Where unicast broadcast queries reach this node. */
  udp: { address: string, port: number }
  lan: string | null
  startedAt: number
  /** The node serves TLS (PROTOCOL.md §2.5): its local clients connect with TLS too. */
  tls?: boolean
}

export const NODE_FILE = 'node.json'

/** The locator of the node running with this state dir, if one is (or was) there. */
export function readNodeLocator (stateDir: string): NodeLocator | undefined {
  try {
    const n = JSON.parse(readFileSync(join(stateDir, NODE_FILE), 'utf8')) as NodeLocator
    if (typeof n.port !== 'number' || typeof n.host !== 'string') return undefined
    if (!alive(n.pid)) return undefined
    return n
  } catch {
    return undefined
  }
}

/**
 * Announce a node started from `stateDir`: its own locator under nodes/, and node.json
 * unless another live node holds it, which is then returned. The first live node of a
 * state dir stays its node.json node (as it keeps the control port and the durable
 * store): a second node started with the same dir must not redirect that user's clients,
 * nor leave them with no locator when it stops.
 */
export function claimLocator (stateDir: string, locator: NodeLocator): NodeLocator | undefined {
  writeLocalNode(stateDir, locator)
  const current = readNodeLocator(stateDir)
  if (current !== undefined && current.pid !== locator.pid) return current
  writePrivateFile(join(stateDir, NODE_FILE), JSON.stringify(locator, null, 2) + '\n')
  return undefined
}

/** Undo claimLocator: a stopping node is no client's local node any more. */
export function releaseLocator (stateDir: string, locator: NodeLocator): void {
  removeLocalNode(stateDir, locator.pid, locator.port)
  if (readNodeLocator(stateDir)?.pid === locator.pid) rmSync(join(stateDir, NODE_FILE), { force: true })
}

/**
 * Every node started from a state dir leaves its locator in `<stateDir>/nodes/<pid>-<port>.json`
 * while it runs (node.json names only the dir's first live node, which keeps the control
 * port and the durable store). Clients take the one most recently started that is still
 * alive as "the local node": the node a user has just started is the one they mean.
 */
export const NODES_DIR = 'nodes'

export function writeLocalNode (stateDir: string, locator: NodeLocator): void {
  const dir = join(stateDir, NODES_DIR)
  mkdirSync(dir, { recursive: true, mode: 0o700 })
  writePrivateFile(join(dir, `${locator.pid}-${locator.port}.json`), JSON.stringify(locator, null, 2) + '\n')
}

export function removeLocalNode (stateDir: string, pid: number, port: number): void {
  rmSync(join(stateDir, NODES_DIR, `${pid}-${port}.json`), { force: true })
}

/** The live nodes started from `stateDir`, the most recently started first. */
export function readLocalNodes (stateDir: string): NodeLocator[] {
  let names: string[]
  try { names = readdirSync(join(stateDir, NODES_DIR)) } catch { return [] }
  const nodes: NodeLocator[] = []
  for (const name of names.filter(n => /^\d+-\d+\.json$/.test(n)).slice(0, 1000)) {
    try {
      const n = JSON.parse(readFileSync(join(stateDir, NODES_DIR, name), 'utf8')) as NodeLocator
      if (typeof n.port !== 'number' || typeof n.host !== 'string' || typeof n.pid !== 'number') continue
      if (!alive(n.pid)) continue // left by a node that was killed: not a node any more
      nodes.push(n)
    } catch { /* half written or not ours: skip it */ }
  }
  return nodes.sort((a, b) => (b.startedAt ?? 0) - (a.startedAt ?? 0))
}

function alive (pid: number): boolean {
  try { process.kill(pid, 0); return true } catch (err) { return (err as NodeJS.ErrnoException).code !== 'ESRCH' }
}

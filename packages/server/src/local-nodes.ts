import { mkdirSync, readdirSync, readFileSync, rmSync } from 'node:fs'
import { join } from 'node:path'
import { writePrivateFile } from '@evalmesh/trust'
import type { NodeLocator } from './eval-server.js'

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

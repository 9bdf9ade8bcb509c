import { existsSync } from 'node:fs'
import { join } from 'node:path'
import { Client, type BroadcastConfig } from '@evalmesh/client'
import { readSeedsFile } from '@evalmesh/discovery'
import { BROADCAST_PORT } from '@evalmesh/protocol'
import { readNodeLocator } from '@evalmesh/server'
import { defaultStateDir } from '@evalmesh/trust'
import { str, type Parsed } from './args.js'

/** The state dir a command uses: --state-dir, else $EVALMESH_STATE_DIR, else ~/.evalmesh. */
export function stateDirOf (p: Parsed): string {
  return str(p, 'state-dir') ?? defaultStateDir()
}

/** The default target when no node runs with this state dir: the default port on loopback. */
export const LOCAL_NODE = '127.0.0.1:6680'

/** The node running with this state dir (from its node.json), else the default address. */
export function localNodeOf (p: Parsed): string {
  const n = readNodeLocator(stateDirOf(p))
  if (n === undefined) return LOCAL_NODE
  return n.host.includes(':') ? `[${n.host}]:${n.port}` : `${n.host}:${n.port}`
}

/**
 * A client with this user's key, resolving node names through `<state-dir>/peers`
 * (static seeds: `name host:port [id]` lines).
 */
export function clientFor (p: Parsed): Client {
  const stateDir = stateDirOf(p)
  const peersFile = join(stateDir, 'peers')
  const seeds = existsSync(peersFile) ? readSeedsFile(peersFile) : []
  // Broadcasts reach the local node and the seeds by unicast; on a LAN (the local node's,
  // or --lan ADDR / $EVALMESH_LAN) they are also multicast from that interface.
  const local = readNodeLocator(stateDir)
  const broadcast: BroadcastConfig = { targets: [] }
  const lan = str(p, 'lan') ?? process.env.EVALMESH_LAN ?? local?.lan ?? undefined
  if (lan !== undefined && lan !== '') broadcast.interface = lan
  if (local !== undefined) broadcast.targets!.push(local.udp)
  for (const s of seeds) {
    broadcast.targets!.push({ address: s.address, port: s.port })
    if (s.port !== BROADCAST_PORT) broadcast.targets!.push({ address: s.address, port: BROADCAST_PORT })
  }
  if (local === undefined && broadcast.interface === undefined && seeds.length === 0) {
    broadcast.targets!.push({ address: '127.0.0.1', port: BROADCAST_PORT })
  }
  const client = new Client({
    stateDir,
    broadcast,
    lookup: (name) => {
      const s = seeds.find(x => x.name === name)
      if (s === undefined) return undefined
      return s.id !== undefined && s.id !== '' ? { address: s.address, port: s.port, id: s.id } : { address: s.address, port: s.port }
    }
  })
  return client
}

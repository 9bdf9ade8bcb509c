import { existsSync } from 'node:fs'
import { join } from 'node:path'
import { Client, formatHost, type BroadcastConfig } from '@evalmesh/client'
import { TLS_CAP, readSeedsFile } from '@evalmesh/discovery'
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
  return formatHost(n.host, n.port)
}

/**
 * Where this user's broadcasts go: the local node and the peers file by unicast, and on a
 * LAN (the local node's, or --lan ADDR / $EVALMESH_LAN) the multicast group too.
 */
export function broadcastConfigFor (p: Parsed): BroadcastConfig {
  const stateDir = stateDirOf(p)
  const peersFile = join(stateDir, 'peers')
  const seeds = existsSync(peersFile) ? readSeedsFile(peersFile) : []
  const local = readNodeLocator(stateDir)
  const config: BroadcastConfig = { targets: [] }
  const lan = str(p, 'lan') ?? process.env.EVALMESH_LAN ?? local?.lan ?? undefined
  if (lan !== undefined && lan !== '') config.interface = lan
  if (local !== undefined) config.targets!.push(local.udp)
  for (const s of seeds) {
    config.targets!.push({ address: s.address, port: s.port })
    if (s.port !== BROADCAST_PORT) config.targets!.push({ address: s.address, port: BROADCAST_PORT })
  }
  if (local === undefined && config.interface === undefined && seeds.length === 0) {
    config.targets!.push({ address: '127.0.0.1', port: BROADCAST_PORT })
  }
  return config
}

/** A client with this user's key, resolving node names through `<state-dir>/peers`. */
export function clientFor (p: Parsed): Client {
  const stateDir = stateDirOf(p)
  const peersFile = join(stateDir, 'peers')
  const seeds = existsSync(peersFile) ? readSeedsFile(peersFile) : []
  return new Client({
    stateDir,
    broadcast: broadcastConfigFor(p),
    lookup: (name) => {
      const s = seeds.find(x => x.name === name)
      if (s === undefined) return undefined
      const tls = s.caps?.includes(TLS_CAP) === true ? { tls: true } : {}
      return s.id !== undefined && s.id !== '' ? { address: s.address, port: s.port, id: s.id, ...tls } : { address: s.address, port: s.port, ...tls }
    },
    tls: p.values.tls === true ? true : 'peers'
  })
}

import { existsSync } from 'node:fs'
import { join } from 'node:path'
import { Client } from '@evalmesh/client'
import { readSeedsFile } from '@evalmesh/discovery'
import { defaultStateDir } from '@evalmesh/trust'
import { str, type Parsed } from './args.js'

/** The state dir a command uses: --state-dir, else $EVALMESH_STATE_DIR, else ~/.evalmesh. */
export function stateDirOf (p: Parsed): string {
  return str(p, 'state-dir') ?? defaultStateDir()
}

/** The default target: the local node, on the default port. */
export const LOCAL_NODE = '127.0.0.1:6680'

/**
 * A client with this user's key, resolving node names through `<state-dir>/peers`
 * (static seeds: `name host:port [id]` lines).
 */
export function clientFor (p: Parsed): Client {
  const stateDir = stateDirOf(p)
  const peersFile = join(stateDir, 'peers')
  const seeds = existsSync(peersFile) ? readSeedsFile(peersFile) : []
  const client = new Client({
    stateDir,
    lookup: (name) => {
      const s = seeds.find(x => x.name === name)
      if (s === undefined) return undefined
      return s.id !== undefined && s.id !== '' ? { address: s.address, port: s.port, id: s.id } : { address: s.address, port: s.port }
    }
  })
  return client
}

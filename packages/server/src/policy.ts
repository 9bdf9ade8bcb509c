/**
 * The admission policy: EVALSERVER's HOSTS and GAGS, live. It is consulted on every
 * request, so a change applies to the next one.
 *
 * hosts: 'directed' (flirtatious: serve requests addressed to me), 'broadcast'
 *        (promiscuous: serve broadcasts), and peer names or ids (serve them in any mode).
 *        Default: both modes.
 * gags:  peer names or ids, 'broadcast' (no service for broadcasts) and 'self' (no service
 *        for requests from this node's own key). A gag always beats a hosts entry.
 */
export type RequestMode = 'directed' | 'broadcast'

export interface PolicyPeer { id: string, name: string, self: boolean }

export type Decision =
  | { admit: true, rule: string }
  | { admit: false, rule: string }

export interface PolicyState { hosts: string[], gags: string[] }

export const DEFAULT_HOSTS: readonly string[] = ['directed', 'broadcast']

export class AdmissionPolicy {
  #hosts: string[]
  #gags: string[]

  constructor (init: Partial<PolicyState> = {}) {
    this.#hosts = []
    this.setHosts(init.hosts ?? [])
    this.#gags = normalize(init.gags ?? [])
  }

  get state (): PolicyState { return { hosts: [...this.#hosts], gags: [...this.#gags] } }

  setHosts (hosts: string[]): void {
    // EVALSERVER: an empty HOSTS list means the default, both modes.
    this.#hosts = hosts.length === 0 ? [...DEFAULT_HOSTS] : normalize(hosts)
  }

  setGags (gags: string[]): void { this.#gags = normalize(gags) }
  gag (names: string[]): void { this.#gags = normalize([...this.#gags, ...names]) }
  ungag (names: string[]): void {
    const drop = new Set(names.map(n => n.trim().toLowerCase()))
    this.#gags = this.#gags.filter(g => !drop.has(g))
  }

  decide (peer: PolicyPeer, mode: RequestMode): Decision {
    const name = peer.name.toLowerCase()
    for (const gag of this.#gags) {
      if (gag === 'self' && peer.self) return { admit: false, rule: 'gag self: this node does not serve its own requests' }
      if (gag === 'broadcast' && mode === 'broadcast') return { admit: false, rule: 'gag broadcast: this node does not serve broadcasts' }
      if (gag === name || gag === peer.id) return { admit: false, rule: `gag ${gag}: this node does not serve ${peer.name}` }
    }
    for (const host of this.#hosts) {
      if (host === mode) return { admit: true, rule: `hosts ${host}` }
      if (host === name || host === peer.id) return { admit: true, rule: `hosts ${host}` }
    }
    const modes = this.#hosts.filter(h => h === 'directed' || h === 'broadcast')
    const what = mode === 'directed' ? 'directed requests' : 'broadcasts'
    return { admit: false, rule: `hosts [${this.#hosts.join(', ')}] do not include ${mode} or ${peer.name}: ${modes.length === 0 ? 'only the listed peers are served' : `no service for ${what}`}` }
  }
}

function normalize (list: readonly string[]): string[] {
  const out: string[] = []
  for (const raw of list) {
    const v = raw.trim().toLowerCase()
    if (v !== '' && !out.includes(v)) out.push(v)
  }
  return out
}

import {
  addTrustedKey, createMeshKey, fingerprint, importMeshKey, listMeshKeys, listTrustedKeys, loadIdentity,
  removeTrustedKey, retireMeshKeys, rotateMeshKey, trustLine, type TrustedKey
} from '@evalmesh/trust'
import { printable } from '@evalmesh/protocol'
import { UsageError, str, type Command, type Parsed } from '../args.js'
import { jsonOk, table } from '../output.js'
import { stateDirOf } from '../context.js'

export const keyCmd: Command = {
  name: 'key',
  summary: 'print this node\'s public key line (for other nodes\' trusted-keys) and its fingerprint',
  usage: `evalmesh key [--state-dir D] [--json]

  Prints "<base64 public key> <name> # <fingerprint>". On another node, run
  \`evalmesh trust add "<that line>"\` (the comment is ignored) to trust this one;
  compare the fingerprint with what \`evalmesh trust list\` shows there.`,
  options: {},
  run: async (p) => {
    const id = loadIdentity(stateDirOf(p), { create: true })
    const fp = fingerprint(id.publicKey)
    console.log(p.values.json === true
      ? jsonOk({ id: id.id, name: id.name, key: Buffer.from(id.publicKey).toString('base64'), fingerprint: fp })
      : `${trustLine(id)} # ${fp}`)
    return 0
  }
}

/** "1h", "30m", "90s", "2d", "1500ms" or plain seconds, as milliseconds. */
export function parseDuration (text: string, flag = 'window'): number {
  const m = /^(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?$/.exec(text.trim())
  if (m === null) throw new UsageError(`--${flag} must be a duration such as 90s, 30m, 1h or 2d, got "${text}"`)
  const unit = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 }[(m[2] ?? 's') as 'ms' | 's' | 'm' | 'h' | 'd']
  const ms = Number(m[1]) * unit
  if (!(ms > 0)) throw new UsageError(`--${flag} must be longer than 0`)
  return ms
}

function time (p: Parsed, flag: string): number | undefined {
  const v = str(p, flag)
  if (v === undefined) return undefined
  const t = Date.parse(v)
  if (Number.isNaN(t)) throw new UsageError(`--${flag} must be an ISO 8601 time such as 2026-12-03T01:00:00Z, got "${v}"`)
  return t
}

const iso = (ms: number | undefined): string => ms === undefined ? '' : new Date(ms).toISOString().replace(/\.\d{3}Z$/, 'Z')

function keyJson (k: TrustedKey): Record<string, unknown> {
  return { name: k.name, id: k.id, fingerprint: k.fingerprint, operator: k.operator, added: k.added ?? null, key: Buffer.from(k.key).toString('base64') }
}

function describeKey (k: TrustedKey): string {
  return `${k.name !== '' ? printable(k.name, 63) : '(unlabelled)'} ${k.fingerprint} (id ${k.id})${k.operator ? ', operator' : ''}`
}

function trustList (p: Parsed, dir: string): number {
  const self = loadIdentity(dir, { create: true })
  const keys = listTrustedKeys(dir)
  if (p.values.json === true) {
    console.log(jsonOk({
      self: { name: self.name, id: self.id, fingerprint: fingerprint(self.publicKey), operator: true },
      keys: keys.map(keyJson),
      meshKeys: listMeshKeys(dir).map(k => ({ fingerprint: k.fingerprint, state: k.state, sendFrom: k.sendFrom === undefined ? null : iso(k.sendFrom), notAfter: k.notAfter === undefined ? null : iso(k.notAfter) }))
    }))
    return 0
  }
  const rows = [
    [printable(self.name, 63), fingerprint(self.publicKey), 'operator', '(this node)'],
    ...keys.map(k => [k.name !== '' ? printable(k.name, 63) : '-', k.fingerprint, k.operator ? 'operator' : '-', k.added ?? '-'])
  ]
  console.log(table(['LABEL', 'FINGERPRINT', 'ROLE', 'ADDED'], rows))
  const mesh = listMeshKeys(dir)
  if (mesh.length > 0) console.log(`\nmesh keys (any node holding one is trusted, not as an operator):\n${meshTable(mesh)}`)
  return 0
}

function meshTable (mesh: ReturnType<typeof listMeshKeys>): string {
  return table(['FINGERPRINT', 'STATE', 'SENT FROM', 'ACCEPTED UNTIL'], mesh.map(k => [k.fingerprint, k.state, iso(k.sendFrom) || '-', iso(k.notAfter) || '-']))
}

function meshKey (p: Parsed, dir: string, action: string | undefined, arg: string | undefined): number {
  switch (action) {
    case 'create': {
      const key = createMeshKey(dir)
      console.log(p.values.json === true ? jsonOk({ key }) : key)
      return 0
    }
    case 'import':
      if (arg === undefined) throw new UsageError('trust mesh-key import <base64 key>')
      importMeshKey(dir, arg)
      console.log(p.values.json === true ? jsonOk({ installed: true }) : 'mesh key installed (it replaces any other at once; trust mesh-key rotate changes it without downtime)')
      return 0
    case 'list': case undefined: {
      const mesh = listMeshKeys(dir)
      if (p.values.json === true) console.log(jsonOk(mesh.map(k => ({ fingerprint: k.fingerprint, state: k.state, sendFrom: k.sendFrom === undefined ? null : iso(k.sendFrom), notAfter: k.notAfter === undefined ? null : iso(k.notAfter) }))))
      else console.log(mesh.length === 0 ? '(no mesh key)' : meshTable(mesh))
      return 0
    }
    case 'rotate': {
      const opts: Parameters<typeof rotateMeshKey>[1] = {}
      const key = str(p, 'key'); if (key !== undefined) opts.key = key
      const w = str(p, 'window'); if (w !== undefined) opts.windowMs = parseDuration(w)
      const sendFrom = time(p, 'send-from'); if (sendFrom !== undefined) opts.sendFrom = sendFrom
      const notAfter = time(p, 'not-after'); if (notAfter !== undefined) opts.notAfter = notAfter
      const r = rotateMeshKey(dir, opts)
      if (p.values.json === true) {
        console.log(jsonOk({ key: r.key, fingerprint: r.fingerprint, sendFrom: iso(r.sendFrom), notAfter: iso(r.notAfter), command: r.command }))
        return 0
      }
      console.log([
        `new mesh key ${r.fingerprint} installed: accepted now, sent from ${iso(r.sendFrom)};`,
        `the old key is accepted until ${iso(r.notAfter)} and then dropped.`,
        ...(key === undefined
          ? ['', `On every other node of the mesh, before ${iso(r.sendFrom)} (the key is a secret: copy it as you copied the first):`, '', `  ${r.command}`]
          : [])
      ].join('\n'))
      return 0
    }
    case 'retire': {
      const dropped = retireMeshKeys(dir)
      if (p.values.json === true) console.log(jsonOk({ dropped }))
      else console.log(dropped.length === 0 ? 'only one mesh key: nothing to retire' : `dropped ${dropped.join(', ')}; the newest mesh key is the only one now`)
      return 0
    }
    default:
      throw new UsageError(`unknown mesh-key action "${action}": create | import <key> | list | rotate [--window 1h] | retire`)
  }
}

export const trustCmd: Command = {
  name: 'trust',
  summary: 'trust other nodes (by key, as operators, or by a shared mesh key); list and remove them',
  usage: `evalmesh trust list                                 labels, fingerprints, operators, when added
evalmesh trust add "<base64 public key> [label]" [--operator | --no-operator]
                                                    trust one node's key (the line \`evalmesh key\` prints)
evalmesh trust remove <label | fingerprint | node id>
evalmesh trust mesh-key create                      make a mesh key (prints it; copy it to the other nodes)
evalmesh trust mesh-key import <base64>             install a mesh key made elsewhere (replaces at once)
evalmesh trust mesh-key list                        the mesh keys' fingerprints and states
evalmesh trust mesh-key rotate [--window 1h]        a new mesh key without downtime: old and new are
                                                    accepted for the window, then the old is dropped;
                                                    prints the command for every other node
evalmesh trust mesh-key retire                      end a rotation now: keep only the newest key

  The label is the name this node gives the key: policies (hosts, gags), status and the
  trace use it, whatever the peer calls itself. An operator sees and controls every
  client's work and the node itself (docs/SECURITY.md); this node's own key always is one.
  Files live in the state dir (owner-only): trusted-keys, mesh.key. Running nodes pick up
  changes on their next connection.`,
  options: {
    operator: { type: 'boolean' },
    window: { type: 'string' },
    key: { type: 'string' },
    'send-from': { type: 'string' },
    'not-after': { type: 'string' }
  },
  run: async (p) => {
    const [what, arg, ...rest] = p.positionals
    const dir = stateDirOf(p)
    switch (what) {
      case 'list': case undefined: return trustList(p, dir)
      case 'add': {
        if (arg === undefined) throw new UsageError('trust add "<base64 public key> [label]"')
        const opts: Parameters<typeof addTrustedKey>[2] = {}
        if (typeof p.values.operator === 'boolean') opts.operator = p.values.operator
        const k = addTrustedKey(dir, [arg, ...rest].join(' '), opts)
        if (p.values.json === true) { console.log(jsonOk({ change: k.change, ...keyJson(k) })); return 0 }
        console.log(`${k.change === 'added' ? 'trusted' : k.change === 'updated' ? 'updated' : 'already trusted:'} ${describeKey(k)}`)
        return 0
      }
      case 'remove': {
        if (arg === undefined) throw new UsageError('trust remove <label | fingerprint | node id>')
        const removed = removeTrustedKey(dir, arg)
        if (p.values.json === true) { console.log(jsonOk(removed.map(keyJson))); return 0 }
        for (const k of removed) console.log(`no longer trusted: ${describeKey(k)} (open connections keep going until they close)`)
        return 0
      }
      case 'mesh-key': return meshKey(p, dir, arg, rest[0])
      default:
        throw new UsageError(`unknown trust action "${what}": list | add | remove | mesh-key`)
    }
  }
}

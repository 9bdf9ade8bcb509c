import { addTrustedKey, createMeshKey, importMeshKey, loadIdentity, trustLine } from '@evalmesh/trust'
import { UsageError, type Command } from '../args.js'
import { stateDirOf } from '../context.js'

export const keyCmd: Command = {
  name: 'key',
  summary: 'print this node\'s public key line (for other nodes\' trusted-keys)',
  usage: `evalmesh key [--state-dir D]

  Prints "<base64 public key> <name>". On another node, run
  \`evalmesh trust add "<that line>"\` to trust this one.`,
  options: {},
  run: async (p) => {
    const id = loadIdentity(stateDirOf(p), { create: true })
    console.log(p.values.json === true ? JSON.stringify({ id: id.id, name: id.name, key: Buffer.from(id.publicKey).toString('base64') }) : trustLine(id))
    return 0
  }
}

export const trustCmd: Command = {
  name: 'trust',
  summary: 'trust another node: by its key, or by sharing a mesh key',
  usage: `evalmesh trust add "<base64 public key> [name]"   trust one node's key
evalmesh trust mesh-key create                     make a mesh key (prints it; copy it to the other nodes)
evalmesh trust mesh-key import <base64>            install a mesh key made elsewhere

  Files live in the state dir (owner-only): trusted-keys, mesh.key. Running nodes
  pick up changes on their next connection.`,
  options: {},
  run: async (p) => {
    const [what, arg, extra] = p.positionals
    const dir = stateDirOf(p)
    if (what === 'add' && arg !== undefined) {
      const k = addTrustedKey(dir, [arg, extra].filter(Boolean).join(' '))
      console.log(`trusted ${k.name || '(unnamed)'} (id ${k.id})`)
      return 0
    }
    if (what === 'mesh-key' && arg === 'create') { console.log(createMeshKey(dir)); return 0 }
    if (what === 'mesh-key' && arg === 'import' && extra !== undefined) { importMeshKey(dir, extra); console.log('mesh key installed'); return 0 }
    throw new UsageError('expected: trust add "<key> [name]" | trust mesh-key create | trust mesh-key import <base64>')
  }
}

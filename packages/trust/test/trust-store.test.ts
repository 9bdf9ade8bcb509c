import { test } from 'node:test'
import assert from 'node:assert/strict'
import { spawnSync } from 'node:child_process'
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import {
  TrustStore, addTrustedKey, createMeshKey, ephemeralIdentity, fingerprint, listMeshKeys, listTrustedKeys,
  loadIdentity, parseTrustedKeys, removeTrustedKey, retireMeshKeys, rotateMeshKey, trustLine
} from '../src/index.js'

function temp (t: { after: (fn: () => void) => void }): string {
  const d = mkdtempSync(join(tmpdir(), 'evalmesh-trust-'))
  t.after(() => rmSync(d, { recursive: true, force: true }))
  return d
}

test('fingerprints are SHA256:base64, as ssh-keygen -l prints them for the same key', (t) => {
  const id = ephemeralIdentity('fp')
  const fp = fingerprint(id.publicKey)
  assert.match(fp, /^SHA256:[A-Za-z0-9+/]{43}$/)
  const probe = spawnSync('ssh-keygen', ['-?'], { encoding: 'utf8' })
  if (probe.error !== undefined) { t.diagnostic('no ssh-keygen here: checked the form only'); return }
  const blob = Buffer.concat([Buffer.from([0, 0, 0, 11]), Buffer.from('ssh-ed25519'), Buffer.from([0, 0, 0, 32]), Buffer.from(id.publicKey)])
  const file = join(temp(t), 'k.pub')
  writeFileSync(file, `ssh-ed25519 ${blob.toString('base64')} fp\n`)
  const out = spawnSync('ssh-keygen', ['-l', '-E', 'sha256', '-f', file], { encoding: 'utf8' })
  assert.equal(out.status, 0, out.stderr)
  assert.equal(out.stdout.split(/\s+/)[1], fp)
})

test('old trusted-keys files read as before: labels, no operators', () => {
  const a = ephemeralIdentity('a')
  const b = ephemeralIdentity('b')
  const keys = parseTrustedKeys(`# a comment\n${trustLine(a)}\n${Buffer.from(b.publicKey).toString('base64')}\n`)
  const [ka, kb] = [...keys.values()]
  assert.equal(ka!.name, 'a')
  assert.equal(ka!.operator, false)
  assert.equal(kb!.name, '')
  assert.equal(ka!.added, undefined)
})

test('trust add --operator, list, nameOf and isOperator; labels come from this node, not the peer', (t) => {
  const dir = temp(t)
  const self = loadIdentity(dir, { create: true, name: 'plaza' })
  const alice = ephemeralIdentity('alice')
  const mallory = ephemeralIdentity('alice') // claims the same name in its hello
  const now = new Date('2026-12-03T00:10:00.000Z')
  const added = addTrustedKey(dir, trustLine(alice), { operator: true, now: () => now })
  assert.equal(added.change, 'added')
  addTrustedKey(dir, `${Buffer.from(mallory.publicKey).toString('base64')} mallory`)
  const text = readFileSync(join(dir, 'trusted-keys'), 'utf8')
  assert.match(text, /^\S+ alice role=operator added=2026-12-03T00:10:00Z$/m)
  assert.equal(statSync(join(dir, 'trusted-keys')).mode & 0o777, 0o600)

  const list = listTrustedKeys(dir)
  assert.deepEqual(list.map(k => [k.name, k.operator, k.fingerprint === fingerprint(k.key)]), [['alice', true, true], ['mallory', false, true]])
  assert.ok(list[1]!.added !== undefined)

  const store = new TrustStore(dir, self)
  assert.equal(store.isOperator(alice.publicKey), true)
  assert.equal(store.isOperator(mallory.publicKey), false)
  assert.equal(store.isOperator(self.publicKey), true, 'the node\'s own key is an operator')
  assert.equal(store.isOperator(ephemeralIdentity().publicKey), false)
  assert.equal(store.nameOf(alice.publicKey), 'alice')
  assert.equal(store.nameOf(mallory.publicKey), 'mallory', 'whatever it says in its hello')
  assert.equal(store.nameOf(self.publicKey), 'plaza')
  assert.equal(store.nameOf(ephemeralIdentity('x').publicKey), undefined)
  const stranger = ephemeralIdentity('x')
  assert.equal(store.nameOrId(stranger.publicKey), stranger.id)
  assert.equal(store.nameOrId(alice.publicKey), 'alice')

  // Demote, relabel, and the store notices without a restart.
  const upd = addTrustedKey(dir, `${Buffer.from(alice.publicKey).toString('base64')} ann`, { operator: false })
  assert.equal(upd.change, 'updated')
  assert.equal(addTrustedKey(dir, trustLine(alice)).change === 'updated', true, 'relabelled back to alice')
  assert.equal(addTrustedKey(dir, trustLine(alice)).change, 'unchanged')
  const s2 = new TrustStore(dir, self)
  assert.equal(s2.isOperator(alice.publicKey), false)
  assert.equal(s2.nameOf(alice.publicKey), 'alice')
  assert.match(readFileSync(join(dir, 'trusted-keys'), 'utf8'), /alice added=2026-12-03T00:10:00Z/, 'the added time stays')
})

test('labels the policy gives a meaning are refused', (t) => {
  const dir = temp(t)
  const k = Buffer.from(ephemeralIdentity().publicKey).toString('base64')
  for (const bad of ['self', 'broadcast', 'Directed', '0123456789abcdef', '-x']) {
    assert.throws(() => addTrustedKey(dir, `${k} ${bad}`), /label/)
  }
})

test('trust remove by label, fingerprint or node id; a shared label is ambiguous', (t) => {
  const dir = temp(t)
  const [a, b, c] = ['a', 'b', 'c'].map(n => ephemeralIdentity(n))
  writeFileSync(join(dir, 'trusted-keys'), `# keep me\n${trustLine(a!)}\n${trustLine(b!)} # b's laptop\n${Buffer.from(c!.publicKey).toString('base64')} b\n`)
  assert.throws(() => removeTrustedKey(dir, 'b'), /names 2 keys.*fingerprint/)
  assert.throws(() => removeTrustedKey(dir, 'nobody'), /no trusted key matches/)
  assert.deepEqual(removeTrustedKey(dir, fingerprint(c!.publicKey)).map(k => k.id), [c!.id])
  assert.deepEqual(removeTrustedKey(dir, 'b').map(k => k.id), [b!.id])
  assert.deepEqual(removeTrustedKey(dir, a!.id).map(k => k.id), [a!.id])
  assert.equal(readFileSync(join(dir, 'trusted-keys'), 'utf8'), '# keep me\n')
})

test('mesh key rotation: old and new accepted during the window, the new sent from send-from, the old dropped after', (t) => {
  const [dirA, dirB] = [temp(t), temp(t)]
  const key = createMeshKey(dirA)
  writeFileSync(join(dirB, 'mesh.key'), key + '\n', { mode: 0o600 })
  let clock = Date.parse('2026-12-03T00:00:00Z')
  const now = (): number => clock
  const A = new TrustStore(dirA, ephemeralIdentity('a'), { now })
  const B = new TrustStore(dirB, ephemeralIdentity('b'), { now })
  const msg = Buffer.from('transcript')
  const macOf = (s: TrustStore): Uint8Array => s.meshMac(msg)!
  const talk = (): [boolean, boolean] => [B.checkMeshMac(msg, macOf(A)), A.checkMeshMac(msg, macOf(B))]
  assert.deepEqual(talk(), [true, true])

  const r = rotateMeshKey(dirA, { windowMs: 3_600_000, now: clock })
  assert.equal(r.sendFrom, clock + 1_800_000)
  assert.equal(r.notAfter, clock + 3_600_000)
  assert.match(r.command, /^evalmesh trust mesh-key rotate --key \S+ --send-from 2026-12-03T00:30:00Z --not-after 2026-12-03T01:00:00Z$/)
  assert.deepEqual(A.meshKeys().map(k => k.state), ['sending', 'next'])
  assert.deepEqual(talk(), [true, true], 'A still sends the old key: B, not yet rotated, takes it')

  clock += 600_000 // B makes the same rotation ten minutes later, from the printed command
  assert.throws(() => rotateMeshKey(dirA, { now: clock }), /already under way/)
  rotateMeshKey(dirB, { key: r.key, sendFrom: r.sendFrom, notAfter: r.notAfter, now: clock })
  assert.deepEqual(talk(), [true, true])

  clock = r.sendFrom + 1
  assert.deepEqual(A.meshKeys().map(k => k.state), ['accepted', 'sending'])
  assert.deepEqual(talk(), [true, true], 'both send the new key now')
  const oldMac = (() => { const d = temp(t); writeFileSync(join(d, 'mesh.key'), key + '\n', { mode: 0o600 }); return new TrustStore(d, ephemeralIdentity(), { now }).meshMac(msg)! })()
  assert.equal(A.checkMeshMac(msg, oldMac), true, 'a straggler on the old key is still taken in the window')

  clock = r.notAfter
  assert.equal(A.checkMeshMac(msg, oldMac), false, 'after not-after the old key is dropped')
  assert.deepEqual(talk(), [true, true])
  assert.deepEqual(listMeshKeys(dirA, clock).map(k => k.state), ['expired', 'sending'])

  assert.equal(retireMeshKeys(dirA).length, 1)
  assert.deepEqual(listMeshKeys(dirA, clock).map(k => k.state), ['sending'])
  assert.equal(readFileSync(join(dirA, 'mesh.key'), 'utf8'), r.key + '\n', 'one bare line again, as older evalmesh wrote it')
  assert.equal(statSync(join(dirA, 'mesh.key')).mode & 0o777, 0o600)
})

test('rotation refuses nonsense: no key yet, a window already over, the same key twice', (t) => {
  const dir = temp(t)
  assert.throws(() => rotateMeshKey(dir), /no mesh key/)
  const k = createMeshKey(dir)
  assert.throws(() => rotateMeshKey(dir, { windowMs: 0 }), /window/)
  assert.throws(() => rotateMeshKey(dir, { notAfter: Date.now() - 1 }), /has passed/)
  assert.throws(() => rotateMeshKey(dir, { key: k }), /already installed/)
  assert.throws(() => rotateMeshKey(dir, { key: 'c2hvcnQ=' }), /at least 16 bytes/)
})

import { test } from 'node:test'
import assert from 'node:assert/strict'
import { mkdtempSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { decodeValue, encodeValue } from '@evalmesh/protocol'
import { TrustStore, createMeshKey, ephemeralIdentity, loadIdentity, trustLine } from '@evalmesh/trust'
import { ReplayWindow, newDatagramCounters, openDatagram, sealDatagram } from '../src/index.js'

const dir = (): string => mkdtempSync(join(tmpdir(), 'evalmesh-dgram-'))

test('a sealed datagram opens for a trusted receiver, with the sender proven', () => {
  const d = dir()
  const me = loadIdentity(d, { create: true, name: 'me' })
  const trust = new TrustStore(d, me)
  const r = openDatagram(sealDatagram(me, trust, { kind: 'query', txn: 'x' }), trust, new ReplayWindow())
  assert.ok(r.ok)
  assert.equal(r.message.kind, 'query')
  assert.equal(r.sender.id, me.id)
  assert.equal(r.sender.self, true)
})

test('forged, replayed, untrusted, stale and malformed datagrams are dropped and counted', () => {
  const d = dir()
  const me = loadIdentity(d, { create: true, name: 'me' })
  const trust = new TrustStore(d, me)
  const replay = new ReplayWindow()
  const counters = newDatagramCounters()
  const good = sealDatagram(me, trust, { kind: 'query', txn: 'a' })
  assert.ok(openDatagram(good, trust, replay, counters).ok)
  // The same bytes again: a replay.
  assert.deepEqual(openDatagram(good, trust, replay, counters), { ok: false, reason: 'replayed', detail: 'nonce already seen' })
  // A body changed after signing: forged.
  const outer = decodeValue(good) as { body: Buffer, sig: Buffer }
  const body = decodeValue(outer.body) as Record<string, unknown>
  const tampered = Buffer.from(encodeValue({ ...outer, body: Buffer.from(encodeValue({ ...body, txn: 'b' })) }))
  assert.equal((openDatagram(tampered, trust, replay, counters) as { reason: string }).reason, 'forged')
  // Another key claiming to be me: the signature cannot verify against the key it names.
  const stranger = ephemeralIdentity('stranger')
  assert.equal((openDatagram(sealDatagram(stranger, new TrustStore(dir(), stranger), { kind: 'query' }), trust, replay, counters) as { reason: string }).reason, 'untrusted')
  // An old timestamp, correctly signed: stale.
  const oldBody = Buffer.from(encodeValue({ ...body, ts: Date.now() - 120_000, nonce: Buffer.alloc(8, 7) }))
  const oldSig = me.sign(Buffer.concat([Buffer.from('evalmesh/1 datagram'), oldBody]))
  assert.equal((openDatagram(Buffer.from(encodeValue({ body: oldBody, sig: Buffer.from(oldSig) })), trust, replay, counters) as { reason: string }).reason, 'stale')
  // Garbage.
  assert.equal((openDatagram(Buffer.from('hello'), trust, replay, counters) as { reason: string }).reason, 'malformed')
  assert.equal((openDatagram(Buffer.from(encodeValue({ body: 1, sig: 2 })), trust, replay, counters) as { reason: string }).reason, 'malformed')
  assert.deepEqual(counters, { received: 7, accepted: 1, dropped: { malformed: 2, forged: 1, untrusted: 1, replayed: 1, stale: 1 } })
})

test('trust by key file or by mesh key', () => {
  const a = dir(); const b = dir()
  const ida = loadIdentity(a, { create: true, name: 'a' })
  const idb = loadIdentity(b, { create: true, name: 'b' })
  const ta = new TrustStore(a, ida)
  const fromB = (): Buffer => sealDatagram(idb, new TrustStore(b, idb), { kind: 'offer' })
  assert.equal((openDatagram(fromB(), ta, new ReplayWindow()) as { reason: string }).reason, 'untrusted')
  writeFileSync(join(a, 'trusted-keys'), trustLine(idb) + '\n')
  ta.reload()
  const byKey = openDatagram(fromB(), ta, new ReplayWindow())
  assert.ok(byKey.ok && byKey.sender.trustedBy === 'key')
  const c = dir(); const e = dir()
  const key = createMeshKey(c)
  writeFileSync(join(e, 'mesh.key'), key + '\n')
  const idc = loadIdentity(c, { create: true }); const ide = loadIdentity(e, { create: true })
  const byMesh = openDatagram(sealDatagram(ide, new TrustStore(e, ide), { kind: 'query' }), new TrustStore(c, idc), new ReplayWindow())
  assert.ok(byMesh.ok && byMesh.sender.trustedBy === 'mesh')
})

test('a datagram whose ts is an 8-byte CBOR integer (as strict encoders write epoch ms) is accepted', () => {
  const d = dir()
  const me = loadIdentity(d, { create: true, name: 'me' })
  const trust = new TrustStore(d, me)
  const text = (s: string): Buffer => Buffer.concat([Buffer.from([0x60 + s.length]), Buffer.from(s)])
  const bytes = (b: Uint8Array): Buffer => Buffer.concat([Buffer.from(b.length < 24 ? [0x40 + b.length] : [0x58, b.length]), Buffer.from(b)])
  const ts = Buffer.alloc(9)
  ts[0] = 0x1b
  ts.writeBigUInt64BE(BigInt(Date.now()), 1)
  // {"kind": "query", "key": <32 bytes>, "name": "me", "ts": 1b <epoch ms>, "nonce": <8 bytes>}, written by hand
  const body = Buffer.concat([Buffer.from([0xa5]), text('kind'), text('query'), text('key'), bytes(me.publicKey),
    text('name'), text('me'), text('ts'), ts, text('nonce'), bytes(Buffer.alloc(8, 3))])
  const sig = me.sign(Buffer.concat([Buffer.from('evalmesh/1 datagram'), body]))
  const r = openDatagram(Buffer.from(encodeValue({ body, sig: Buffer.from(sig) })), trust, new ReplayWindow())
  assert.ok(r.ok, r.ok ? '' : r.detail)
  assert.equal(typeof r.message.ts, 'number')
  // And evalmesh itself writes ts that way: an 8-byte integer, not a float.
  const sealed = decodeValue(sealDatagram(me, trust, { kind: 'query' })) as { body: Buffer }
  const at = sealed.body.indexOf(text('ts'))
  assert.equal(sealed.body[at + 3], 0x1b, `ts encoded as ${sealed.body.subarray(at + 3, at + 12).toString('hex')}`)
})

test('the replay window remembers a nonce for as long as its datagram could be fresh', () => {
  const replay = new ReplayWindow()
  const key = Buffer.alloc(32, 1); const nonce = Buffer.alloc(8, 2)
  const t0 = 1_000_000_000_000
  assert.equal(replay.admit(key, nonce, t0, t0), true)
  // Still refused at the far edge of the ±30 s window (receiver clock t0 + 30 s), after sweeps.
  assert.equal(replay.admit(Buffer.alloc(32, 9), nonce, t0 + 29_000, t0 + 29_000), true)
  assert.equal(replay.admit(key, nonce, t0, t0 + 30_000), false)
  // Forgotten once the timestamp is 60 s old, when a datagram carrying it is stale anyway.
  replay.admit(Buffer.alloc(32, 8), nonce, t0 + 66_000, t0 + 66_000)
  assert.equal(replay.admit(key, nonce, t0, t0 + 66_000), true)
})

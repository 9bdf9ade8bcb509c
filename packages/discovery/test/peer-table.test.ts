import { test } from 'node:test'
import assert from 'node:assert/strict'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { PeerTable, SeedFileError, type Peer } from '../src/index.js'

function clock (start = 1_000_000): { now: () => number, advance: (ms: number) => void } {
  let t = start
  return { now: () => t, advance: (ms: number) => { t += ms } }
}

function record (table: PeerTable): string[] {
  const log: string[] = []
  for (const ev of ['appear', 'update', 'disappear']) table.on(ev, (p: Peer) => log.push(`${ev} ${p.name} ${p.source}`))
  return log
}

const alpha = { name: 'alpha', id: 'id-a', address: '198.18.0.1', port: 6680, version: 1, caps: ['eval'] }

test('an mDNS peer appears, updates only on real changes, and expires after its TTL', () => {
  const c = clock()
  const table = new PeerTable({ now: c.now })
  const log = record(table)
  table.upsert(alpha, { source: 'mdns', ttl: 10 })
  table.upsert(alpha, { source: 'mdns', ttl: 10 }) // a refresh alone is not an update
  c.advance(5000)
  table.upsert({ ...alpha, port: 6681 }, { source: 'mdns', ttl: 10 })
  assert.deepEqual(log, ['appear alpha mdns', 'update alpha mdns'])
  assert.equal(table.peer('alpha')?.port, 6681)
  assert.equal(table.peer('alpha')?.lastSeen, 1_005_000)

  c.advance(9_999)
  assert.equal(table.peers().length, 1, 'still inside its TTL')
  c.advance(1)
  assert.deepEqual(table.peers(), [])
  assert.deepEqual(log.slice(2), ['disappear alpha mdns'])
})

test('expire() returns exactly the peers that went away', () => {
  const c = clock()
  const table = new PeerTable({ now: c.now })
  table.upsert(alpha, { source: 'mdns', ttl: 2 })
  table.upsert({ ...alpha, name: 'beta', id: 'id-b' }, { source: 'mdns', ttl: 60 })
  c.advance(3000)
  assert.deepEqual(table.expire().map(p => p.name), ['alpha'])
  assert.deepEqual(table.peers().map(p => p.name), ['beta'])
})

test('lookup by name or id; self is never listed', () => {
  const table = new PeerTable()
  table.setSelf('me', 'id-me')
  assert.equal(table.upsert({ ...alpha, name: 'me', id: 'id-me' }, { source: 'mdns', ttl: 10 }), undefined)
  assert.equal(table.upsert({ ...alpha, name: 'clone', id: 'id-me' }, { source: 'mdns', ttl: 10 }), undefined, 'same id is self too')
  table.upsert(alpha, { source: 'mdns', ttl: 10 })
  assert.equal(table.peer('id-a')?.name, 'alpha')
  assert.equal(table.peer('alpha')?.id, 'id-a')
  assert.equal(table.peer('nobody'), undefined)
  assert.equal(table.peer(''), undefined)
  assert.deepEqual(table.peers().map(p => p.name), ['alpha'])
})

test('a seed is shadowed by mDNS data for the same name and shows again when that expires', () => {
  const c = clock()
  const table = new PeerTable({ now: c.now })
  const log = record(table)
  table.addSeeds([{ name: 'alpha', address: '198.18.0.1', port: 6680 }])
  assert.equal(table.peer('alpha')?.source, 'seed')
  assert.equal(table.peer('alpha')?.id, '')
  table.upsert(alpha, { source: 'mdns', ttl: 5 })
  assert.deepEqual(table.peer('alpha'), { ...alpha, lastSeen: 1_000_000, source: 'mdns' })
  c.advance(6000)
  assert.equal(table.peer('alpha')?.source, 'seed')
  assert.deepEqual(log, ['appear alpha seed', 'update alpha mdns', 'update alpha seed'])
  table.remove('alpha')
  assert.deepEqual(log.slice(3), ['disappear alpha seed'])
})

test('returned peers are copies: changing them does not change the table', () => {
  const table = new PeerTable()
  table.upsert(alpha, { source: 'mdns', ttl: 10 })
  const p = table.peer('alpha') as Peer
  p.caps.push('evil')
  p.port = 1
  assert.deepEqual(table.peer('alpha')?.caps, ['eval'])
  assert.equal(table.peer('alpha')?.port, 6680)
})

test('loadSeeds replaces the previous seeds and leaves the table alone on a bad file', () => {
  const dir = mkdtempSync(join(tmpdir(), 'evalmesh-seeds-'))
  try {
    const table = new PeerTable()
    const log = record(table)
    const file = join(dir, 'peers')
    writeFileSync(file, 'alpha 198.18.0.1:6680 id-a\nbeta 198.18.0.2:6680\n')
    assert.deepEqual(table.loadSeeds(file).map(p => p.name), ['alpha', 'beta'])
    writeFileSync(file, 'beta 198.18.0.2:6690\ngamma 198.18.0.3:6680\n')
    table.loadSeeds(file)
    assert.deepEqual(table.peers().map(p => `${p.name}:${p.port}`), ['beta:6690', 'gamma:6680'])
    assert.deepEqual(log, ['appear alpha seed', 'appear beta seed', 'disappear alpha seed', 'update beta seed', 'appear gamma seed'])

    writeFileSync(file, 'delta 198.18.0.4:6680\nbroken line with four fields\n')
    assert.throws(() => table.loadSeeds(file), (err: unknown) =>
      err instanceof SeedFileError && err.line === 2 && err.message.startsWith(`${file}:2:`))
    assert.deepEqual(table.peers().map(p => p.name), ['beta', 'gamma'])
    assert.throws(() => table.loadSeeds(join(dir, 'missing')), /missing: cannot read: ENOENT/)
  } finally {
    rmSync(dir, { recursive: true, force: true })
  }
})

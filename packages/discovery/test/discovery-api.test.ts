import { test } from 'node:test'
import assert from 'node:assert/strict'
import { createDiscovery } from '../src/index.js'

// None of these open a socket: they fail (or finish) before any packet could be sent.

test('bad init is refused with the reason', () => {
  assert.throws(() => createDiscovery({ interfaceAddress: 'eth0' }), /interfaceAddress must be an IPv4 address, got "eth0"/)
  assert.throws(() => createDiscovery({ interfaceAddress: '198.18.0.1', ttl: 0 }), /ttl must be an integer from 1 to 86400/)
})

test('start() rejects when no interface has the address, and the object stays stoppable', async () => {
  const d = createDiscovery({ interfaceAddress: '198.19.255.254' })
  await assert.rejects(d.start(), /no network interface has the address 198\.19\.255\.254/)
  await d.stop()
  await d.stop()
  assert.deepEqual(d.peers(), [])
})

test('advertise() explains what it cannot advertise', () => {
  const d = createDiscovery({ interfaceAddress: '198.18.0.1' })
  const ok = { name: 'alpha', id: 'k', port: 6680, version: 1, caps: [] }
  assert.throws(() => d.advertise({ ...ok, name: 'al.pha' }), /cannot advertise: name 'al\.pha' may hold only/)
  assert.throws(() => d.advertise({ ...ok, port: 65536 }), /cannot advertise: port 65536/)
  d.advertise(ok) // before start(): remembered, sent once started
})

test('seeds added to the table are listed before any mDNS traffic; unknown names are undefined', () => {
  const d = createDiscovery({ interfaceAddress: '198.18.0.1' })
  d.table.addSeeds([{ name: 'beta', address: '198.18.0.2', port: 6680, id: 'k-beta' }])
  assert.equal(d.peer('k-beta')?.name, 'beta')
  assert.equal(d.peer('gamma'), undefined)
})

import { test } from 'node:test'
import assert from 'node:assert/strict'
import { createDiscovery } from '../src/index.js'

// None of these open a socket: they fail (or finish) before any packet could be sent.

test('bad init is refused with the reason', () => {
  assert.throws(() => createDiscovery({ interfaceAddress: 'eth0' }), /interfaceAddress must be an IPv4 or IPv6 address, got "eth0"/)
  assert.throws(() => createDiscovery({ interfaceAddress: '198.18.0.1', ttl: 0 }), /ttl must be an integer from 1 to 86400/)
  assert.throws(() => createDiscovery({ interfaceAddress: 'fe80::1' }), /cannot advertise "fe80::1": give IPv4 or global IPv6 addresses/)
  assert.throws(() => createDiscovery({ interfaceAddress: '198.18.0.1', addresses: ['2001:db8::1', 'lan0'] }), /cannot advertise "lan0"/)
})

test('start() rejects an address to advertise that is not on the interface', async () => {
  const d = createDiscovery({ interfaceAddress: '127.0.0.1', addresses: ['2001:db8::77'] })
  await assert.rejects(d.start(), /2001:db8::77 is not an address of lo, the interface of 127\.0\.0\.1/)
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

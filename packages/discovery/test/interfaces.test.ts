import { test } from 'node:test'
import assert from 'node:assert/strict'
import { canonical, compareAddresses, interfaceOf, isLinkLocalV6, multicastInterfaceFor, onLink, type LanInterface } from '../src/interfaces.js'

const lan: LanInterface = {
  name: 'lan0',
  addresses: [
    { address: '198.18.0.1', family: 'IPv4', prefix: 15 },
    { address: '2001:db8::1', family: 'IPv6', prefix: 64 },
    { address: 'fe80::1', family: 'IPv6', prefix: 64 }
  ]
}

test('a datagram is on our link when it comes from one of our subnets, or link-local with our scope', () => {
  assert.equal(onLink(lan, '198.19.255.254'), true, 'inside 198.18.0.0/15')
  assert.equal(onLink(lan, '198.20.0.1'), false)
  assert.equal(onLink(lan, '2001:db8::ffff:1'), true)
  assert.equal(onLink(lan, '2001:db8:0:1::1'), false, 'another /64')
  assert.equal(onLink(lan, 'fe80::2%lan0'), true)
  assert.equal(onLink(lan, 'fe80::2%eth0'), false, 'link-local on another interface')
  assert.equal(onLink(lan, '::ffff:198.18.0.2'), false, 'families are not mixed')
})

test('addresses compare by their bits and have one spelling', () => {
  assert.equal(canonical('2001:DB8:0::1'), canonical('2001:db8::1'))
  assert.equal(canonical('fe80::1%lan0'), canonical('fe80::1'))
  assert.ok(compareAddresses('2001:db8::10', '2001:db8::9') > 0, '0x10 > 0x9, not as text')
  assert.ok(compareAddresses('198.18.0.10', '198.18.0.9') > 0)
  assert.equal(isLinkLocalV6('fe80::1%lan0'), true)
  assert.equal(isLinkLocalV6('2001:db8::1'), false)
})

test('the multicast interface of an IPv6 address is its scope; of an IPv4 address, itself', () => {
  assert.equal(multicastInterfaceFor('127.0.0.1'), '127.0.0.1')
  const lo = interfaceOf('::1')
  if (lo !== undefined) assert.equal(multicastInterfaceFor('::1'), `::%${lo.name}`)
  assert.throws(() => multicastInterfaceFor('2001:db8::77'), /no network interface has the address 2001:db8::77/)
})

import { test } from 'node:test'
import assert from 'node:assert/strict'
import { formatHost, resolveHost } from '../src/index.js'

test('formatHost writes what resolveHost reads back, brackets and all', () => {
  assert.equal(formatHost('198.18.0.3', 6680), '198.18.0.3:6680')
  assert.equal(formatHost('::1', 6681), '[::1]:6681')
  for (const [address, port] of [['127.0.0.1', 6680], ['::1', 6681], ['fe80::1', 1]] as const) {
    const e = resolveHost(formatHost(address, port))
    assert.deepEqual([e.host, e.port], [address, port])
  }
})

test('resolveHost names what is wrong with a bad host', () => {
  assert.throws(() => resolveHost('nosuchpeer'), (err: Error & { code?: string }) => err.code === 'UNKNOWN_HOST' && /nosuchpeer/.test(err.message))
  assert.throws(() => resolveHost('127.0.0.1:70000'), /bad port/)
})

test('a bare address takes the port the peer table advertises there, and is an error naming the fix without one', () => {
  assert.throws(() => resolveHost('127.0.0.1'), (err: Error & { code?: string }) => err.code === 'UNKNOWN_HOST' && /"127\.0\.0\.1" has no port.*give host:port \(e\.g\. 127\.0\.0\.1:6680\)/.test(err.message))
  assert.throws(() => resolveHost('[::1]'), /"\[::1\]" has no port.*\[::1\]:6680/)
  const lookup = (name: string): { address: string, port: number } | undefined => name === '127.0.0.1' || name === '::1' ? { address: name, port: 7000 } : undefined
  assert.deepEqual([resolveHost('127.0.0.1', lookup).port, resolveHost('[::1]', lookup).port, resolveHost('[::1]', lookup).host], [7000, 7000, '::1'])
  assert.throws(() => resolveHost(''), /empty host/)
})

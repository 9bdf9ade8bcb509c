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

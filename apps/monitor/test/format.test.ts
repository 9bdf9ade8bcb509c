import { test } from 'node:test'
import assert from 'node:assert/strict'
import { fit, peerLines, tableLines, traceLine } from '../src/format.js'

// What a hostile peer puts in its hello name, a form, a reason: none of it may act on the terminal.
const EVIL = '\x1b[2J\x1b]0;pwned\x07mallory\n12:00:00.000 finished fake line\u202e'
const unsafe = /[\x00-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]/

test('list rows show peer-chosen names, forms and reasons as visible escapes', () => {
  const rec = {
    txn: 'aaaaaaaaaaaaaaaa.x:1', client: 'aaaaaaaaaaaaaaaa', seq: 1, clientName: EVIL, kind: 'eval', summary: EVIL, mode: 'directed',
    state: 'done', queuedAt: 0, startedAt: 0, endedAt: 1, seconds: 1, howStopped: 'aborted', reason: EVIL, resultKept: false
  } as any
  for (const list of ['running', 'input', 'done'] as const) {
    const { rows } = tableLines(list, [rec], 200, 1000)
    assert.equal(rows.length, 1)
    assert.ok(!unsafe.test(rows[0]!), JSON.stringify(rows[0]))
    assert.ok(rows[0]!.length <= 200)
  }
  assert.match(tableLines('done', [rec], 400, 1000).rows[0]!, /\\x1b\[2J/)
})

test('trace lines and peer lines are escaped, one line each', () => {
  const line = traceLine({ seq: 1, time: 0, kind: 'served', txn: 'a:1', peer: EVIL, detail: EVIL } as any)
  assert.ok(!unsafe.test(line), JSON.stringify(line))
  assert.match(line, /mallory\\n12:00/)
  const peers = peerLines([{ name: EVIL, id: 'x', address: '10.0.0.1\x1b[1A', port: 6680, version: 1, caps: [], lastSeen: 0, source: 'mdns' }] as any)
  assert.ok(peers.every(l => !unsafe.test(l)), JSON.stringify(peers))
})

test('fit pads and cuts to the width, never splitting an escape', () => {
  assert.equal(fit('ab', 4), 'ab  ')
  assert.equal(fit('abcdef', 4), 'abc…')
  assert.equal(fit('a\x1bbc', 4), 'a…  ')
  assert.equal(fit('a\x1bbc', 8), 'a\\x1bbc ')
})

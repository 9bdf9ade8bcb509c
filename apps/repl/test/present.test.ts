import { test } from 'node:test'
import assert from 'node:assert/strict'
import { inspect } from 'node:util'
import type { TxnRecord } from '@evalmesh/protocol'
import { describeWait, readableErrors, showValue, stackFrames, terminalText, waitNotice } from '../src/present.js'

// What a hostile peer puts in a value, a message or console output.
const EVIL = '\x1b[2J\x1b]0;pwned\x07mallory\n12:00:00 fake line\u202e\r\x9b'

test('terminalText keeps lines and tabs, shows every other control, escape and bidi character as an escape', () => {
  const t = terminalText(EVIL + '\tend')
  assert.equal(t, '\\x1b[2J\\x1b]0;pwned\\x07mallory\n12:00:00 fake line\\u202e\\r\\x9b\tend')
  assert.ok(!/[\x00-\x08\x0b-\x1f\x7f-\x9f\u202e]/.test(t))
  // inspect's own colours may stay; nothing else that starts with ESC does.
  assert.equal(terminalText('\x1b[32mok\x1b[39m\x1b[2J', { keepColours: true }), '\x1b[32mok\x1b[39m\\x1b[2J')
  assert.equal(terminalText('\x1b[32mok'), '\\x1b[32mok')
})

test('showValue: a string quoted (raw: as it is to a pipe, escaped on a terminal); inspected values escaped on a terminal', () => {
  // Quoted, so the string "undefined" never reads as the value undefined.
  assert.equal(showValue('undefined'), "'undefined'")
  assert.equal(showValue(EVIL, { raw: true }), EVIL)
  assert.equal(showValue(EVIL, { tty: true, raw: true }), terminalText(EVIL))
  assert.ok(!/[\x00-\x08\x0b-\x1f\x7f-\x9f\u202e]/.test(showValue(EVIL, { tty: true, colors: false })), 'quoted on a terminal: nothing acts on it')
  const shown = showValue({ name: EVIL, list: [EVIL] }, { tty: true, colors: true })
  assert.ok(!shown.includes('\u202e') && !shown.includes('\x9b') && !/\x1b\[2J/.test(shown), shown)
  assert.match(shown, /\\x1B\[2J/) // inspect's own escape of ESC inside a string
})

test('Error results ({$error: {name, message}}) read as errors: "Error: e" at the top, [TypeError: t] inside', () => {
  assert.equal(showValue({ $error: { name: 'Error', message: 'e' } }), 'Error: e')
  assert.equal(showValue({ $error: { name: 'TypeError', message: EVIL } }), `TypeError: ${'\\x1b[2J\\x1b]0;pwned\\x07mallory\\n12:00:00 fake line\\u202e\\r\\x9b'}`)
  assert.equal(showValue([{ $error: { name: 'TypeError', message: 't' } }, 1]), '[ [TypeError: t], 1 ]')
  assert.equal(showValue(new Map([['k', { $error: { name: 'RangeError', message: 'r' } }]])), "Map(1) { 'k' => [RangeError: r] }")
  // The value is unchanged for code and for JSON.
  const v = readableErrors({ why: { $error: { name: 'Error', message: 'x' } } })
  assert.equal(v.why.$error.message, 'x')
  assert.equal(JSON.stringify(v), '{"why":{"$error":{"name":"Error","message":"x"}}}')
  assert.equal(inspect(v), '{ why: [Error: x] }')
  // Only the exact shape: a map with more keys is a plain object.
  assert.match(showValue({ $error: { name: 'E', message: 'm' }, other: 1 }), /other: 1/)
})

test('stackFrames drops the head even when the message spans lines, and escapes the frames', () => {
  const stack = 'Error: two\nlines\n    at form.js:1:7\n    at \x1b[2Jx'
  assert.equal(stackFrames(stack, 'Error', 'two\nlines'), '    at form.js:1:7\n    at \\x1b[2Jx')
  assert.equal(stackFrames('Other head\n    at a', 'Error', 'm'), '    at a')
  assert.equal(stackFrames(undefined, 'Error', 'm'), '')
})

const record = (over: Partial<TxnRecord>): TxnRecord => ({
  txn: 'n1.aa:8', client: 'n1.aa', clientName: 'me', seq: 8, kind: 'eval', summary: '1', mode: 'directed', state: 'input', queuedAt: 0, ...over
})

test('describeWait: held by the run ahead (with its time), running, or nothing once done', () => {
  const held = record({ waiting: 'session default, held by n1.aa:7', heldBy: 'n1.aa:7' })
  const holder = record({ txn: 'n1.aa:7', state: 'running', seconds: 3.21 })
  assert.equal(describeWait(held, holder, 1000), 'txn n1.aa:8 waiting 1.0 s: session default, held by n1.aa:7 (running 3.2 s)')
  assert.equal(describeWait(record({ state: 'running', seconds: 1.04 }), undefined, 1000), 'txn n1.aa:8 running for 1.0 s...')
  assert.equal(describeWait(record({ state: 'done' }), undefined, 1000), undefined)
  assert.equal(describeWait(record({ waiting: EVIL }), undefined, 1500), `txn n1.aa:8 waiting 1.5 s: ${'\\x1b[2J\\x1b]0;pwned\\x07mallory\\n12:00:00 fake line\\u202e\\r\\x9b'}`)
})

test('waitNotice asks the node once after the delay, and never once stopped', async () => {
  const asked: Array<string | number | undefined> = []
  const client = {
    status: async (_host: string, o: { id?: string | number } = {}) => {
      asked.push(o.id)
      return o.id === 'n1.aa:8' ? [record({ waiting: 'session s, held by n1.aa:7', heldBy: 'n1.aa:7' })] : [record({ txn: 'n1.aa:7', state: 'running', seconds: 2 })]
    }
  }
  const lines: string[] = []
  const stop = waitNotice(client as never, 'h', 'n1.aa:8', l => lines.push(l), 30)
  await new Promise(resolve => setTimeout(resolve, 150))
  stop()
  assert.deepEqual(asked, ['n1.aa:8', 'n1.aa:7'])
  assert.equal(lines.length, 1)
  assert.match(lines[0]!, /^txn n1\.aa:8 waiting \d\.\d s: session s, held by n1\.aa:7 \(running 2\.0 s\)$/)

  const none: string[] = []
  const stopEarly = waitNotice(client as never, 'h', 'n1.aa:8', l => none.push(l), 30)
  stopEarly()
  await new Promise(resolve => setTimeout(resolve, 100))
  assert.deepEqual(none, [])
})

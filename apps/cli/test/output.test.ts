import { test } from 'node:test'
import assert from 'node:assert/strict'
import { RemoteEvalError, type TxnRecord } from '@evalmesh/protocol'
import { errorText, recordRows, safeJson, show, showOutput, table, toJson } from '../src/output.js'

const EVIL = '\x1b[2J\n fake line\u202e'
const SHOWN = '\\x1b[2J\\n fake line\\u202e'

const record = (over: Partial<TxnRecord>): TxnRecord => ({
  txn: 'n1.aa:8', client: 'n1.aa', clientName: 'me', seq: 8, kind: 'eval', summary: '1', mode: 'directed', state: 'done', queuedAt: 0, ...over
})

function clean (text: string): void {
  assert.ok(!/[\x00-\x09\x0b-\x1f\x7f-\x9f\u202e]/.test(text), JSON.stringify(text))
  assert.ok(!text.split('\n').some(l => l.startsWith(' fake line')), JSON.stringify(text))
}

test('recordRows shows client names, forms, reasons and waits as visible escapes, one row each', () => {
  const text = recordRows([
    record({ clientName: EVIL, summary: EVIL, howStopped: 'aborted', reason: EVIL }),
    record({ txn: 'n1.aa:9', state: 'input', summary: 'x', waiting: `session ${EVIL}, held by n1.aa:8`, heldBy: 'n1.aa:8' })
  ])
  clean(text)
  assert.equal(text.split('\n').length, 3)
  assert.ok(text.includes(`aborted (${SHOWN})`), text)
  assert.ok(text.includes(`waiting: session ${SHOWN}, held by n1.aa:8`), text)
  // A long reason is cut, never inside an escape.
  const cut = recordRows([record({ howStopped: 'aborted', reason: 'x'.repeat(37) + '\x1b' + 'y'.repeat(20) })])
  assert.match(cut, /aborted \(x{37}…\)/)
})

test('table escapes every cell', () => {
  const t = table(['A', 'B'], [[EVIL, 'ok']])
  clean(t)
  assert.ok(t.includes(SHOWN))
})

test('errorText escapes the node, name, message and stack of a remote error', () => {
  const err = new RemoteEvalError({ code: 'EVAL_ERROR', wire: 501, name: 'Error', message: EVIL, stack: `Error: ${EVIL}\n    at form.js:1:1\x1b[2J`, data: { txn: 'n1.aa:8', node: 'evil\x1b[2J' } } as never)
  const text = errorText(err)
  clean(text)
  assert.match(text, /^error \(on evil\\x1b\[2J, txn n1\.aa:8\): Error: \\x1b\[2J\\n fake line\\u202e\n {4}at form\.js:1:1\\x1b\[2J$/)
})

test('show: Error results read "Error: e"; strings go to a pipe as they are and are escaped on a terminal', () => {
  assert.equal(show({ $error: { name: 'Error', message: 'e' } }, false), 'Error: e')
  assert.equal(show({ $error: { name: 'Error', message: EVIL } }, false), `Error: ${SHOWN}`)
  // A string is quoted as the REPL shows it; --raw prints it as it is.
  assert.equal(show('a', false), "'a'")
  assert.equal(show(EVIL, false, true), EVIL)
  // On a terminal: colour sequences only (SGR), the peer's escapes shown as text.
  clean(show(EVIL, true).replace(/\x1b\[\d+m/g, '').replace(/\n/g, ' '))
  assert.equal(showOutput('a\x1b[2J\nb\n', true), 'a\\x1b[2J\nb\n')
  assert.equal(showOutput('a\x1b[2J\n', false), 'a\x1b[2J\n')
})

test('JSON stays the same JSON value, with C1, bidi and separators written as \\u escapes', () => {
  const value = { s: 'a\x1b\x9b\u202e\u2028\u{e0041}z', ok: true }
  const json = toJson(value)
  assert.ok(!/[\x00-\x1f\x7f-\x9f\u202e\u2028]|\u{e0041}/u.test(json), json)
  assert.deepEqual(JSON.parse(json), value)
  assert.equal(safeJson('"\u202e"'), '"\\u202e"')
})

import { test } from 'node:test'
import assert from 'node:assert/strict'
import { parseRequest, parseTxn, formatTxn, EvalMeshError } from '../src/index.js'

const fails = (value: unknown, code: string, pattern: RegExp): void => {
  assert.throws(() => parseRequest(value), (err: EvalMeshError) => err.code === code && pattern.test(err.message))
}

test('a well-formed eval request parses with defaults', () => {
  const r = parseRequest({ kind: 'eval', id: 7, txn: 'abcd1234abcd1234.a1b2c3:1', form: '1+1' })
  assert.deepEqual(r, { kind: 'eval', id: 7, txn: 'abcd1234abcd1234.a1b2c3:1', form: '1+1', wait: true })
})

test('wrong shapes are refused with the field named', () => {
  fails([1, 2], 'BAD_MESSAGE', /CBOR map/)
  fails({ kind: 'eval', id: 1, txn: 'abcd1234abcd1234:1' }, 'BAD_MESSAGE', /"form" is missing/)
  fails({ kind: 'eval', id: 1, txn: 'nonsense', form: 'x' }, 'BAD_MESSAGE', /"txn"/)
  fails({ kind: 'eval', id: -1, txn: 'abcd1234abcd1234:1', form: 'x' }, 'BAD_MESSAGE', /"id"/)
  fails({ kind: 'eval', id: 1, txn: 'abcd1234abcd1234:1', form: 'x', limits: { timeoutMs: -5 } }, 'BAD_MESSAGE', /"limits"/)
  fails({ kind: 'status', id: 1, which: 'everything' }, 'BAD_MESSAGE', /"which"/)
  fails({ kind: 'launch-missiles', id: 1 }, 'UNKNOWN_KIND', /launch-missiles/)
})

test('txn ids format and parse', () => {
  assert.deepEqual(parseTxn(formatTxn({ client: 'abcd1234abcd1234.ff00aa', seq: 42 })), { client: 'abcd1234abcd1234.ff00aa', seq: 42 })
  assert.throws(() => parseTxn('x:y'), /not a transaction id/)
})

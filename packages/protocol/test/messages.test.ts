import { test } from 'node:test'
import assert from 'node:assert/strict'
import { parseRequest, parseTxn, formatTxn, EvalMeshError, retryOf, retryAfterMs, dataText, errorData, ERROR_CATALOGUE, RemoteEvalError, type ErrorCode } from '../src/index.js'

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
  fails({ kind: 'status', id: 1, which: 'everything' }, 'BAD_MESSAGE', /"which"/)
  fails({ kind: 'launch-missiles', id: 1 }, 'UNKNOWN_KIND', /launch-missiles/)
})

test('txn ids format and parse', () => {
  assert.deepEqual(parseTxn(formatTxn({ client: 'abcd1234abcd1234.ff00aa', seq: 42 })), { client: 'abcd1234abcd1234.ff00aa', seq: 42 })
  assert.throws(() => parseTxn('x:y'), /not a transaction id/)
})

const evalWith = (limits: unknown): unknown => ({ kind: 'eval', id: 1, txn: 'abcd1234abcd1234:1', form: 'x', limits })
const applyWith = (limits: unknown): unknown => ({ kind: 'apply', id: 1, txn: 'abcd1234abcd1234:1', fn: 'f', limits })

test('invalid limits are BAD_LIMITS naming the field (eval and apply)', () => {
  for (const make of [evalWith, applyWith]) {
    fails(make({ timeoutMs: -5 }), 'BAD_LIMITS', /"limits\.timeoutMs" must be a positive integer, got -5/)
    fails(make({ memoryMb: 0 }), 'BAD_LIMITS', /"limits\.memoryMb".*got 0/)
    fails(make({ resultBytes: 1.5 }), 'BAD_LIMITS', /"limits\.resultBytes".*got 1\.5/)
    fails(make({ outputBytes: '100' }), 'BAD_LIMITS', /"limits\.outputBytes".*got "100"/)
    fails(make({ timeoutMs: 2n ** 60n }), 'BAD_LIMITS', /"limits\.timeoutMs"/)
    fails(make([1]), 'BAD_LIMITS', /"limits" must be a map/)
    fails(make('fast'), 'BAD_LIMITS', /"limits" must be a map/)
  }
  try { parseRequest(evalWith({ memoryMb: -1 })) } catch (err) { assert.deepEqual((err as EvalMeshError).data, { field: 'limits.memoryMb' }) }
})

test('unknown keys inside limits are ignored (PROTOCOL.md §8)', () => {
  const r = parseRequest(evalWith({ timeoutMs: 500, cpuShares: 'lots', futureLimit: -1 }))
  assert.deepEqual((r as { limits: unknown }).limits, { timeoutMs: 500 })
  assert.deepEqual((parseRequest(applyWith({ somethingNew: true })) as { limits: unknown }).limits, {})
})

test('every code carries a retry rule; the accessors read the catalogue', () => {
  for (const [code, e] of Object.entries(ERROR_CATALOGUE)) {
    assert.ok(['same-txn', 'new-txn', 'never'].includes(e.retry), code)
  }
  assert.equal(retryOf('BUSY'), 'same-txn')
  assert.equal(retryOf(new EvalMeshError('QUOTA', 'too many sessions', { quota: 'sessions' })), 'new-txn')
  assert.equal(retryOf(new RemoteEvalError({ code: 'EVAL_ERROR', wire: 500, name: 'TypeError', message: 'x' })), 'never')
  assert.equal(retryOf({ code: 'TXN_CONFLICT' }), 'new-txn')
  assert.equal(retryOf('NO_SUCH_CODE'), 'never')
  assert.equal(retryOf(new Error('plain')), 'never')
  assert.equal(retryOf(undefined), 'never')
  assert.equal(retryAfterMs(new EvalMeshError('BUSY', 'busy', { retryAfterMs: 250 })), 250)
  assert.equal(retryAfterMs({ code: 'MEGATEST_BUSY', data: { wait: 2 } }), 2000)
  assert.equal(retryAfterMs(new EvalMeshError('BUSY', 'busy', { retryAfterMs: 'soon' })), undefined)
  assert.equal(retryAfterMs(new EvalMeshError('EVAL_ERROR', 'x', { retryAfterMs: 5 })), undefined)
  assert.equal(dataText(new EvalMeshError('FORBIDDEN', 'needs operator', { right: 'operator' }), 'right'), 'operator')
  const codes: ErrorCode[] = ['FORBIDDEN', 'QUOTA', 'RESULT_UNENCODABLE']
  assert.deepEqual(codes.map(c => ERROR_CATALOGUE[c].retry), ['never', 'new-txn', 'never'])
})

test('errorData types the data of a code and drops fields of the wrong type', () => {
  const busy = new EvalMeshError('BUSY', 'busy', { retryAfterMs: 40, txn: 'abcd1234abcd1234:1' })
  const d = errorData(busy, 'BUSY')
  assert.equal(d?.retryAfterMs, 40)
  assert.equal(d?.txn, 'abcd1234abcd1234:1')
  assert.equal(errorData(busy, 'QUOTA'), undefined)
  const remote = new RemoteEvalError({ code: 'QUOTA', wire: 304, name: 'Error', message: 'too many sessions', data: { quota: 'sessions' } })
  assert.equal(errorData(remote, 'QUOTA')?.quota, 'sessions')
  assert.equal(errorData({ code: 'FORBIDDEN', data: { right: 7 } }, 'FORBIDDEN')?.right, undefined)
  assert.deepEqual(errorData({ code: 'EVAL_ERROR' }, 'EVAL_ERROR'), {})
})

/**
 * What a strict decoder in another language sends and expects (issue 10 point 5),
 * written byte by byte so that no JavaScript encoder decides the encoding.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { decodeValue, encodeValue, parseRequest, EvalMeshError } from '../src/index.js'

/** Hex with spaces and newlines allowed. */
const hex = (s: string): Buffer => Buffer.from(s.replace(/\s+/g, ''), 'hex')
/** A CBOR text string header + bytes, for short ASCII text. */
const text = (s: string): string => (0x60 + s.length).toString(16) + Buffer.from(s).toString('hex')
const code = (fn: () => unknown): string => {
  try { fn() } catch (err) { return (err as EvalMeshError).code }
  return 'none'
}

test('8-byte integers (1b) decode as Numbers up to 2^53 - 1', () => {
  assert.equal(decodeValue(hex('1b 00 00 00 00 00 00 00 05')), 5)
  assert.equal(decodeValue(hex('1b 00 00 00 01 00 00 00 00')), 2 ** 32)
  assert.equal(decodeValue(hex('1b 00 1f ff ff ff ff ff ff')), Number.MAX_SAFE_INTEGER)
  assert.equal(decodeValue(hex('3b 00 00 00 01 00 00 00 00')), -(2 ** 32) - 1)
  assert.equal(decodeValue(hex('3b 00 1f ff ff ff ff ff fd')), -Number.MAX_SAFE_INTEGER + 1)
  assert.equal(decodeValue(hex('3b 00 1f ff ff ff ff ff fe')), -Number.MAX_SAFE_INTEGER)
})

test('8-byte integers beyond 2^53 - 1 decode as exact BigInts, also inside containers', () => {
  assert.equal(decodeValue(hex('1b 00 20 00 00 00 00 00 00')), 2n ** 53n)
  assert.equal(decodeValue(hex('1b ff ff ff ff ff ff ff ff')), 2n ** 64n - 1n)
  assert.equal(decodeValue(hex('3b 00 1f ff ff ff ff ff ff')), -(2n ** 53n))
  assert.equal(decodeValue(hex('3b ff ff ff ff ff ff ff ff')), -(2n ** 64n))
  // [2^60, 7, -2^63] and {"a": 2^64 - 1}: the rewrite keeps the neighbours in place.
  assert.deepEqual(decodeValue(hex('83 1b 10 00 00 00 00 00 00 00 07 3b 7f ff ff ff ff ff ff ff')), [2n ** 60n, 7, -(2n ** 63n)])
  assert.deepEqual(decodeValue(hex('a1 61 61 1b ff ff ff ff ff ff ff ff')), { a: 2n ** 64n - 1n })
})

test('an eval request whose id and limits are 8-byte integers parses', () => {
  // {"kind": "eval", "id": 2^32, "txn": "abcd1234abcd1234:1", "form": "1",
  //  "limits": {"timeoutMs": 2^33, "resultBytes": 5 (as 1b)}}
  const frame = hex('a5' +
    text('kind') + text('eval') +
    text('id') + '1b 00 00 00 01 00 00 00 00' +
    text('txn') + '72' + Buffer.from('abcd1234abcd1234:1').toString('hex') +
    text('form') + text('1') +
    text('limits') + 'a2' + text('timeoutMs') + '1b 00 00 00 02 00 00 00 00' + text('resultBytes') + '1b 00 00 00 00 00 00 00 05')
  assert.deepEqual(parseRequest(decodeValue(frame)), {
    kind: 'eval', id: 2 ** 32, txn: 'abcd1234abcd1234:1', form: '1', wait: true, limits: { timeoutMs: 2 ** 33, resultBytes: 5 }
  })
})

test('status limit, trace since and a bare abort seq accept 8-byte integers', () => {
  const status = hex('a3' + text('kind') + text('status') + text('id') + '01' + text('limit') + '1b 00 00 00 01 00 00 00 00')
  assert.deepEqual(parseRequest(decodeValue(status)), { kind: 'status', id: 1, limit: 2 ** 32 })
  const trace = hex('a3' + text('kind') + text('trace') + text('id') + '02' + text('since') + '1b 00 00 00 00 ff ff ff ff')
  assert.deepEqual(parseRequest(decodeValue(trace)), { kind: 'trace', id: 2, since: 2 ** 32 - 1 })
  // A seq of 15 digits, the most §3.1 allows.
  const abort = hex('a3' + text('kind') + text('abort') + text('id') + '03' + text('txn') + '1b 00 03 8d 7e a4 c6 7f ff')
  assert.deepEqual(parseRequest(decodeValue(abort)), { kind: 'abort', id: 3, txn: 999_999_999_999_999 })
})

test('a uint beyond 2^53 - 1 is BAD_MESSAGE naming the field, not a silent rounding', () => {
  const status = hex('a3' + text('kind') + text('status') + text('id') + '01' + text('limit') + '1b 00 20 00 00 00 00 00 01')
  assert.throws(() => parseRequest(decodeValue(status)), (e: EvalMeshError) => e.code === 'BAD_MESSAGE' && /"limit".*2\^53/.test(e.message))
})

test('evalmesh writes integers beyond 32 bits as 8-byte integers, not floats', () => {
  assert.equal(Buffer.from(encodeValue(2 ** 32)).toString('hex'), '1b0000000100000000')
  assert.equal(Buffer.from(encodeValue(1_700_000_000_123)).toString('hex'), '1b0000018bcfe5687b')
  assert.equal(Buffer.from(encodeValue(-(2 ** 40))).toString('hex'), '3b000000ffffffffff')
  // 32-bit integers keep their short forms; non-integers and unsafe integers stay floats.
  assert.equal(Buffer.from(encodeValue(0xffffffff)).toString('hex'), '1affffffff')
  assert.equal(Buffer.from(encodeValue(1.5)).toString('hex'), 'fb3ff8000000000000')
  assert.equal(Buffer.from(encodeValue(2 ** 60)).toString('hex').slice(0, 2), 'fb')
  assert.deepEqual(decodeValue(encodeValue({ ts: 1_700_000_000_123, n: [2 ** 40, -(2 ** 40)] })), { ts: 1_700_000_000_123, n: [2 ** 40, -(2 ** 40)] })
})

test('a BigInt is always a bignum (tag 2/3), so it comes back a BigInt', () => {
  assert.equal(Buffer.from(encodeValue(5n)).toString('hex'), 'c24105')
  assert.equal(Buffer.from(encodeValue(0n)).toString('hex'), 'c24100')
  assert.equal(Buffer.from(encodeValue(-1n)).toString('hex'), 'c34100')
  assert.equal(Buffer.from(encodeValue(2n ** 64n)).toString('hex'), 'c249010000000000000000')
  for (const n of [0n, 5n, -1n, -256n, 2n ** 53n, 2n ** 64n, -(2n ** 64n) - 1n, 3n ** 4000n, -(7n ** 3000n)]) {
    assert.equal(decodeValue(encodeValue(n)), n, String(n).slice(0, 30))
  }
  // A bignum with leading zero bytes, as other encoders may write it (RFC 8949 §3.4.3).
  assert.equal(decodeValue(hex('c2 43 00 00 05')), 5n)
  assert.equal(decodeValue(hex('c2 40')), 0n)
})

test('Error, RegExp and an Invalid Date travel as plain values, never tag 27 or NaN', () => {
  // {"$error": {"name": "TypeError", "message": "e"}}, map lengths in two bytes (b9 00 nn) as evalmesh writes them
  assert.equal(Buffer.from(encodeValue(new TypeError('e'))).toString('hex'),
    'b90001' + text('$error') + 'b90002' + text('name') + text('TypeError') + text('message') + text('e'))
  assert.deepEqual(decodeValue(encodeValue({ err: new RangeError('too far') })), { err: { $error: { name: 'RangeError', message: 'too far' } } })
  assert.equal(Buffer.from(encodeValue(/a+/g)).toString('hex'), '65' + Buffer.from('/a+/g').toString('hex'))
  assert.equal(Buffer.from(encodeValue(new Date(NaN))).toString('hex'), 'f6')
  // A valid Date is still tag 1 (epoch seconds).
  assert.equal(Buffer.from(encodeValue(new Date(1_000_000_000_000))).toString('hex'), 'c11a3b9aca00')
})

test('nothing evalmesh encodes uses a tag outside §1.3', () => {
  class Point { x = 1; y = 2n }
  function * gen (): Generator<number> { yield 1; yield 2 }
  const values: unknown[] = [
    new Error('e'), /x/i, new Date(NaN), new Date(0), new Map([[1n, new Set([new Error('in a set')])]]), new Set([/r/]),
    new Uint8Array(2), Buffer.from('ab'), new Uint8ClampedArray(2), new Uint16Array(2), new Uint32Array(2), new BigUint64Array(2),
    new Int8Array(2), new Int16Array(2), new Int32Array(2), new BigInt64Array(2), new Float32Array(2), new Float64Array(2),
    new DataView(new ArrayBuffer(4)), new ArrayBuffer(3), undefined, null, -0, NaN, Infinity, 2n ** 100n, -(2n ** 100n),
    new Point(), Object.create(null), new Number(3), new String('s'), new Boolean(false), gen(), [1, , 3], { a: { b: [new Error('deep')] } } // eslint-disable-line no-sparse-arrays
  ]
  for (const v of values) {
    const bytes = encodeValue(v)
    assert.doesNotThrow(() => decodeValue(bytes), `${Object.prototype.toString.call(v)} encodes as ${Buffer.from(bytes).toString('hex').slice(0, 40)}`)
  }
  assert.deepEqual(decodeValue(encodeValue(new Point())), { x: 1, y: 2n })
  assert.deepEqual(decodeValue(encodeValue([new Number(3), new String('s'), new Boolean(false)])), [3, 's', false])
  assert.deepEqual(decodeValue(encodeValue(gen())), [1, 2])
})

test('functions and symbols are NOT_CLONEABLE, naming where they are', () => {
  assert.throws(() => encodeValue({ a: [1, { f () {} }] }), (e: EvalMeshError) => e.code === 'NOT_CLONEABLE' && /value\.a\[1\]\.f: a function/.test(e.message))
  assert.throws(() => encodeValue(new Map([['k', Symbol('s')]])), (e: EvalMeshError) => e.code === 'NOT_CLONEABLE' && /Map entry 0/.test(e.message))
})

test('indefinite-length strings decode (RFC 8949 §3.2.3), chunks joined', () => {
  assert.equal(decodeValue(hex('7f 62 61 62 61 63 ff')), 'abc')
  assert.equal(decodeValue(hex('7f ff')), '')
  assert.deepEqual(decodeValue(hex('5f 42 01 02 41 03 ff')), Buffer.from([1, 2, 3]))
  // As a map key and value, beside an indefinite array and a wide integer.
  assert.deepEqual(decodeValue(hex('a2 7f 61 6b ff 9f 7f 61 76 ff ff 61 62 1b 00 20 00 00 00 00 00 00')), { k: ['v'], b: 2n ** 53n })
  // A long chunked text: the joined string needs a longer header than any chunk.
  const chunk = '78 20' + Buffer.alloc(32, 0x61).toString('hex')
  assert.equal(decodeValue(hex('7f' + chunk.repeat(3) + 'ff')), 'a'.repeat(96))
  // The chunk rules still hold: chunks of the other major type, or nested indefinite ones, are malformed.
  assert.equal(code(() => decodeValue(hex('7f 41 61 ff'))), 'MALFORMED_FRAME')
  assert.equal(code(() => decodeValue(hex('7f 7f 61 61 ff ff'))), 'MALFORMED_FRAME')
})

test('a request written with indefinite lengths throughout parses', () => {
  // {_ "kind": "ping", "id": 9} with the kind value as a chunked text
  const frame = hex('bf' + text('kind') + '7f 62 70 69 62 6e 67 ff' + text('id') + '09 ff')
  assert.deepEqual(parseRequest(decodeValue(frame)), { kind: 'ping', id: 9 })
})

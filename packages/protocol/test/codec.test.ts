import { test } from 'node:test'
import assert from 'node:assert/strict'
import { decodeValue, encodeValue, EvalMeshError, DEFAULT_DECODE_LIMITS } from '../src/index.js'

test('structured values round-trip through the codec', () => {
  const value = {
    map: new Map<unknown, unknown>([[1, 'one'], ['k', { nested: [1, 2] }]]),
    set: new Set([1, 'two']),
    date: new Date(1_700_000_000_123),
    big: 2n ** 70n,
    negBig: -(2n ** 65n),
    undef: undefined,
    bytes: new Uint8Array([1, 2, 3]),
    floats: new Float64Array([1.5, -2]),
    text: 'héllo',
    nil: null
  }
  assert.deepEqual(decodeValue(encodeValue(value)), value)
})

test('the envelope is plain CBOR that any decoder reads: a map with text keys', () => {
  const bytes = encodeValue({ kind: 'ping', id: 1 })
  // 0xa0..0xbb is a CBOR map; no tag (0xc0..0xdb) precedes it.
  assert.ok(bytes[0]! >= 0xa0 && bytes[0]! <= 0xbb, `first byte ${bytes[0]!.toString(16)}`)
})

const limits = { ...DEFAULT_DECODE_LIMITS, maxDepth: 16, maxStringBytes: 100, maxItems: 1000 }
const code = (fn: () => unknown): string => {
  try { fn() } catch (err) { return (err as EvalMeshError).code }
  return 'none'
}

test('nesting deeper than the limit is refused before decoding', () => {
  let deep: unknown = 1
  for (let i = 0; i < 40; i++) deep = [deep]
  assert.equal(code(() => decodeValue(encodeValue(deep), limits)), 'DEPTH_LIMIT')
  // 100,000 nested arrays would overflow a recursive decoder's stack.
  const hostile = Buffer.concat([Buffer.alloc(100_000, 0x81), Buffer.from([0x01])])
  assert.equal(code(() => decodeValue(hostile)), 'DEPTH_LIMIT')
})

test('a long string is refused by its header', () => {
  assert.equal(code(() => decodeValue(encodeValue('x'.repeat(101)), limits)), 'STRING_LIMIT')
  assert.equal(code(() => decodeValue(encodeValue('x'.repeat(100)), limits)), 'none')
})

test('too many items are refused', () => {
  assert.equal(code(() => decodeValue(encodeValue(new Array(2000).fill(0)), limits)), 'ITEM_LIMIT')
})

test('an array claiming more entries than the frame holds is malformed', () => {
  assert.equal(code(() => decodeValue(Buffer.from([0x9b, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0x01]))), 'MALFORMED_FRAME')
})

test('tags outside the allowed set are refused (records, shared refs, Error)', () => {
  assert.equal(code(() => decodeValue(Buffer.from([0xd8, 0x1c, 0x80]))), 'TAG_NOT_ALLOWED') // tag 28: shared value
  assert.equal(code(() => decodeValue(Buffer.from([0xd8, 0x1b, 0x82, 0x61, 0x45, 0x61, 0x6d]))), 'TAG_NOT_ALLOWED') // tag 27: Error
  assert.equal(code(() => decodeValue(Buffer.from([0xd9, 0xdf, 0xff, 0x80]))), 'TAG_NOT_ALLOWED') // 57343: cbor-x record
})

test('truncated input, trailing bytes and reserved headers are malformed', () => {
  const good = Buffer.from(encodeValue({ a: 'hello' }))
  assert.equal(code(() => decodeValue(good.subarray(0, good.length - 2))), 'MALFORMED_FRAME')
  assert.equal(code(() => decodeValue(Buffer.concat([good, Buffer.from([0])]))), 'MALFORMED_FRAME')
  assert.equal(code(() => decodeValue(Buffer.from([0x1c]))), 'MALFORMED_FRAME')
})

test('random bytes never escape as anything but an EvalMeshError', () => {
  for (let i = 0; i < 5000; i++) {
    const buf = Buffer.alloc(1 + Math.floor(Math.random() * 40))
    for (let j = 0; j < buf.length; j++) buf[j] = Math.floor(Math.random() * 256)
    try { decodeValue(buf) } catch (err) { assert.ok(err instanceof EvalMeshError, String(err)) }
  }
})

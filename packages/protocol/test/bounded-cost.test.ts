/**
 * No single frame or result may cost the node's main thread more than a bounded time
 * per byte (issue 11 point 2): bignums are bounded before decoding, BigInts before
 * encoding, and both conversions are linear.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { Tag } from 'cbor-x'
import { decodeValue, encodeValue, encodeMessage, encodeFrame, encodeResultValue, checkEncodable, EvalMeshError, MAX_BIGNUM_BYTES, DEFAULT_DECODE_LIMITS } from '../src/index.js'

/** A frame {"v": bignum} whose magnitude is `bytes` bytes of 0xff. */
function bignumFrame (bytes: number, tag: 0xc2 | 0xc3 = 0xc2): Buffer {
  const header = Buffer.alloc(5)
  header[0] = 0x5a // byte string, 4-byte length
  header.writeUInt32BE(bytes, 1)
  return Buffer.concat([Buffer.from([0xa1, 0x61, 0x76, tag]), header, Buffer.alloc(bytes, 0xff)])
}

const timed = <T>(fn: () => T): [T | EvalMeshError, number] => {
  const t = performance.now()
  try { return [fn(), performance.now() - t] } catch (err) { return [err as EvalMeshError, performance.now() - t] }
}

test('a 128 KiB bignum frame is refused from its header, fast, naming the limit', () => {
  for (const tag of [0xc2, 0xc3] as const) {
    const [err, ms] = timed(() => decodeValue(bignumFrame(128 * 1024, tag)))
    assert.ok(err instanceof EvalMeshError, 'refused')
    assert.equal(err.code, 'BAD_MESSAGE')
    assert.match(err.message, new RegExp(`bignum \\(tag ${tag - 0xc0}\\) of 131072 bytes exceeds the limit of ${MAX_BIGNUM_BYTES} bytes`))
    assert.ok(ms < 50, `took ${ms} ms`)
  }
})

test('a bignum at the limit decodes in linear time', () => {
  const [value, ms] = timed(() => decodeValue(bignumFrame(MAX_BIGNUM_BYTES)))
  assert.deepEqual(value, { v: (1n << BigInt(8 * MAX_BIGNUM_BYTES)) - 1n })
  assert.ok(ms < 50, `took ${ms} ms`)
  assert.ok(!(decodeValue(bignumFrame(MAX_BIGNUM_BYTES, 0xc3)) instanceof Error))
  // Many bignums at the limit in one frame: the cost per byte stays flat.
  const many = Buffer.concat([Buffer.from([0x99, 0x01, 0x00]), ...Array.from({ length: 256 }, () => bignumFrame(MAX_BIGNUM_BYTES).subarray(3))])
  const [all, manyMs] = timed(() => decodeValue(many) as bigint[])
  assert.equal((all as bigint[]).length, 256)
  assert.ok(manyMs < 500, `2 MiB of bignums took ${manyMs} ms`)
})

test('a bignum tag must hold a definite byte string', () => {
  const code = (b: number[]): string => { try { decodeValue(Buffer.from(b)); return 'none' } catch (e) { return (e as EvalMeshError).code } }
  assert.equal(code([0xc2, 0x01]), 'MALFORMED_FRAME') // an integer
  assert.equal(code([0xc2, 0x80]), 'MALFORMED_FRAME') // an array
  assert.equal(code([0xc2, 0x5f, 0x41, 0x01, 0xff]), 'MALFORMED_FRAME') // indefinite bytes
  assert.equal(code([0xc2]), 'MALFORMED_FRAME') // nothing at all
})

test('a huge BigInt is refused for the wire at once, and measured in linear time', () => {
  const huge = 1n << 1310720n // the 160 KiB result of the issue, which took cbor-x 5.2 s
  for (const send of [() => encodeFrame({ kind: 'reply', id: 1, ok: true, value: huge }), () => encodeResultValue(huge), () => encodeMessage([huge])]) {
    const [err, ms] = timed(send)
    assert.ok(err instanceof EvalMeshError)
    assert.equal(err.code, 'RESULT_UNENCODABLE')
    assert.match(err.message, /BigInt of more than 65536 bits exceeds the bignum limit of 8192 bytes/)
    assert.ok(ms < 50, `took ${ms} ms`)
  }
  assert.throws(() => encodeResultValue({ x: [-(1n << 70000n)] }), (e: EvalMeshError) => e.code === 'RESULT_UNENCODABLE' && /result\.x\[0\]/.test(e.message))
  // Without limits (sizing a value, not sending it) it is encoded, in linear time.
  const [bytes, ms] = timed(() => encodeValue([huge]))
  assert.ok(bytes instanceof Uint8Array && bytes.length > 160 * 1024)
  assert.ok(ms < 100, `took ${ms} ms`)
})

test('the largest BigInt allowed encodes in linear time', () => {
  const n = (1n << BigInt(8 * MAX_BIGNUM_BYTES)) - 1n
  const [bytes, ms] = timed(() => encodeValue(Array.from({ length: 256 }, () => n)))
  assert.ok(bytes instanceof Uint8Array)
  assert.ok(ms < 500, `2 MiB of BigInts took ${ms} ms`)
  assert.equal(decodeValue(encodeValue(n)), n)
  assert.equal(decodeValue(encodeValue(-n - 1n)), -n - 1n)
})

test('a result nested deeper than the reply envelope allows is refused before sending', () => {
  const nest = (n: number): unknown => { let v: unknown = 1; for (let i = 0; i < n; i++) v = [v]; return v }
  // The reply map and the outcome map take two levels of the receiver's 64.
  assert.doesNotThrow(() => encodeResultValue(nest(62)))
  assert.throws(() => encodeResultValue(nest(63)), (e: EvalMeshError) => e.code === 'RESULT_UNENCODABLE' && /nests deeper than 62 levels \(64 less 2 for the reply envelope\)/.test(e.message))
  // Maps and Sets nest two CBOR levels each (tag + container): checked on the bytes.
  let maps: unknown = 1
  for (let i = 0; i < 40; i++) maps = new Map([['k', maps]])
  assert.equal(checkEncodable(maps)?.code, 'RESULT_UNENCODABLE')
  // A value a million levels deep, or a cycle, fails as cleanly and quickly.
  assert.equal(checkEncodable(nest(1_000_000))?.code, 'RESULT_UNENCODABLE')
  const cycle: Record<string, unknown> = {}
  cycle.self = cycle
  assert.equal(checkEncodable(cycle)?.code, 'RESULT_UNENCODABLE')
  assert.equal(checkEncodable({ fine: [1, 'two', new Map([[3, new Date(0)]])] }), null)
  assert.equal(checkEncodable(() => 1)?.code, 'NOT_CLONEABLE')
  // A receiver with a smaller maxDepth is honoured.
  assert.equal(checkEncodable(nest(10), { maxDepth: 8 })?.code, 'RESULT_UNENCODABLE')
  assert.equal(encodeResultValue('x'.repeat(10)).length, 11)
  assert.equal(DEFAULT_DECODE_LIMITS.maxDepth, 64)
})

test('an encoded result is what a receiver decodes, inside a reply envelope', () => {
  const value = { n: 2 ** 40, big: 3n ** 100n, when: new Date(5000), err: new Error('boom'), re: /x+/m }
  const bytes = encodeResultValue(value)
  assert.deepEqual(decodeValue(bytes), { n: 2 ** 40, big: 3n ** 100n, when: new Date(5000), err: { $error: { name: 'Error', message: 'boom' } }, re: '/x+/m' })
  assert.deepEqual(decodeValue(encodeValue({ kind: 'reply', id: 1, ok: true, value: { value } })), { kind: 'reply', id: 1, ok: true, value: { value: decodeValue(bytes) } })
})

test('the encoder refuses exactly what the receiver would refuse: depth and item counts agree', () => {
  const values: unknown[] = [
    1, 'text', [], {}, [1, [2, [3]]], { a: { b: { c: [] } } }, new Map(), new Map([[1, new Map([[2, 'x']])]]), new Set([[1], { a: 2 }]),
    new Date(0), new Date(NaN), 5n, [2n ** 64n, -3n], 2 ** 40, new Uint8Array(3), Buffer.from('ab'), new Float64Array(2), new DataView(new ArrayBuffer(2)),
    new Error('e'), [new RangeError('r')], /re/g, new Number(4), { s: new Set(), m: new Map([[new Map(), []]]) }, [undefined, null, true],
    new Tag([1, [2]], 258), [new Tag('2020-01-01T00:00:00Z', 0)]
  ]
  const smallest = (ok: (n: number) => boolean): number => { let n = 0; while (!ok(n)) n++; return n }
  const passes = (fn: () => unknown): boolean => { try { fn(); return true } catch { return false } }
  for (const v of values) {
    const bytes = encodeValue(v)
    const label = Buffer.from(bytes).toString('hex').slice(0, 40)
    const decodeDepth = smallest(d => passes(() => decodeValue(bytes, { ...DEFAULT_DECODE_LIMITS, maxDepth: d })))
    const encodeDepth = smallest(d => passes(() => encodeValue(v, { ...DEFAULT_DECODE_LIMITS, maxDepth: d })))
    assert.equal(encodeDepth, decodeDepth, `depth of ${label}`)
    const decodeItems = smallest(n => passes(() => decodeValue(bytes, { ...DEFAULT_DECODE_LIMITS, maxItems: n })))
    const encodeItems = smallest(n => passes(() => encodeValue(v, { ...DEFAULT_DECODE_LIMITS, maxItems: n })))
    assert.equal(encodeItems, decodeItems, `items of ${label}`)
  }
})

test('a frame no receiver would take is never produced: too deep, too many items, too long', () => {
  let deep: unknown = 1
  for (let i = 0; i < 64; i++) deep = [deep]
  assert.throws(() => encodeFrame({ deep }), (e: EvalMeshError) => e.code === 'RESULT_UNENCODABLE' && /message cannot be encoded at message\.deep\[0\].*nests deeper than 64 levels/.test(e.message))
  // Measuring it (no limits) still works, as it did.
  assert.ok(encodeValue({ deep }).length > 64)
  const tight = { ...DEFAULT_DECODE_LIMITS, maxItems: 100, maxStringBytes: 10, maxFrameBytes: 50 }
  assert.throws(() => encodeValue(new Array(100).fill(0), tight), (e: EvalMeshError) => e.code === 'RESULT_UNENCODABLE' && /more than 100 data items/.test(e.message))
  assert.throws(() => encodeValue({ s: 'x'.repeat(11) }, tight), (e: EvalMeshError) => e.code === 'RESULT_UNENCODABLE' && /value\.s: a string of 11 bytes/.test(e.message))
  assert.throws(() => encodeValue({ ['k'.repeat(11)]: 1 }, tight), (e: EvalMeshError) => /a string of 11 bytes/.test(e.message))
  assert.throws(() => encodeValue(Buffer.alloc(11), tight), (e: EvalMeshError) => /a byte string of 11 bytes/.test(e.message))
  assert.throws(() => encodeValue(['123456789', '123456789', '123456789', '123456789', '123456789', '123456789'], tight), (e: EvalMeshError) => /over the frame limit of 50/.test(e.message))
  assert.throws(() => encodeValue([new Tag('x', 27)]), (e: EvalMeshError) => e.code === 'NOT_CLONEABLE' && /value\[0\]: CBOR tag 27 is outside the allowed set/.test(e.message))
  assert.doesNotThrow(() => encodeValue('é'.repeat(5), tight)) // 10 bytes of UTF-8
  assert.throws(() => encodeValue('é'.repeat(6), tight), /12 bytes/)
})

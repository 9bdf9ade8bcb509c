import { test } from 'node:test'
import assert from 'node:assert/strict'
import { FrameDecoder, encodeFrame, decodeValue, EvalMeshError } from '../src/index.js'

const messages = [{ kind: 'ping', id: 1 }, { kind: 'eval', id: 2, form: 'x'.repeat(5000) }, { kind: 'describe', id: 3 }]
const stream = Buffer.concat(messages.map(m => encodeFrame(m)))

test('frames survive being fed one byte at a time', () => {
  const d = new FrameDecoder()
  const out: unknown[] = []
  for (let i = 0; i < stream.length; i++) out.push(...d.push(stream.subarray(i, i + 1)).map(f => decodeValue(f)))
  assert.deepEqual(out, messages)
  assert.equal(d.buffered, 0)
})

test('frames survive random splits', () => {
  for (let round = 0; round < 50; round++) {
    const d = new FrameDecoder()
    const out: unknown[] = []
    let pos = 0
    while (pos < stream.length) {
      const n = 1 + Math.floor(Math.random() * 700)
      out.push(...d.push(stream.subarray(pos, pos + n)).map(f => decodeValue(f)))
      pos += n
    }
    assert.deepEqual(out, messages)
  }
})

test('an oversized length prefix is refused from the header alone', () => {
  const d = new FrameDecoder(1024)
  const header = Buffer.alloc(4)
  header.writeUInt32BE(0xfffffff0, 0)
  assert.throws(() => d.push(header), (err: EvalMeshError) => err.code === 'FRAME_TOO_LARGE' && /4294967280 bytes/.test(err.message))
})

test('a zero length prefix is malformed', () => {
  assert.throws(() => new FrameDecoder().push(Buffer.alloc(4)), (err: EvalMeshError) => err.code === 'MALFORMED_FRAME')
})

/**
 * docs/PROTOCOL.md must stay exact: its error table matches the catalogue in both
 * directions, and its worked example is byte for byte what the code produces.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { createHash, createHmac, createPrivateKey, createPublicKey, diffieHellman, hkdfSync } from 'node:crypto'
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { pathToFileURL } from 'node:url'
import { ERROR_CATALOGUE, FrameDecoder, decodeValue, HANDSHAKE_LABEL_SERVER, HANDSHAKE_LABEL_CLIENT } from '@evalmesh/protocol'
import { verifySignature } from '@evalmesh/trust'
import { transcript } from '@evalmesh/transport'
import { ROOT } from './support/node.js'

const doc = readFileSync(join(ROOT, 'docs', 'PROTOCOL.md'), 'utf8')

test('the error table in PROTOCOL.md lists exactly the catalogue, retry rules and data fields included', () => {
  const section = doc.slice(doc.indexOf('## 6. Error codes'), doc.indexOf('## 7.'))
  const rows = [...section.matchAll(/^\| (\d+) \| `([A-Z_]+)` \| ([a-z-]+) \| ([^|]+) \| (.+) \|$/gm)]
    .map(m => [m[2], Number(m[1]), m[3], m[4]!.trim(), m[5]])
  const catalogue = Object.entries(ERROR_CATALOGUE).map(([code, e]) => {
    const data = 'data' in e ? Object.keys(e.data) : []
    return [code, e.wire, e.retry, data.length === 0 ? '–' : data.map(d => `\`${d}\``).join(', '), e.message]
  })
  assert.deepEqual(rows, catalogue)
  // Every back-off hint is one of the code's data fields.
  for (const [code, e] of Object.entries(ERROR_CATALOGUE)) {
    if ('hint' in e) assert.ok('data' in e && (e.data as Record<string, string>)[e.hint.field] === 'number', code)
  }
  const wires = catalogue.map(c => c[1])
  assert.equal(new Set(wires).size, wires.length, 'wire codes are unique')
})

test('every code the document mentions exists', () => {
  for (const m of doc.matchAll(/`([A-Z][A-Z_]{3,})`/g)) {
    if (['UNKNOWN_KIND', 'MALFORMED_FRAME'].includes(m[1]!) || Object.hasOwn(ERROR_CATALOGUE, m[1]!)) continue
    assert.fail(`PROTOCOL.md mentions ${m[1]}, which is not in the catalogue`)
  }
})

test('the worked example matches the code byte for byte, and its signatures verify', async () => {
  const section = doc.slice(doc.indexOf('## 7. A worked example'), doc.indexOf('### 7.1'))
  const blocks = [...section.matchAll(/```\n([CS]->[SC]) (\w+) \((\d+) bytes\)\n([0-9a-f \n]+)```/g)]
  const example = await import(pathToFileURL(join(ROOT, 'scripts', 'protocol-example.mjs')).href) as {
    exchange: Array<[string, Record<string, unknown>]>
  }
  const { encodeFrame } = await import('@evalmesh/protocol')
  assert.equal(blocks.length, example.exchange.length)
  const decoded: Array<Record<string, unknown>> = []
  blocks.forEach((b, i) => {
    const bytes = Buffer.from(b[4]!.replace(/\s+/g, ''), 'hex')
    assert.equal(bytes.length, Number(b[3]), `frame ${i} length`)
    assert.deepEqual(bytes, encodeFrame(example.exchange[i]![1]), `frame ${i} (${b[2]}) differs from scripts/protocol-example.mjs`)
    const [payload] = new FrameDecoder().push(bytes)
    decoded.push(decodeValue(payload!) as Record<string, unknown>)
  })
  const [ch, sh, auth] = decoded as [Record<string, Uint8Array>, Record<string, Uint8Array>, Record<string, Uint8Array>]
  assert.ok(verifySignature(sh.key!, transcript(HANDSHAKE_LABEL_SERVER, ch.nonce!, sh.nonce!, ch.key!, sh.key!), sh.sig!))
  assert.ok(verifySignature(ch.key!, transcript(HANDSHAKE_LABEL_CLIENT, ch.nonce!, sh.nonce!, ch.key!, sh.key!), auth.sig!))
})

test('the frame-integrity example (§7.1) matches the code, and its keys and tags follow from §2.4 alone', async () => {
  const section = doc.slice(doc.indexOf('### 7.1'), doc.indexOf('## 8.'))
  const blocks = [...section.matchAll(/```\n([CS]->[SC]) (\w+) \((\d+) bytes\)\n([0-9a-f \n]+)```/g)]
  const example = await import(pathToFileURL(join(ROOT, 'scripts', 'protocol-example.mjs')).href) as { integrityFrames: () => Buffer[] }
  const expected = example.integrityFrames()
  assert.equal(blocks.length, expected.length)
  const frames = blocks.map((b, i) => {
    const bytes = Buffer.from(b[4]!.replace(/\s+/g, ''), 'hex')
    assert.equal(bytes.length, Number(b[3]), `frame ${i} length`)
    assert.deepEqual(bytes, expected[i], `frame ${i} (${b[2]}) differs from scripts/protocol-example.mjs`)
    return bytes
  })
  // The stated values, recomputed here from the text of §2.4 with node:crypto only.
  const value = (name: string): Buffer => Buffer.from(new RegExp(`^${name} +([0-9a-f]{64})$`, 'm').exec(section)![1]!, 'hex')
  const x25519 = (seed: number): ReturnType<typeof createPrivateKey> =>
    createPrivateKey({ key: Buffer.concat([Buffer.from('302e020100300506032b656e04220420', 'hex'), Buffer.alloc(32, seed)]), format: 'der', type: 'pkcs8' })
  const rawPublic = (k: ReturnType<typeof createPrivateKey>): Buffer => createPublicKey(k).export({ format: 'der', type: 'spki' }).subarray(-32)
  const [ch, sh, auth] = frames.slice(0, 3).map(f => decodeValue(new FrameDecoder().push(f)[0]!) as Record<string, Uint8Array>) as [Record<string, Uint8Array>, Record<string, Uint8Array>, Record<string, Uint8Array>]
  assert.deepEqual(Buffer.from(ch.kx!), rawPublic(x25519(3)))
  assert.deepEqual(Buffer.from(sh.kx!), rawPublic(x25519(4)))
  assert.deepEqual(value('client kx'), Buffer.from(ch.kx!))
  assert.deepEqual(value('server kx'), Buffer.from(sh.kx!))
  const shared = diffieHellman({ privateKey: x25519(3), publicKey: createPublicKey(x25519(4)) })
  assert.deepEqual(value('shared'), shared)
  const salt = createHash('sha256').update(Buffer.concat([ch.nonce!, sh.nonce!, ch.key!, sh.key!, ch.kx!, sh.kx!])).digest()
  assert.deepEqual(value('salt'), salt)
  const c2s = Buffer.from(hkdfSync('sha256', shared, salt, 'evalmesh/1 c2s', 32))
  const s2c = Buffer.from(hkdfSync('sha256', shared, salt, 'evalmesh/1 s2c', 32))
  assert.deepEqual(value('c2s'), c2s)
  assert.deepEqual(value('s2c'), s2c)
  const kx = { client: ch.kx!, server: sh.kx! }
  assert.ok(verifySignature(sh.key!, transcript(HANDSHAKE_LABEL_SERVER, ch.nonce!, sh.nonce!, ch.key!, sh.key!, kx), sh.sig!))
  assert.ok(verifySignature(ch.key!, transcript(HANDSHAKE_LABEL_CLIENT, ch.nonce!, sh.nonce!, ch.key!, sh.key!, kx), auth.sig!))
  // welcome (server 0), eval (client 0), reply (server 1): frame || HMAC(key, seq || frame).
  const seq = (n: number): Buffer => { const b = Buffer.alloc(8); b.writeBigUInt64BE(BigInt(n)); return b }
  for (const [i, key, n] of [[3, s2c, 0], [4, c2s, 0], [5, s2c, 1]] as const) {
    const f = frames[i]!
    const body = f.subarray(0, f.length - 32)
    assert.equal(body.readUInt32BE(0), body.length - 4, `frame ${i}: the length counts the payload only`)
    assert.deepEqual(f.subarray(-32), createHmac('sha256', key).update(seq(n)).update(body).digest(), `frame ${i} tag`)
  }
})

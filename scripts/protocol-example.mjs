#!/usr/bin/env node
// Prints the worked example of docs/PROTOCOL.md §7: one full exchange (handshake,
// an eval request, its reply) with fixed keys and nonces, as hex frames. A test
// checks that the document's hex decodes and verifies exactly as printed here.
import { createPrivateKey } from 'node:crypto'
import { encodeFrame, HANDSHAKE_LABEL_CLIENT, HANDSHAKE_LABEL_SERVER, DEFAULT_DECODE_LIMITS } from '../packages/protocol/dist/src/index.js'
import { identityFromKey } from '../packages/trust/dist/src/index.js'
import { transcript } from '../packages/transport/dist/src/index.js'

const keyFromSeed = (byte) => createPrivateKey({
  key: Buffer.concat([Buffer.from('302e020100300506032b657004220420', 'hex'), Buffer.alloc(32, byte)]),
  format: 'der', type: 'pkcs8'
})
export const client = identityFromKey(keyFromSeed(1), 'alice')
export const server = identityFromKey(keyFromSeed(2), 'plaza')
export const clientNonce = Buffer.alloc(32, 0xaa)
export const serverNonce = Buffer.alloc(32, 0xbb)

const limits = { timeoutMs: 30000, memoryMb: 128, resultBytes: 16777216, outputBytes: 65536, maxFrameBytes: DEFAULT_DECODE_LIMITS.maxFrameBytes, maxDepth: 64, maxStringBytes: DEFAULT_DECODE_LIMITS.maxStringBytes, concurrency: 8, queueLength: 1024 }
const txn = `${client.id}.01:55`
export const exchange = [
  ['client', { kind: 'hello', versions: [1], role: 'client', id: client.id, name: client.name, key: Buffer.from(client.publicKey), nonce: clientNonce }],
  ['server', { kind: 'hello', version: 1, role: 'server', id: server.id, name: server.name, key: Buffer.from(server.publicKey), nonce: serverNonce, sig: Buffer.from(server.sign(transcript(HANDSHAKE_LABEL_SERVER, clientNonce, serverNonce, client.publicKey, server.publicKey))) }],
  ['client', { kind: 'auth', sig: Buffer.from(client.sign(transcript(HANDSHAKE_LABEL_CLIENT, clientNonce, serverNonce, client.publicKey, server.publicKey))) }],
  ['server', { kind: 'welcome', peer: client.id, limits }],
  ['client', { kind: 'eval', id: 1, txn, form: '1+1', wait: true }],
  ['server', { kind: 'reply', id: 1, ok: true, value: { txn, node: 'plaza', state: 'done', value: 2, output: '', outputTruncated: false, seconds: 0.25 } }]
]

export function hexLines (buf, width = 32) {
  const hex = buf.toString('hex').replace(/(..)/g, '$1 ').trim().split(' ')
  const out = []
  for (let i = 0; i < hex.length; i += width) out.push(hex.slice(i, i + width).join(' '))
  return out
}

if (import.meta.url === `file://${process.argv[1]}`) {
  for (const [from, msg] of exchange) {
    const frame = encodeFrame(msg)
    console.log(`${from === 'client' ? 'C->S' : 'S->C'} ${msg.kind} (${frame.length} bytes)`)
    console.log(hexLines(frame).join('\n'))
    console.log()
  }
}

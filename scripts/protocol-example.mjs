#!/usr/bin/env node
// Prints the worked example of docs/PROTOCOL.md §7: one full exchange (handshake,
// an eval request, its reply) with fixed keys and nonces, as hex frames. A test
// checks that the document's hex decodes and verifies exactly as printed here.
import { createPrivateKey } from 'node:crypto'
import { encodeFrame, HANDSHAKE_LABEL_CLIENT, HANDSHAKE_LABEL_SERVER, DEFAULT_DECODE_LIMITS } from '../packages/protocol/dist/src/index.js'
import { identityFromKey } from '../packages/trust/dist/src/index.js'
import { transcript, ephemeralKey, deriveDirectionKeys, FrameMac } from '../packages/transport/dist/src/index.js'

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

// §7.1: the same exchange with frame integrity (§2.4). The ephemeral X25519 keys are made
// from fixed seeds too (client: 32 bytes of 03, server: 32 bytes of 04).
export const clientEph = ephemeralKey(Buffer.alloc(32, 3))
export const serverEph = ephemeralKey(Buffer.alloc(32, 4))
const kx = { client: clientEph.publicKey, server: serverEph.publicKey }
export const keys = deriveDirectionKeys(clientEph.privateKey, serverEph.publicKey, {
  clientNonce, serverNonce, clientKey: client.publicKey, serverKey: server.publicKey, clientKx: kx.client, serverKx: kx.server
})
const [, , , welcome, evalRequest, reply] = exchange
export const integrityExchange = [
  ['client', { ...exchange[0][1], kx: kx.client }],
  ['server', { ...exchange[1][1], sig: Buffer.from(server.sign(transcript(HANDSHAKE_LABEL_SERVER, clientNonce, serverNonce, client.publicKey, server.publicKey, kx))), kx: kx.server }],
  ['client', { kind: 'auth', sig: Buffer.from(client.sign(transcript(HANDSHAKE_LABEL_CLIENT, clientNonce, serverNonce, client.publicKey, server.publicKey, kx))) }],
  welcome, evalRequest, reply
]

/** The frames of integrityExchange as sent: each after the handshake's plain ones followed by its tag. */
export function integrityFrames () {
  const macs = { client: new FrameMac(keys.clientToServer), server: new FrameMac(keys.serverToClient) }
  const plain = { client: 2, server: 1 }
  const count = { client: 0, server: 0 }
  return integrityExchange.map(([from, msg]) => {
    const frame = encodeFrame(msg)
    return count[from]++ < plain[from] ? frame : Buffer.concat([frame, macs[from].tag(frame)])
  })
}

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
  if (process.argv.includes('--integrity')) {
    console.log('--- with frame integrity (§7.1) ---\n')
    console.log(`client kx ${clientEph.publicKey.toString('hex')}\nserver kx ${serverEph.publicKey.toString('hex')}`)
    console.log(`c2s key   ${keys.clientToServer.toString('hex')}\ns2c key   ${keys.serverToClient.toString('hex')}\n`)
    const frames = integrityFrames()
    integrityExchange.forEach(([from, msg], i) => {
      console.log(`${from === 'client' ? 'C->S' : 'S->C'} ${msg.kind} (${frames[i].length} bytes)`)
      console.log(hexLines(frames[i]).join('\n'))
      console.log()
    })
  }
}

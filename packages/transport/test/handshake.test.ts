import { test } from 'node:test'
import assert from 'node:assert/strict'
import { mkdtempSync, writeFileSync, statSync } from 'node:fs'
import { connect } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { encodeFrame, DEFAULT_DECODE_LIMITS, type NodeLimits, EvalMeshError } from '@evalmesh/protocol'
import { TrustStore, loadIdentity, ephemeralIdentity, trustLine, createMeshKey, type Identity } from '@evalmesh/trust'
import { ClientConnection, Listener, type ServerConnection } from '../src/index.js'

const limits: NodeLimits = { timeoutMs: 1000, memoryMb: 32, resultBytes: 1e6, outputBytes: 1e4, maxFrameBytes: DEFAULT_DECODE_LIMITS.maxFrameBytes, maxDepth: 64, maxStringBytes: 1e6, concurrency: 4, queueLength: 4 }
const tmp = (): string => mkdtempSync(join(tmpdir(), 'evalmesh-transport-'))

async function echoServer (stateDir: string, identity: Identity): Promise<Listener> {
  const listener = await Listener.listen({ host: '127.0.0.1', port: 0, identity, trust: new TrustStore(stateDir, identity), limits })
  listener.on('connection', (conn: ServerConnection) => {
    conn.on('request', (req) => conn.reply(req.id, { echo: req.kind, peer: conn.peer.name, self: conn.peer.self, by: conn.peer.trustedBy }))
  })
  return listener
}

test('a client with the node\'s own key is trusted as self; key files are owner-only', async () => {
  const dir = tmp()
  const id = loadIdentity(dir, { create: true, name: 'alpha' })
  assert.equal(statSync(join(dir, 'node.key')).mode & 0o777, 0o600)
  assert.equal(statSync(dir).mode & 0o777, 0o700)
  const server = await echoServer(dir, id)
  const clientId = loadIdentity(dir) // the same user, same machine: finds the key
  const conn = await ClientConnection.open({ host: '127.0.0.1', port: server.address.port, identity: clientId, trust: new TrustStore(dir, clientId) })
  assert.deepEqual(await conn.request({ kind: 'ping' }), { echo: 'ping', peer: 'alpha', self: true, by: 'self' })
  conn.close()
  await server.close()
})

test('an untrusted peer is refused with a clear error, and so is an untrusted server', async () => {
  const serverDir = tmp()
  const serverId = loadIdentity(serverDir, { create: true, name: 'srv' })
  const server = await echoServer(serverDir, serverId)
  const strangerDir = tmp()
  const stranger = loadIdentity(strangerDir, { create: true, name: 'stranger' })
  // The stranger trusts the server, but the server does not trust the stranger.
  writeFileSync(join(strangerDir, 'trusted-keys'), trustLine(serverId) + '\n')
  await assert.rejects(
    ClientConnection.open({ host: '127.0.0.1', port: server.address.port, identity: stranger, trust: new TrustStore(strangerDir, stranger) }),
    (err: EvalMeshError) => err.code === 'UNTRUSTED_PEER' && /does not trust stranger/.test(err.message)
  )
  // The reverse: the client does not trust the server.
  const otherDir = tmp()
  const other = loadIdentity(otherDir, { create: true, name: 'other' })
  writeFileSync(join(serverDir, 'trusted-keys'), trustLine(other) + '\n')
  await assert.rejects(
    ClientConnection.open({ host: '127.0.0.1', port: server.address.port, identity: other, trust: new TrustStore(otherDir, other) }),
    (err: EvalMeshError) => err.code === 'UNTRUSTED_PEER' && /does not trust node srv/.test(err.message)
  )
  // Once trusted both ways (the file is re-read on change), the same peer gets in.
  writeFileSync(join(otherDir, 'trusted-keys'), trustLine(serverId) + '\n')
  const conn = await ClientConnection.open({ host: '127.0.0.1', port: server.address.port, identity: other, trust: new TrustStore(otherDir, other) })
  assert.equal((await conn.request({ kind: 'ping' }) as unknown as { by: string }).by, 'key')
  conn.close()
  await server.close()
})

test('a shared mesh key makes nodes trust each other', async () => {
  const a = tmp()
  const b = tmp()
  const key = createMeshKey(a)
  writeFileSync(join(b, 'mesh.key'), key + '\n')
  const ida = loadIdentity(a, { create: true, name: 'a' })
  const idb = loadIdentity(b, { create: true, name: 'b' })
  const server = await echoServer(a, ida)
  const conn = await ClientConnection.open({ host: '127.0.0.1', port: server.address.port, identity: idb, trust: new TrustStore(b, idb) })
  assert.equal((await conn.request({ kind: 'ping' }) as unknown as { by: string }).by, 'mesh')
  conn.close()
  await server.close()
})

test('a peer expected to be one node but holding another key is caught', async () => {
  const dir = tmp()
  const id = loadIdentity(dir, { create: true })
  const server = await echoServer(dir, id)
  await assert.rejects(
    ClientConnection.open({ host: '127.0.0.1', port: server.address.port, identity: id, trust: new TrustStore(dir, id), expectId: ephemeralIdentity().id }),
    (err: EvalMeshError) => err.code === 'BAD_SIGNATURE' && /expected node/.test(err.message)
  )
  await server.close()
})

async function rawExchange (port: number, bytes: Buffer): Promise<Buffer> {
  return await new Promise((resolve) => {
    const s = connect({ host: '127.0.0.1', port })
    const chunks: Buffer[] = []
    s.on('data', (c) => chunks.push(c))
    s.on('close', () => resolve(Buffer.concat(chunks)))
    s.on('error', () => {})
    s.write(bytes)
    setTimeout(() => s.destroy(), 3000).unref()
  })
}

test('garbage before the handshake gets an error frame and a close; the listener keeps serving', async () => {
  const dir = tmp()
  const id = loadIdentity(dir, { create: true })
  const server = await echoServer(dir, id)
  const port = server.address.port
  const huge = Buffer.alloc(4); huge.writeUInt32BE(1 << 30, 0)
  const replies = await Promise.all([
    rawExchange(port, Buffer.from('GET / HTTP/1.1\r\n\r\n')), // a length prefix of ~1.2 GB
    rawExchange(port, huge),
    rawExchange(port, Buffer.concat([Buffer.from([0, 0, 0, 3]), Buffer.from([0xff, 0xff, 0xff])])),
    rawExchange(port, encodeFrame({ kind: 'auth', sig: new Uint8Array(64) })),
    rawExchange(port, encodeFrame([1, 2, 3]))
  ])
  for (const r of replies) assert.ok(r.length > 4, 'each bad peer is told why before the close')
  const conn = await ClientConnection.open({ host: '127.0.0.1', port, identity: id, trust: new TrustStore(dir, id) })
  assert.equal((await conn.request({ kind: 'ping' }) as unknown as { echo: string }).echo, 'ping')
  conn.close()
  await server.close()
})

test('a connection lost while waiting rejects the pending request with LOST at once', async () => {
  const dir = tmp()
  const id = loadIdentity(dir, { create: true })
  const listener = await Listener.listen({ host: '127.0.0.1', port: 0, identity: id, trust: new TrustStore(dir, id), limits })
  // This server never answers; it drops the connection instead.
  listener.on('connection', (conn: ServerConnection) => conn.on('request', () => setTimeout(() => conn.close(), 50)))
  const conn = await ClientConnection.open({ host: '127.0.0.1', port: listener.address.port, identity: id, trust: new TrustStore(dir, id) })
  await assert.rejects(conn.request({ kind: 'ping' }), (err: EvalMeshError) => err.code === 'LOST')
  await listener.close()
})

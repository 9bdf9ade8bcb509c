import { test } from 'node:test'
import assert from 'node:assert/strict'
import { mkdtempSync, readFileSync } from 'node:fs'
import { connect, type Socket } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { DEFAULT_DECODE_LIMITS, type NodeLimits } from '@evalmesh/protocol'
import { KEY_FILE, TrustStore, loadIdentity, selfCertificate } from '@evalmesh/trust'
import { ClientConnection, Listener, type ListenOptions, type ServerConnection } from '../src/index.js'

const limits: NodeLimits = { timeoutMs: 1000, memoryMb: 32, resultBytes: 1e6, outputBytes: 1e4, maxFrameBytes: DEFAULT_DECODE_LIMITS.maxFrameBytes, maxDepth: 64, maxStringBytes: 1e6, concurrency: 4, queueLength: 4 }

/** A listener answering pings; with `tls: true` it serves TLS over a certificate of its own key. */
async function node (opts: Partial<Omit<ListenOptions, 'tls'>> & { tls?: boolean } = {}): Promise<{ listener: Listener, open: () => Promise<ClientConnection> }> {
  const dir = mkdtempSync(join(tmpdir(), 'evalmesh-flood-'))
  const id = loadIdentity(dir, { create: true, name: 'target' })
  const trust = new TrustStore(dir, id)
  const { tls, ...rest } = opts
  const listener = await Listener.listen({
    host: '127.0.0.1', port: 0, identity: id, trust, limits, ...rest,
    ...(tls === true ? { tls: { cert: selfCertificate(id), key: readFileSync(join(dir, KEY_FILE)) } } : {})
  })
  listener.on('connection', (conn: ServerConnection) => conn.on('request', (req) => conn.reply(req.id, { time: Date.now(), name: 'target', id: id.id })))
  return {
    listener,
    open: async () => await ClientConnection.open({ host: '127.0.0.1', port: listener.address.port, identity: id, trust, connectTimeoutMs: 3000, ...(tls === true ? { tls: {} } : {}) })
  }
}

/**
 * Strangers that connect from `addresses` and say nothing, `count` sockets held open and
 * reopened as they close (the attack of issue 11), until stop(). With `hello`, each
 * first sends those bytes (the start of a TLS ClientHello) and then stalls.
 */
function strangers (port: number, addresses: string[], count: number, hello?: Buffer): { stop: () => void, opened: () => number } {
  let stopped = false
  let opened = 0
  const live = new Set<Socket>()
  const open = (i: number): void => {
    if (stopped) return
    const s = connect({ host: '127.0.0.1', port, localAddress: addresses[i % addresses.length]! })
    opened++
    live.add(s)
    s.on('error', () => {})
    if (hello !== undefined) s.once('connect', () => s.write(hello))
    // Reopen at once as the node closes it, but never faster than every 20 ms per slot.
    s.on('close', () => { live.delete(s); setTimeout(() => open(i), 20) })
  }
  for (let i = 0; i < count; i++) open(i)
  return { stop: () => { stopped = true; for (const s of live) s.destroy() }, opened: () => opened }
}

test('200 strangers from one address hold at most their per-address share; trusted handshakes get in', async () => {
  const { listener, open } = await node()
  const flood = strangers(listener.address.port, ['127.0.0.2'], 200)
  try {
    await new Promise(resolve => setTimeout(resolve, 300))
    assert.ok(listener.unauthenticated <= 16, `${listener.unauthenticated} handshakes in progress`)
    assert.ok(listener.counters.refusedPerAddress > 0)
    for (let i = 0; i < 10; i++) {
      const conn = await open()
      assert.equal((await conn.request({ kind: 'ping' })).name, 'target')
      conn.close()
    }
  } finally {
    flood.stop()
    await listener.close()
  }
})

test('strangers from many addresses filling the cap cannot lock out trusted handshakes', async () => {
  // A small cap, so that 200 sockets from 20 addresses are more than the whole of it.
  const { listener, open } = await node({ maxConnections: 64 })
  const addresses = Array.from({ length: 20 }, (_v, i) => `127.0.1.${i + 2}`)
  const flood = strangers(listener.address.port, addresses, 200)
  const conns: ClientConnection[] = []
  try {
    await new Promise(resolve => setTimeout(resolve, 300))
    assert.ok(listener.unauthenticated <= 16, `strangers hold ${listener.unauthenticated} slots, over their quarter of the cap`)
    // Trusted peers connect one after another while the flood goes on, and stay connected.
    for (let i = 0; i < 20; i++) {
      const conn = await open()
      assert.equal((await conn.request({ kind: 'ping' })).name, 'target')
      conns.push(conn)
    }
    assert.equal(listener.connections.size, 20)
    assert.ok(listener.counters.evicted + listener.counters.refusedPerAddress + listener.counters.refusedFull > 0)
  } finally {
    for (const c of conns) c.close()
    flood.stop()
    await listener.close()
  }
})

test('a stranger that says nothing is closed after the handshake deadline', async () => {
  const { listener } = await node({ handshakeTimeoutMs: 300 })
  try {
    const s = connect({ host: '127.0.0.1', port: listener.address.port })
    s.on('error', () => {})
    const started = Date.now()
    await new Promise(resolve => s.once('close', resolve))
    const took = Date.now() - started
    assert.ok(took >= 250 && took < 2000, `closed after ${took} ms`)
    assert.equal(listener.counters.timedOut, 1)
  } finally {
    await listener.close()
  }
})

// A TLS record header announcing a 512-byte handshake record, and the first bytes of a
// ClientHello: a TLS server waits for the rest, which never comes.
const STALLED_CLIENT_HELLO = Buffer.from('1603010200' + '010001fc' + '0303', 'hex')

for (const hello of [undefined, STALLED_CLIENT_HELLO]) {
  const what = hello === undefined ? 'saying nothing' : 'stalling in their ClientHello'
  test(`TLS: 200 strangers from one address ${what} hold at most their share; trusted TLS clients get in`, async () => {
    const { listener, open } = await node({ tls: true })
    const flood = strangers(listener.address.port, ['127.0.0.2'], 200, hello)
    try {
      await new Promise(resolve => setTimeout(resolve, 300))
      // Before the fix, these sockets sat in the TLS server, counted by nothing.
      assert.ok(listener.unauthenticated >= 1 && listener.unauthenticated <= 16, `${listener.unauthenticated} handshakes in progress`)
      assert.ok(listener.counters.refusedPerAddress > 0, 'the 17th stalled TLS handshake from one address is refused')
      for (let i = 0; i < 10; i++) {
        const conn = await open()
        assert.equal(conn.peer.tls, true)
        assert.equal((await conn.request({ kind: 'ping' })).name, 'target')
        conn.close()
      }
    } finally {
      flood.stop()
      await listener.close()
    }
  })
}

test('TLS: strangers from many addresses stalling in TLS cannot fill the cap; trusted clients stay connected', async () => {
  const { listener, open } = await node({ tls: true, maxConnections: 64 })
  const addresses = Array.from({ length: 20 }, (_v, i) => `127.0.1.${i + 2}`)
  const flood = strangers(listener.address.port, addresses, 200, STALLED_CLIENT_HELLO)
  const conns: ClientConnection[] = []
  try {
    await new Promise(resolve => setTimeout(resolve, 300))
    assert.ok(listener.unauthenticated <= 16, `strangers hold ${listener.unauthenticated} slots, over their quarter of the cap`)
    for (let i = 0; i < 20; i++) {
      const conn = await open()
      assert.equal((await conn.request({ kind: 'ping' })).name, 'target')
      conns.push(conn)
    }
    assert.equal(listener.connections.size, 20)
    assert.ok(listener.counters.evicted > 0, 'new handshakes displaced the oldest stalled ones')
  } finally {
    for (const c of conns) c.close()
    flood.stop()
    await listener.close()
  }
})

test('TLS: a stranger stalled in its ClientHello is closed at the handshake deadline, and counted', async () => {
  const { listener } = await node({ tls: true, handshakeTimeoutMs: 300 })
  try {
    const s = connect({ host: '127.0.0.1', port: listener.address.port })
    s.on('error', () => {})
    s.once('connect', () => s.write(STALLED_CLIENT_HELLO))
    const started = Date.now()
    await new Promise(resolve => s.once('close', resolve))
    const took = Date.now() - started
    assert.ok(took >= 250 && took < 2000, `closed after ${took} ms`)
    assert.equal(listener.counters.timedOut, 1)
    // The node's side of the socket closes a moment after ours sees it: poll, bounded.
    for (let i = 0; i < 40 && listener.unauthenticated > 0; i++) await new Promise(resolve => setTimeout(resolve, 50))
    assert.equal(listener.unauthenticated, 0, 'the stalled TLS handshake no longer counts')
  } finally {
    await listener.close()
  }
})

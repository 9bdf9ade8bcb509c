/**
 * The virtual stream (PROTOCOL.md §9.3) against a real nats-server on loopback: bytes
 * arrive whole and in order across many chunks, FIN ends both directions, RST and a
 * vanished peer end the stream with LOST, and a flood or a bad message is refused.
 */
import { after, before, describe, test } from 'node:test'
import assert from 'node:assert/strict'
import { spawn, spawnSync, type ChildProcess } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { mkdtempSync, writeFileSync } from 'node:fs'
import { createServer } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { NatsCarrier, MAX_UNREAD_BYTES, STREAM_DATA, type NatsStream, type StreamDrop } from '../src/index.js'

const noServer = spawnSync('nats-server', ['--version']).status !== 0 && process.env.CI !== 'true'

async function freePort (): Promise<number> {
  return await new Promise((resolve) => {
    const s = createServer().listen(0, '127.0.0.1', () => { const a = s.address(); s.close(() => resolve(typeof a === 'object' && a !== null ? a.port : 0)) })
  })
}

/** Both ends of one stream, each on its own NATS connection, as a client and a node have. */
let serial = 0
async function pair (a: NatsCarrier, b: NatsCarrier): Promise<[NatsStream, NatsStream]> {
  let accepted: NatsStream | undefined
  const name = `n${++serial}`
  b.serveStreams({ id: serial.toString(16).padStart(16, '0'), name }, s => { accepted = s })
  await b.nc.flush() // the subscriptions are in place at the server
  const opened = await a.openStream({ name }, 2000)
  // The node answers the open and hands the stream on in the same turn.
  assert.ok(accepted !== undefined)
  return [opened, accepted]
}

const read = async (s: NatsStream, bytes: number): Promise<Buffer> => await new Promise((resolve, reject) => {
  const parts: Buffer[] = []
  let got = 0
  const onData = (d: Buffer): void => { parts.push(d); got += d.length; if (got >= bytes) { s.off('data', onData); resolve(Buffer.concat(parts)) } }
  s.on('data', onData)
  s.once('error', reject)
})

describe('NatsStream over a real nats-server', { skip: noServer ? 'needs nats-server (apt-get install nats-server)' : false }, () => {
  let server: ChildProcess
  let url: string
  let a: NatsCarrier
  let b: NatsCarrier
  const drops: StreamDrop[] = []

  before(async () => {
    const port = await freePort()
    url = `nats://127.0.0.1:${port}`
    // A small max_payload, so that a few hundred KiB are many messages.
    const conf = join(mkdtempSync(join(tmpdir(), 'evalmesh-nats-')), 'nats.conf')
    writeFileSync(conf, `listen: "127.0.0.1:${port}"\nmax_payload: 4096\n`)
    server = spawn('nats-server', ['-c', conf], { stdio: ['ignore', 'ignore', 'pipe'] })
    await new Promise<void>((resolve, reject) => {
      let out = ''
      server.stderr!.on('data', (d: Buffer) => { out += d.toString(); if (/Server is ready/.test(out)) resolve() })
      server.once('exit', code => reject(new Error(`nats-server exited ${code}: ${out}`)))
    })
    a = await NatsCarrier.connect({ servers: [url] })
    b = await NatsCarrier.connect({ servers: [url] }, { onDrop: d => drops.push(d) })
  })
  after(async () => {
    await a?.close(); await b?.close()
    if (server?.pid !== undefined) process.kill(server.pid, 'SIGTERM')
  })

  test('bytes arrive whole and in order across many chunks, both ways; FIN closes both directions', async () => {
    assert.equal(a.maxPayload, 4096)
    const [client, accepted] = await pair(a, b)
    const data = randomBytes(300 * 1024)
    const arriving = read(accepted, data.length)
    client.write(data.subarray(0, 1000)); client.write(data.subarray(1000))
    assert.deepEqual(await arriving, data)
    const back = randomBytes(50 * 1024)
    const reply = read(client, back.length)
    accepted.write(back)
    assert.deepEqual(await reply, back)
    const closed = Promise.all([new Promise(resolve => client.once('close', resolve)), new Promise(resolve => accepted.once('close', resolve))])
    client.end()
    await closed
  })

  test('a RST ends the other side with LOST; a peer that goes away is noticed by its probe', async () => {
    const [x, y] = await pair(a, b)
    const lost = new Promise<Error>(resolve => x.once('error', resolve))
    y.on('error', () => { /* its own reason, as given */ })
    y.destroy(new Error('node stopping'))
    const err = await lost as Error & { code?: string }
    assert.equal(err.code, 'LOST')
    assert.match(err.message, /reset the NATS stream: node stopping/)
    // A peer whose connection closes without a word: no subscriber left on its inbox.
    const c = await NatsCarrier.connect({ servers: [url] })
    const [p] = await pair(a, c)
    const gone = new Promise<Error>(resolve => p.once('error', resolve))
    await c.nc.close()
    const e = await gone as Error & { code?: string }
    assert.equal(e.code, 'LOST')
    assert.match(e.message, /no subscriber/)
  })

  test('a message out of sequence ends the stream; a short one is dropped; a flood the reader does not take is refused', async () => {
    const [x, y] = await pair(a, b)
    const lost = new Promise<Error>(resolve => y.once('error', resolve))
    a.publish(y.inbox, Buffer.from([1]))
    const bad = Buffer.alloc(8); bad[0] = STREAM_DATA; bad.writeUInt32BE(5, 1)
    a.publish(y.inbox, bad)
    const err = await lost as Error & { code?: string }
    assert.equal(err.code, 'LOST')
    assert.match(err.message, /message 5 arrived when 0 was due/)
    assert.ok(drops.some(d => d.reason === 'malformed'))
    assert.ok(drops.some(d => d.reason === 'sequence'))
    x.destroy()
    // A reader that is paused while the other side keeps sending: closed at the bound.
    const [f, g] = await pair(a, b)
    g.pause()
    const flooded = new Promise<Error>(resolve => g.once('error', resolve))
    const chunk = randomBytes(4000)
    for (let sent = 0; sent <= MAX_UNREAD_BYTES + chunk.length && !g.destroyed; sent += chunk.length) {
      f.write(chunk)
      if (sent % (4 * 1024 * 1024) === 0) await new Promise(resolve => setImmediate(resolve))
    }
    assert.match((await flooded).message, /not read yet/)
    assert.ok(drops.some(d => d.reason === 'oversize'))
    f.destroy()
  })
})

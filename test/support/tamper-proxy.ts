/**
 * A man in the middle on loopback: a TCP proxy that splits both directions of each
 * connection into evalmesh frames (PROTOCOL.md §1.1, with the 32-byte integrity tag of
 * §2.4 after the handshake) and lets a test alter, inject, drop, replay or reorder them.
 */
import { createServer, connect, type Server, type Socket } from 'node:net'

export type Direction = 'c2s' | 's2c'

/**
 * Called with each whole frame (length prefix, payload and tag, as on the wire) and its
 * index in its direction; returns the buffers to send in its place ([] drops it).
 */
export type Tamper = (direction: Direction, index: number, frame: Buffer) => Buffer[]

const TAG_BYTES = 32

/** Frames that travel before the tags start: the client's hello and auth, the server's hello. */
const PLAIN_FRAMES: Record<Direction, number> = { c2s: 2, s2c: 1 }

export interface TamperProxy { port: number, close: () => Promise<void> }

export async function startTamperProxy (target: { host: string, port: number }, tamper: Tamper, opts: { tagged?: boolean } = {}): Promise<TamperProxy> {
  const tagged = opts.tagged ?? true
  const sockets = new Set<Socket>()
  const server: Server = createServer((client) => {
    const upstream = connect(target.port, target.host)
    for (const s of [client, upstream]) {
      sockets.add(s)
      s.on('error', () => { /* either end may go first */ })
      s.on('close', () => { sockets.delete(s); client.destroy(); upstream.destroy() })
    }
    pipeFrames(client, upstream, 'c2s', tamper, tagged)
    pipeFrames(upstream, client, 's2c', tamper, tagged)
  })
  await new Promise<void>(resolve => server.listen(0, '127.0.0.1', resolve))
  const address = server.address()
  if (address === null || typeof address === 'string') throw new Error('proxy has no port')
  return {
    port: address.port,
    close: async () => {
      for (const s of sockets) s.destroy()
      await new Promise<void>(resolve => server.close(() => resolve()))
    }
  }
}

function pipeFrames (from: Socket, to: Socket, direction: Direction, tamper: Tamper, tagged: boolean): void {
  let buffered = Buffer.alloc(0)
  let index = 0
  from.on('data', (chunk: Buffer) => {
    buffered = Buffer.concat([buffered, chunk])
    while (buffered.length >= 4) {
      const trailer = tagged && index >= PLAIN_FRAMES[direction] ? TAG_BYTES : 0
      const total = 4 + buffered.readUInt32BE(0) + trailer
      if (buffered.length < total) break
      const frame = buffered.subarray(0, total)
      buffered = buffered.subarray(total)
      for (const out of tamper(direction, index++, Buffer.from(frame))) to.write(out)
    }
  })
  from.on('end', () => to.end())
}

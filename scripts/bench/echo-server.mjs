// The baseline: a raw Node TCP server that echoes 4-byte length-prefixed frames.
// Run as a child process so that, like the node, it has a process of its own.
import { createServer } from 'node:net'

const server = createServer({ noDelay: true }, (socket) => {
  let buf = Buffer.alloc(0)
  socket.on('data', (chunk) => {
    buf = buf.length === 0 ? chunk : Buffer.concat([buf, chunk])
    let off = 0
    while (buf.length - off >= 4) {
      const len = buf.readUInt32BE(off)
      if (buf.length - off < 4 + len) break
      socket.write(buf.subarray(off, off + 4 + len))
      off += 4 + len
    }
    buf = buf.subarray(off)
  })
  socket.on('error', () => {})
})
server.listen(0, '127.0.0.1', () => process.send?.({ port: server.address().port }))
// The second baseline: the same process echoes IPC messages, the hop a node makes to
// its sandbox process (Node's IPC channel, advanced serialization, as packages/sandbox).
process.on('message', (m) => { if (m !== 'port?') process.send(m) })
process.on('disconnect', () => process.exit(0))

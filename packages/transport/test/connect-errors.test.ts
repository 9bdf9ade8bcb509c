import { test } from 'node:test'
import assert from 'node:assert/strict'
import { mkdtempSync } from 'node:fs'
import { createServer } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { TrustStore, loadIdentity } from '@evalmesh/trust'
import { ClientConnection } from '../src/index.js'

/** A port nothing listens on: one the kernel just gave us and we closed again. */
async function closedPort (host: string): Promise<number> {
  const s = createServer()
  await new Promise<void>(resolve => s.listen(0, host, resolve))
  const port = (s.address() as { port: number }).port
  await new Promise(resolve => s.close(resolve))
  return port
}

test('CONNECT_FAILED names an IPv6 node as [addr]:port and says what happened, not ::1:port', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'evalmesh-connect-'))
  const identity = loadIdentity(dir, { create: true, name: 'c' })
  const trust = new TrustStore(dir, identity)
  for (const host of ['::1', '127.0.0.1']) {
    const port = await closedPort(host)
    const where = host === '::1' ? `[::1]:${port}` : `127.0.0.1:${port}`
    await assert.rejects(ClientConnection.open({ host, port, identity, trust, connectTimeoutMs: 3000 }), (err: Error & { code?: string }) => {
      assert.equal(err.code, 'CONNECT_FAILED')
      assert.equal(err.message, `cannot connect to ${where}: connection refused (ECONNREFUSED)`)
      return true
    })
  }
})

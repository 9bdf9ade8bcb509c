/**
 * TLS (issue 12, point 1; PROTOCOL.md §2.5): `serve --tls` with a certificate over the
 * node's own key, pinned by the key clients trust; `serve --tls-cert/--tls-key/--tls-ca`
 * with an operator's certificate, verified against a CA file. The evalmesh handshake runs
 * inside TLS, bound to it; `openssl s_client` sees TLS 1.3 and the certificate; describe
 * says the connection is over TLS.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { execFileSync, spawnSync } from 'node:child_process'
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { Client } from '@evalmesh/client'
import { ClientConnection } from '@evalmesh/transport'
import { TrustStore, loadIdentity } from '@evalmesh/trust'
import { CLI, startNode, tempDir, writeFile } from './support/node.js'

/** `evalmesh ARGS` with the state dir given; its stdout, or its error output when it fails. */
function cli (stateDir: string, ...args: string[]): { status: number | null, out: string } {
  const r = spawnSync(process.execPath, ['--no-node-snapshot', CLI, ...args, '--state-dir', stateDir], { encoding: 'utf8', timeout: 30_000 })
  return { status: r.status, out: `${r.stdout}${r.stderr}` }
}

function sClient (port: number): string {
  const r = spawnSync('openssl', ['s_client', '-connect', `127.0.0.1:${port}`, '-tls1_3'], { input: '', encoding: 'utf8', timeout: 10_000 })
  return `${r.stdout}${r.stderr}`
}

test('serve --tls: TLS 1.3 with a certificate over the node key, pinned by the trusted key; describe says so', async () => {
  const node = await startNode(['--tls'])
  try {
    const identity = loadIdentity(node.stateDir)
    const out = sClient(node.port)
    assert.match(out, /TLSv1\.3/)
    assert.match(out, new RegExp(`subject=CN ?= ?evalmesh ${identity.id}`))
    assert.match(out, /Server public key is 256 bit|ED25519/i)

    const client = new Client({ stateDir: node.stateDir, tls: true })
    try {
      assert.equal(await client.remoteEval('6 * 7', node.host), 42)
      const d = await client.describe(node.host)
      assert.deepEqual(d.connection, { tls: true, integrity: false })
      assert.equal(d.transport.tls, 'self')
      assert.ok(d.capabilities.includes('tls'))
    } finally { client.close() }

    const conn = await ClientConnection.open({ host: '127.0.0.1', port: node.port, identity, trust: new TrustStore(node.stateDir, identity), tls: {} })
    assert.equal(conn.peer.tls, true)
    assert.equal(conn.peer.integrity, false)
    conn.close()

    // A client that does not speak TLS gets no further than the TLS layer.
    const plain = new Client({ stateDir: node.stateDir, connectTimeoutMs: 3000 })
    try {
      await assert.rejects(plain.remoteEval('1', node.host))
    } finally { plain.close() }
    // A client that trusts another key refuses the node, TLS or not: the key is the trust root.
    const stranger = tempDir()
    loadIdentity(stranger, { create: true, name: 'stranger' })
    const other = new Client({ stateDir: stranger, tls: true })
    try {
      await assert.rejects(other.remoteEval('1', node.host), (err: Error & { code?: string, cause?: { code?: string } }) =>
        [err.code, err.cause?.code].includes('UNTRUSTED_PEER') || /UNTRUSTED_PEER|does not trust/.test(err.message))
    } finally { other.close() }
  } finally {
    await node.stop()
  }
})

test("serve --tls-cert/--tls-key/--tls-ca: clients verify the operator's certificate against the CA file", async () => {
  const dir = tempDir()
  const ssl = (...args: string[]): void => { execFileSync('openssl', args, { cwd: dir, stdio: 'ignore' }) }
  ssl('req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', 'ca.key', '-out', 'ca.pem', '-days', '2', '-subj', '/CN=evalmesh test CA')
  ssl('req', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', 'node.key', '-out', 'node.csr', '-subj', '/CN=127.0.0.1')
  writeFile(dir, 'san.ext', 'subjectAltName=IP:127.0.0.1\n')
  ssl('x509', '-req', '-in', 'node.csr', '-CA', 'ca.pem', '-CAkey', 'ca.key', '-CAcreateserial', '-out', 'node.pem', '-days', '2', '-extfile', 'san.ext')
  const node = await startNode(['--tls-cert', join(dir, 'node.pem'), '--tls-key', join(dir, 'node.key'), '--tls-ca', join(dir, 'ca.pem')])
  try {
    const out = sClient(node.port)
    assert.match(out, /TLSv1\.3/)
    assert.match(out, /subject=CN ?= ?127\.0\.0\.1/)
    assert.match(out, /issuer=CN ?= ?evalmesh test CA/)

    const client = new Client({ stateDir: node.stateDir, tls: { ca: readFileSync(join(dir, 'ca.pem')) } })
    try {
      assert.equal(await client.remoteEval('"verified"', node.host), 'verified')
      assert.equal((await client.describe(node.host)).transport.tls, 'certificate')
    } finally { client.close() }
    // Without the CA, the certificate is neither over the node's key nor verifiable: refused.
    const unverified = new Client({ stateDir: node.stateDir, tls: true })
    try {
      await assert.rejects(unverified.remoteEval('1', node.host), (err: Error & { cause?: Error }) =>
        /neither over the key it proves in the handshake nor one this client can verify/.test(`${err.message} ${err.cause?.message ?? ''}`))
    } finally { unverified.close() }
  } finally {
    await node.stop()
  }
})

test('the CLI picks TLS per peer: the local node says so, a peers-file line ending in tls, or --tls', async () => {
  const node = await startNode(['--tls'])
  try {
    // The local node's locator says it serves TLS.
    assert.deepEqual(cli(node.stateDir, 'eval', '1 + 1'), { status: 0, out: '2\n' })
    writeFile(node.stateDir, 'peers', `secure 127.0.0.1:${node.port} tls\nplain 127.0.0.1:${node.port}\n`)
    assert.deepEqual(cli(node.stateDir, 'eval', '2 + 2', '--host', 'secure'), { status: 0, out: '4\n' })
    assert.equal(cli(node.stateDir, 'eval', '3 + 3', '--host', 'plain').status, 1)
    assert.deepEqual(cli(node.stateDir, 'eval', '3 + 3', '--host', 'plain', '--tls'), { status: 0, out: '6\n' })
  } finally {
    await node.stop()
  }
})

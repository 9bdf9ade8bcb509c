/**
 * Hostile peers against one real node (issue 11 and the strict-decoder half of issue 10):
 * each case is one message or one form that used to stop, freeze or confuse the node.
 * After each, the node must still answer, and other requests must be unharmed.
 */
import { after, before, describe, test } from 'node:test'
import assert from 'node:assert/strict'
import { connect } from 'node:net'
import { Client, RemoteEvalError } from '@evalmesh/client'
import { DEFAULT_DECODE_LIMITS } from '@evalmesh/protocol'
import { FramedSocket, clientHandshake } from '@evalmesh/transport'
import { TrustStore, addTrustedKey, loadIdentity, trustLine } from '@evalmesh/trust'
import { localClient, startNode, tempDir, type TestNode } from './support/node.js'

const code = async (p: Promise<unknown>): Promise<string | undefined> => await p.then(() => undefined, (e: RemoteEvalError) => e.code)

function peerClient (node: TestNode, label: string, helloName = label): { client: Client, dir: string } {
  const dir = tempDir()
  const identity = loadIdentity(dir, { create: true, name: helloName })
  addTrustedKey(node.stateDir, `${Buffer.from(identity.publicKey).toString('base64')} ${label}`)
  addTrustedKey(dir, trustLine(loadIdentity(node.stateDir)))
  return { client: new Client({ stateDir: dir }), dir }
}

/** An authenticated raw connection: the handshake done, then any bytes the test writes. */
async function rawSession (node: TestNode, stateDir: string): Promise<{ framed: FramedSocket, write: (b: Uint8Array) => void, close: () => void }> {
  const socket = connect(node.port, '127.0.0.1')
  await new Promise<void>((resolve, reject) => { socket.once('connect', resolve); socket.once('error', reject) })
  const framed = new FramedSocket(socket, DEFAULT_DECODE_LIMITS)
  const identity = loadIdentity(stateDir)
  await clientHandshake(framed, { identity, trust: new TrustStore(stateDir, identity), timeoutMs: 5000 })
  return { framed, write: b => socket.write(b), close: () => socket.destroy() }
}

describe('one message never stops or freezes the node', () => {
  let node: TestNode
  let me: Client
  let mallory: { client: Client, dir: string }
  before(async () => {
    node = await startNode(['--timeout', '10000'])
    me = localClient(node)
    mallory = peerClient(node, 'mallory', 'friendly\u001b[2J\nfake line')
  })
  after(async () => { me.close(); mallory.client.close(); await node.stop() })

  test('a 128 KiB tag-2 bignum frame is refused from its header; the node answers others meanwhile', async () => {
    const raw = await rawSession(node, mallory.dir)
    const big = Buffer.alloc(128 * 1024, 0xff)
    // {kind:"ping", id:1, x: 2(h'ff...')} as one frame
    const body = Buffer.concat([
      Buffer.from([0xa3, 0x64, ...Buffer.from('kind'), 0x64, ...Buffer.from('ping'), 0x62, ...Buffer.from('id'), 0x01, 0x61, 0x78, 0xc2, 0x5a]),
      Buffer.from([(big.length >>> 24) & 0xff, (big.length >>> 16) & 0xff, (big.length >>> 8) & 0xff, big.length & 0xff]),
      big
    ])
    const frame = Buffer.alloc(4 + body.length)
    frame.writeUInt32BE(body.length, 0)
    body.copy(frame, 4)
    const closed = new Promise<void>(resolve => raw.framed.socket.once('close', () => resolve()))
    raw.write(frame)
    assert.equal((await me.ping(node.host)).name, 'testnode', 'another client is answered')
    await closed
    assert.equal(await me.remoteEval('6 * 7', node.host), 42)
  })

  test('deeply nested forms cost the node\'s main thread linear work: others are answered while they are classified', async () => {
    // The node classifies every form (may it pipeline or take the node's own isolate?) on its
    // main thread. A parser that backtracks per nesting level would spend 2^depth steps on
    // these 60-character forms and freeze the node for everyone.
    const forms = ['a = 1', ...[30, 40, 60].flatMap(d => ['('.repeat(d) + '1' + ')'.repeat(d), '('.repeat(d) + 'a ?? 2' + ')'.repeat(d), '['.repeat(d) + '1' + ']'.repeat(d)])]
    // One session: its runs go in order, so `a` is set before it is read.
    const hers = forms.map(async f => await mallory.client.remoteEval(f, node.host, { session: 'nested' }).catch((err: unknown) => err))
    assert.equal(await me.remoteEval('6 * 7', node.host), 42, 'another client is answered')
    const results = await Promise.all(hers)
    for (let i = 0; i < 3; i++) {
      assert.deepEqual(results.slice(1 + 3 * i, 3 + 3 * i), [1, 1])
      assert.ok(Array.isArray(results[3 + 3 * i]), 'a nested array literal comes back')
    }
  })

  test('a huge BigInt result is refused on the node (RESULT_UNENCODABLE), not encoded for seconds', async () => {
    assert.equal(await code(mallory.client.remoteEval('1n << 1310720n', node.host)), 'RESULT_UNENCODABLE')
    assert.equal(await mallory.client.remoteEval('(1n << 64n).toString()', node.host), '18446744073709551616')
  })

  test('results the client could not take fail that request alone; the connection carries on', async () => {
    assert.equal(await code(mallory.client.remoteEval('let d = 1; for (let i = 0; i < 70; i++) d = [d]; d', node.host)), 'RESULT_UNENCODABLE')
    assert.equal(await mallory.client.remoteEval('"still connected"', node.host), 'still connected')
  })

  test('an Error or RegExp result comes back as a readable value', async () => {
    assert.deepEqual(await mallory.client.remoteEval('new TypeError("e")', node.host), { $error: { name: 'TypeError', message: 'e' } })
    assert.equal(await mallory.client.remoteEval('/a+/g', node.host), '/a+/g')
  })

  test('integers of 2^32 and more are accepted where a uint is (txn seq, limits)', async () => {
    const conn = await me.connection(me.resolve(node.host))
    const txn = `${me.clientId}:${2 ** 40}`
    const r = await conn.request({ kind: 'eval', txn, form: '1 + 1', wait: true, limits: { timeoutMs: 2 ** 33 } })
    assert.equal('value' in r && r.value, 2)
  })

  test('a form cannot stop the node, whatever it calls', async () => {
    for (const form of ['evalserver.abort("*")', 'typeof process', 'globalThis.constructor.constructor("return process")()']) {
      await mallory.client.remoteEval(form, node.host).catch(() => undefined)
    }
    assert.equal(await me.remoteEval('"alive"', node.host), 'alive')
    assert.equal(node.proc.exitCode, null)
  })

  test('a hostile hello name never reaches status: the node shows the name it gave the key', async () => {
    await mallory.client.remoteEval('"hello"', node.host)
    const rows = await me.status(node.host, { which: 'done' })
    const mine = rows.filter(r => r.client.startsWith(mallory.client.identity.id))
    assert.ok(mine.length > 0)
    assert.ok(mine.every(r => r.clientName === 'mallory'), JSON.stringify(mine.map(r => r.clientName)))
  })
})

test('Megatest kill-server is an operator action: a client gets FORBIDDEN, from apply and from a form, and the area keeps serving', async (t) => {
  const area = `${tempDir('evalmesh-area-')}/ci`
  const node = await startNode(['--area', `ci=${area}`, '--keys', 'TARGET'])
  const mallory = peerClient(node, 'mallory')
  const me = localClient(node)
  t.after(async () => { mallory.client.close(); me.close(); await node.stop() })
  assert.equal(await code(mallory.client.remoteApply('megatest.kill-server', ['ci'], node.host)), 'FORBIDDEN')
  await assert.rejects(mallory.client.remoteEval('await megatest["kill-server"]("ci")', node.host), /operator/)
  await assert.rejects(mallory.client.remoteApply('megatest', ['ci', 'kill-server'], node.host), /operator/)
  await me.remoteApply('megatest.register-run', ['ci', [['TARGET', 'x']], 'r1', 'new', 'n/a', 'me', ''], node.host)
  assert.equal(node.proc.exitCode, null)
})

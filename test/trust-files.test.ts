/**
 * Files and trust over real processes and sockets (issue 11, points 5 and 6): `serve` and
 * clients refuse state dirs and keys others may read or write; Megatest areas are private
 * and kill-server cannot stop the node; the trust commands; a mesh key rotated without
 * downtime between a running node and its clients.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { spawnSync } from 'node:child_process'
import { chmodSync, copyFileSync, statSync } from 'node:fs'
import { join } from 'node:path'
import { Client } from '@evalmesh/client'
import { createMeshKey, loadIdentity } from '@evalmesh/trust'
import { CLI, localClient, startNode, tempDir } from './support/node.js'

const posix = process.platform !== 'win32'

function cli (args: string[], stateDir: string): { status: number | null, stdout: string, stderr: string } {
  const r = spawnSync(process.execPath, ['--no-node-snapshot', CLI, ...args, '--state-dir', stateDir], { encoding: 'utf8', timeout: 30_000 })
  return { status: r.status, stdout: r.stdout, stderr: r.stderr }
}

test('serve refuses a 777 state dir holding a 644 node.key, naming the path and the chmod', { skip: !posix }, () => {
  const dir = join(tempDir(), 'state')
  loadIdentity(dir, { create: true })
  chmodSync(dir, 0o777)
  chmodSync(join(dir, 'node.key'), 0o644)
  const r = cli(['serve', '--port', '0', '--minutes', '1'], dir)
  assert.equal(r.status, 1, r.stdout + r.stderr)
  assert.ok(r.stderr.includes(`chmod 700 ${dir}`), r.stderr)
  assert.match(r.stderr, /refusing to use/)
  chmodSync(dir, 0o700)
  const k = cli(['serve', '--port', '0', '--minutes', '1'], dir)
  assert.equal(k.status, 1)
  assert.ok(k.stderr.includes(`chmod 600 ${join(dir, 'node.key')}`), k.stderr)
})

test('a client refuses a 666 key in a 777 dir the same way', { skip: !posix }, () => {
  const dir = join(tempDir(), 'state')
  loadIdentity(dir, { create: true })
  chmodSync(join(dir, 'node.key'), 0o666)
  chmodSync(dir, 0o777)
  const r = cli(['eval', '1', '--host', '127.0.0.1:9'], dir)
  assert.equal(r.status, 1)
  assert.ok(r.stderr.includes(`chmod 700 ${dir}`), r.stderr)
  assert.throws(() => new Client({ stateDir: dir }), /chmod 700/)
})

test('a Megatest area is private, its errors do not say where it is, and kill-server cannot stop the node', { skip: !posix }, async (t) => {
  const area = join(tempDir('evalmesh-area-'), 'ci')
  const node = await startNode(['--area', `ci=${area}`, '--keys', 'TARGET'])
  const client = localClient(node)
  t.after(async () => { client.close(); await node.stop() })
  await client.remoteApply('megatest.register-run', ['ci', [['TARGET', 'x']], 'r1', 'new', 'n/a', 'me', ''], node.host)
  assert.equal(statSync(area).mode & 0o777, 0o700)
  for (const f of ['megatest.db', 'megatest.db-wal', 'megatest.db-shm', 'no-sync.db']) {
    assert.equal(statSync(join(area, f)).mode & 0o777, 0o600, f)
  }
  const login = await client.remoteApply('megatest.login', ['ci', '/wrong/toppath', null, null], node.host) as [boolean, string]
  assert.equal(login[0], false)
  assert.ok(!login[1].includes(area), login[1])

  // This client holds the node's own key, an operator: kill-server may end the area, never the node.
  const settle = async (p: Promise<unknown>): Promise<unknown> => await p.then(v => v, (e: Error) => e)
  const viaForm = await settle(client.remoteEval('await megatest["kill-server"]("ci")', node.host))
  const viaApply = await settle(client.remoteApply('megatest.kill-server', ['ci'], node.host))
  await new Promise(resolve => setTimeout(resolve, 300))
  assert.equal(await client.remoteEval('6 * 7', node.host), 42, 'the node still serves')
  assert.equal(node.proc.exitCode, null)
  assert.ok(viaForm === true || viaApply === true, `kill-server answered ${String(viaForm)} / ${String(viaApply)}`)
  await assert.rejects(client.remoteApply('megatest.get-keys', ['ci'], node.host), (e: { code?: string }) => e.code === 'UNKNOWN_AREA')
})

test('trust add --operator, list, remove, and the fingerprint in evalmesh key', () => {
  const [a, b] = [join(tempDir(), 'a'), join(tempDir(), 'b')]
  const key = cli(['key'], b)
  assert.equal(key.status, 0, key.stderr)
  const line = key.stdout.trim()
  assert.match(line, /^\S{44} \S+ # SHA256:[A-Za-z0-9+/]{43}$/)
  const fp = line.split('# ')[1]!
  const add = cli(['trust', 'add', line.replace(/ \S+ #.*/, ' bee'), '--operator'], a)
  assert.equal(add.status, 0, add.stderr)
  const list = JSON.parse(cli(['trust', 'list', '--json'], a).stdout).value as { self: { operator: boolean }, keys: Array<{ name: string, fingerprint: string, operator: boolean, added: string }> }
  assert.equal(list.self.operator, true)
  assert.deepEqual(list.keys.map(k => [k.name, k.fingerprint, k.operator]), [['bee', fp, true]])
  assert.match(list.keys[0]!.added, /^\d{4}-\d\d-\d\dT/)
  const text = cli(['trust', 'list'], a).stdout
  assert.match(text, /LABEL\s+FINGERPRINT\s+ROLE\s+ADDED/)
  assert.match(text, new RegExp(`bee\\s+${fp.replace(/[+/]/g, '\\$&')}\\s+operator`))
  assert.equal(cli(['trust', 'remove', fp], a).status, 0)
  assert.deepEqual((JSON.parse(cli(['trust', 'list', '--json'], a).stdout).value as { keys: unknown[] }).keys, [])
  const again = cli(['trust', 'remove', 'bee'], a)
  assert.equal(again.status, 1)
  assert.match(again.stderr, /no trusted key matches/)
})

test('the mesh key rotates under a running node without a refused connection', async (t) => {
  const mesh = tempDir()
  createMeshKey(mesh)
  const [nodeDir, bDir, cDir] = [tempDir(), tempDir(), tempDir()]
  for (const d of [nodeDir, bDir, cDir]) copyFileSync(join(mesh, 'mesh.key'), join(d, 'mesh.key'))
  const node = await startNode([], { stateDir: nodeDir })
  t.after(async () => { await node.stop() })
  const evalAs = async (dir: string): Promise<unknown> => {
    const c = new Client({ stateDir: dir })
    try { return await c.remoteEval('1 + 1', node.host, { timeoutMs: 5000 }) } finally { c.close() }
  }
  assert.equal(await evalAs(bDir), 2)

  // On the node: a short window, so the test sees it through (send-from after 3 s, dropped after 6 s).
  const rot = cli(['trust', 'mesh-key', 'rotate', '--window', '6s', '--json'], nodeDir)
  assert.equal(rot.status, 0, rot.stderr)
  const r = JSON.parse(rot.stdout).value as { command: string, sendFrom: string, notAfter: string }
  assert.equal(await evalAs(bDir), 2, 'B has not rotated yet: the node still sends and takes the old key')
  const args = r.command.split(' ').slice(1)
  const onB = cli(args, bDir)
  assert.equal(onB.status, 0, onB.stderr)
  assert.equal(await evalAs(bDir), 2)
  await new Promise(resolve => setTimeout(resolve, Math.max(0, Date.parse(r.sendFrom) - Date.now()) + 300))
  assert.equal(await evalAs(bDir), 2, 'both send the new key now')
  await new Promise(resolve => setTimeout(resolve, Math.max(0, Date.parse(r.notAfter) - Date.now()) + 300))
  assert.equal(await evalAs(bDir), 2, 'after the window, the new key alone')
  await assert.rejects(evalAs(cDir), 'C never got the new key: once the old is dropped it is a stranger')
  const states = JSON.parse(cli(['trust', 'mesh-key', 'list', '--json'], nodeDir).stdout).value as Array<{ state: string }>
  assert.deepEqual(states.map(s => s.state), ['expired', 'sending'])
})

import { test } from 'node:test'
import assert from 'node:assert/strict'
import { chmodSync, existsSync, mkdirSync, statSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { createMegatestService, scrubPaths } from '../src/index.js'
import { fixture, tempDir } from './helpers.js'

const posix = process.platform !== 'win32'
const mode = (p: string): number => statSync(p).mode & 0o777
const dbFiles = (dir: string): string[] => ['megatest.db', 'no-sync.db'].flatMap(f => [f, `${f}-wal`, `${f}-shm`]).map(f => join(dir, f))

test('a new area directory is 0700 and its databases, -wal and -shm 0600', { skip: !posix }, async (t) => {
  const dir = join(tempDir(t), 'new-area')
  const svc = createMegatestService({ areas: [{ name: 'ci', dir, keys: ['K'] }] })
  t.after(() => svc.close())
  await svc.callOrThrow('ci', 'register-run', [[['K', 'v']], 'r', 'new', 'n/a', 'u', ''])
  await svc.callOrThrow('ci', 'no-sync-set', ['a', 'b'])
  assert.equal(mode(dir), 0o700)
  for (const f of dbFiles(dir)) {
    assert.ok(existsSync(f), `${f} exists`)
    assert.equal(mode(f), 0o600, f)
  }
})

test('an existing area with loose modes is tightened when served', { skip: !posix }, async (t) => {
  const dir = tempDir(t)
  createMegatestService({ areas: [{ name: 'ci', dir, keys: ['K'] }] }).close()
  chmodSync(dir, 0o755)
  for (const f of dbFiles(dir)) {
    if (!existsSync(f)) writeFileSync(f, '')
    chmodSync(f, 0o644)
  }
  const svc = createMegatestService({ areas: [{ name: 'ci', dir }] })
  t.after(() => svc.close())
  assert.equal(mode(dir), 0o700)
  for (const f of dbFiles(dir)) if (existsSync(f)) assert.equal(mode(f), 0o600, f)
})

test('a read-only area is tightened where this user owns it, and still opens', { skip: !posix }, async (t) => {
  const dir = tempDir(t)
  createMegatestService({ areas: [{ name: 'ci', dir, keys: ['K'] }] }).close()
  chmodSync(dir, 0o755)
  chmodSync(join(dir, 'megatest.db'), 0o644)
  const svc = createMegatestService({ areas: [{ name: 'ci', dir, readOnly: true }] })
  t.after(() => svc.close())
  assert.deepEqual(await svc.callOrThrow('ci', 'get-keys', []), ['K'])
  assert.equal(mode(dir), 0o700)
  assert.equal(mode(join(dir, 'megatest.db')), 0o600)
})

test('errors a client sees name the area, not where it lives', async (t) => {
  const f = fixture(t)
  const login = await f.c('login', '/not/the/area', null, null)
  assert.equal(login[0], false)
  assert.ok(!login[1].includes(f.dir), login[1])
  const r = await f.svc.call('ci', 'login', ['/x', null, null])
  assert.ok(!JSON.stringify(r).includes(f.dir))
  const unknown = await f.svc.call('nope', 'get-keys', [])
  assert.equal(unknown.status, 'error')
  assert.ok(!JSON.stringify(unknown).includes(f.dir))
  for (const bad of [['register-run', [[['X', 1]], 'r']], ['get-var', []], ['no-such-command', []]] as Array<[string, unknown[]]>) {
    const res = await f.svc.call('ci', bad[0], bad[1])
    assert.equal(res.status, 'error')
    assert.ok(!JSON.stringify(res).includes(f.dir), JSON.stringify(res))
  }
})

test('scrubPaths hides the area directory and other host paths', () => {
  const area = { name: 'ci', dir: '/srv/areas/ci' }
  assert.equal(scrubPaths('unable to open /srv/areas/ci/megatest.db', area), 'unable to open <area ci>/megatest.db')
  assert.equal(scrubPaths("ENOENT: no such file or directory, open '/home/ann/x/y.db'"), "ENOENT: no such file or directory, open '<path>'")
  assert.equal(scrubPaths('state/status pair bad, a/b'), 'state/status pair bad, a/b', 'relative text is left alone')
  assert.equal(scrubPaths('at (/usr/lib/node/x.js:1:2)'), 'at (<path>)')
})

test('servinfo registrations live in a 0700 directory', { skip: !posix }, async (t) => {
  const { registerServer, servinfoDir } = await import('../src/index.js')
  const dir = tempDir(t)
  mkdirSync(dir, { recursive: true })
  registerServer(dir, { host: 'h', port: 1234, node: 'n' })
  assert.equal(mode(servinfoDir(dir)), 0o700)
})

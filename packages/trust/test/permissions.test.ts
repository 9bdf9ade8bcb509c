import { test } from 'node:test'
import assert from 'node:assert/strict'
import { chmodSync, mkdirSync, mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import {
  UnsafePermissionsError, addTrustedKey, assertPrivateDir, assertPrivateFile, createMeshKey, ensureStateDir, loadIdentity
} from '../src/index.js'

// The checks look at mode bits (and owner), so they hold when the tests run as root too.
const posix = process.platform !== 'win32'

function temp (t: { after: (fn: () => void) => void }): string {
  const d = mkdtempSync(join(tmpdir(), 'evalmesh-perm-'))
  t.after(() => rmSync(d, { recursive: true, force: true }))
  return d
}

function refused (fn: () => unknown, path: string, fix: RegExp): UnsafePermissionsError {
  let caught: unknown
  try { fn() } catch (err) { caught = err }
  assert.ok(caught instanceof UnsafePermissionsError, `expected UnsafePermissionsError, got ${String(caught)}`)
  assert.equal(caught.path, path)
  assert.match(caught.fix, fix)
  assert.ok(caught.message.includes(path), caught.message)
  assert.ok(caught.message.includes(caught.fix), caught.message)
  return caught
}

test('a fresh state dir and key are made 0700 and 0600', { skip: !posix }, (t) => {
  const dir = join(temp(t), 'state')
  loadIdentity(dir, { create: true })
  assert.equal(statSync(dir).mode & 0o777, 0o700)
  assert.equal(statSync(join(dir, 'node.key')).mode & 0o777, 0o600)
  assert.doesNotThrow(() => loadIdentity(dir))
})

test('a 777 state dir holding a 644 key is refused, naming the path and the chmod', { skip: !posix }, (t) => {
  const dir = join(temp(t), 'state')
  loadIdentity(dir, { create: true })
  chmodSync(dir, 0o777)
  chmodSync(join(dir, 'node.key'), 0o644)
  const err = refused(() => loadIdentity(dir), dir, /^chmod 700 /)
  assert.match(err.message, /writable by group and others/)
  assert.match(err.message, /mode 0777/)
  chmodSync(dir, 0o700)
  refused(() => loadIdentity(dir), join(dir, 'node.key'), /^chmod 600 /)
  chmodSync(join(dir, 'node.key'), 0o600)
  assert.doesNotThrow(() => loadIdentity(dir))
})

test('a client refuses a 666 key in a 777 dir the same way', { skip: !posix }, (t) => {
  const dir = join(temp(t), 'state')
  loadIdentity(dir, { create: true })
  chmodSync(join(dir, 'node.key'), 0o666)
  chmodSync(dir, 0o777)
  refused(() => loadIdentity(dir, { create: true }), dir, /chmod 700/)
  chmodSync(dir, 0o700)
  const err = refused(() => loadIdentity(dir, { create: true }), join(dir, 'node.key'), /chmod 600/)
  assert.match(err.message, /readable and writable by group and others/)
})

test('a state dir readable by others is refused once it holds the key; without one it is made 0700', { skip: !posix }, (t) => {
  const dir = join(temp(t), 'state')
  mkdirSync(dir)
  chmodSync(dir, 0o755)
  loadIdentity(dir, { create: true })
  assert.equal(statSync(dir).mode & 0o777, 0o700)
  chmodSync(dir, 0o750)
  const err = refused(() => loadIdentity(dir), dir, /chmod 700/)
  assert.match(err.message, /readable by group/)
  refused(() => ensureStateDir(dir), dir, /chmod 700/)
  refused(() => addTrustedKey(dir, Buffer.alloc(32, 1).toString('base64') + ' ann'), dir, /chmod 700/)
  chmodSync(dir, 0o711) // others may pass through but not list: the key itself is 0600
  assert.doesNotThrow(() => loadIdentity(dir))
})

test('a world-writable state dir is refused even before it holds a key', { skip: !posix }, (t) => {
  const dir = join(temp(t), 'state')
  mkdirSync(dir)
  chmodSync(dir, 0o777)
  refused(() => loadIdentity(dir, { create: true }), dir, /chmod 700/)
  refused(() => createMeshKey(dir), dir, /chmod 700/)
})

test('through a searchable dir, mesh.key must be owner-only and trusted-keys not writable by others', { skip: !posix }, (t) => {
  const dir = join(temp(t), 'state')
  loadIdentity(dir, { create: true })
  writeFileSync(join(dir, 'mesh.key'), Buffer.alloc(32, 7).toString('base64') + '\n', { mode: 0o644 })
  chmodSync(join(dir, 'mesh.key'), 0o644)
  assert.doesNotThrow(() => loadIdentity(dir), 'in a 0700 dir nobody else can reach it')
  chmodSync(dir, 0o711)
  refused(() => loadIdentity(dir), join(dir, 'mesh.key'), /chmod 600/)
  chmodSync(join(dir, 'mesh.key'), 0o600)
  writeFileSync(join(dir, 'trusted-keys'), '')
  chmodSync(join(dir, 'trusted-keys'), 0o666)
  refused(() => loadIdentity(dir), join(dir, 'trusted-keys'), /chmod go-w/)
  chmodSync(join(dir, 'trusted-keys'), 0o644)
  assert.doesNotThrow(() => loadIdentity(dir))
})

test('assertPrivateFile and assertPrivateDir on their own', { skip: !posix }, (t) => {
  const dir = temp(t)
  const f = join(dir, 'secret')
  writeFileSync(f, 'x')
  chmodSync(f, 0o640)
  refused(() => assertPrivateFile(f), f, /chmod 600/)
  chmodSync(f, 0o400)
  assert.doesNotThrow(() => assertPrivateFile(f))
  assert.doesNotThrow(() => assertPrivateFile(join(dir, 'missing')))
  chmodSync(dir, 0o770)
  refused(() => assertPrivateDir(dir), dir, /chmod 700/)
  refused(() => assertPrivateDir(dir, { holdsKey: false }), dir, /chmod 700/)
  chmodSync(dir, 0o755)
  assert.doesNotThrow(() => assertPrivateDir(dir, { holdsKey: false }))
  refused(() => assertPrivateDir(dir), dir, /chmod 700/)
  chmodSync(dir, 0o700)
  const odd = join(dir, "it's here")
  mkdirSync(odd, { mode: 0o777 })
  chmodSync(odd, 0o777)
  refused(() => assertPrivateDir(odd), odd, /^chmod 700 '.*it'\\''s here'$/)
})

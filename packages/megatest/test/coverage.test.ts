/**
 * Every command of Megatest's api.scm is either served or deliberately refused with
 * MEGATEST_NOT_SERVED, and docs/megatest.md says which, command by command.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { readFileSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { ERROR_CATALOGUE } from '@evalmesh/protocol'
import { API_SCM_COMMANDS, API_SCM_READS, NOT_SERVED } from '../src/index.js'
import { fixture, tempDir } from './helpers.js'
import { createMegatestService } from '../src/index.js'

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..', '..', '..')

test('api.scm\'s 121 commands are each served or refused, never both', (t) => {
  const f = fixture(t)
  const served = new Set(f.svc.commands().map(c => c.name))
  assert.equal(API_SCM_COMMANDS.length, 121)
  assert.equal(new Set(API_SCM_COMMANDS).size, 121, 'no name twice')
  assert.equal(API_SCM_READS.size, 59, 'api:read-only-queries has 59 names')
  for (const c of API_SCM_COMMANDS) assert.notEqual(served.has(c), NOT_SERVED.has(c), c)
  for (const c of NOT_SERVED.keys()) assert.ok(API_SCM_COMMANDS.includes(c), c)
  // Served beyond api.scm: the split forms of lock/unlock-run only.
  assert.deepEqual([...served].filter(c => !API_SCM_COMMANDS.includes(c)), ['lock-run', 'unlock-run'])
})

test('a refused command answers MEGATEST_NOT_SERVED (705, never retried) with its reason, in any area mode', async (t) => {
  assert.deepEqual(ERROR_CATALOGUE.MEGATEST_NOT_SERVED, { wire: 705, retry: 'never', message: 'Megatest command deliberately not served by this server' })
  const f = fixture(t)
  for (const [name, why] of NOT_SERVED) {
    const r = await f.svc.call('ci', name, [])
    assert.deepEqual([r.status, r.meta.code, r.meta.wire], ['error', 'MEGATEST_NOT_SERVED', 705], name)
    assert.ok(r.errmsg.includes('deliberately not served') && r.errmsg.includes(why), name)
    assert.deepEqual(r.meta.data, { command: name, reason: why })
  }
  await assert.rejects(f.c('start-server', 'http', 'whatever'), (e: any) => e.code === 'MEGATEST_NOT_SERVED' && /evalmesh serve/.test(e.message))
  // An unknown name is still UNKNOWN_COMMAND.
  await assert.rejects(f.c('archive-everything'), (e: any) => e.code === 'UNKNOWN_COMMAND')
  // A read-only area says the same (not READ_ONLY) for a refused write.
  const dir = tempDir(t)
  createMegatestService({ areas: [{ name: 'ci', dir, keys: ['K'] }] }).close()
  const ro = createMegatestService({ areas: [{ name: 'ci', dir, readOnly: true }] })
  t.after(() => ro.close())
  await assert.rejects(ro.callOrThrow('ci', 'sync-cachedb->db', [1]), (e: any) => e.code === 'MEGATEST_NOT_SERVED')
})

test('docs/megatest.md lists every api.scm command with the status the code gives it', (t) => {
  const doc = readFileSync(join(ROOT, 'docs', 'megatest.md'), 'utf8')
  const start = doc.indexOf('## 9. Coverage of api.scm')
  assert.ok(start > 0, 'docs/megatest.md has section 9')
  const section = doc.slice(start)
  const rows = new Map([...section.matchAll(/^\| `([^`]+)` \| (r|w) \| (served|not served)[^|]*\|/gm)].map(m => [m[1] as string, { rw: m[2], status: m[3] }]))
  const f = fixture(t)
  const served = new Set(f.svc.commands().map(c => c.name))
  assert.deepEqual([...rows.keys()].sort(), [...API_SCM_COMMANDS].sort(), 'the table names exactly api.scm\'s commands')
  for (const c of API_SCM_COMMANDS) {
    const row = rows.get(c)
    assert.equal(row?.status, served.has(c) ? 'served' : 'not served', c)
    assert.equal(row?.rw, API_SCM_READS.has(c) ? 'r' : 'w', `${c}: Megatest's class`)
  }
})

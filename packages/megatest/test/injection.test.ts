import { test } from 'node:test'
import assert from 'node:assert/strict'
import { fixture, KV, seedRun } from './helpers.js'

const EVIL = [
  "x' OR '1'='1",
  "%' OR 1=1 --",
  "foo'; DROP TABLE tests; --",
  'a"; DELETE FROM runs; --',
  "') UNION SELECT name, sql, 1, 1, 1, 1 FROM sqlite_master --"
]

test('patterns and value lists are bound as data: injection attempts match nothing and change nothing', async (t) => {
  const f = fixture(t)
  const s = await seedRun(f)
  const db = f.peek()
  const tablesBefore = db.prepare("SELECT name FROM sqlite_master WHERE type='table' ORDER BY name").pluck().all()
  for (const evil of EVIL) {
    assert.deepEqual(await f.c('get-tests-for-run', s.run, evil, null, null, 0, null, null, null, null, null, null, null), [], evil)
    assert.deepEqual(await f.c('get-tests-for-run', s.run, `foo/${evil}`, null, null, 0, null, null, null, null, null, null, null), [], evil)
    assert.deepEqual(await f.c('get-tests-for-run', s.run, null, [evil], [evil], 0, null, null, null, null, null, null, null), [], evil)
    assert.deepEqual((await f.c('get-runs', evil, null, 0, [['RELEASE', evil]])).rows, [], evil)
    assert.deepEqual((await f.c('get-runs-by-patt', null, evil, `${evil}/${evil}`, 0, null, null, null)).rows, [], evil)
    assert.deepEqual(await f.c('read-test-data', s.run, s.bar, evil), [], evil)
    assert.equal(await f.c('tasks-get-last', evil, evil), null)
    assert.equal(await f.c('tasks-set-state-given-param-key', evil, 'done'), 0)
    assert.equal(await f.c('get-test-id', s.run, evil, evil), null)
    assert.equal(await f.c('get-count-tests-running-in-jobgroup', null, evil), 0)
  }
  // NOT IN with a hostile value is still just a value: every live test comes back.
  assert.equal((await f.c('get-tests-for-run', s.run, null, [EVIL[0]], null, 0, null, true, null, null, null, null, null)).length, 5)
  const tablesAfter = db.prepare("SELECT name FROM sqlite_master WHERE type='table' ORDER BY name").pluck().all()
  assert.deepEqual(tablesAfter, tablesBefore)
  assert.equal(db.prepare('SELECT count(*) FROM tests').pluck().get(), 5)
  assert.equal(db.prepare('SELECT count(*) FROM runs').pluck().get(), 1)
  assert.equal(db.pragma('integrity_check', { simple: true }), 'ok')
})

test('identifiers from callers (field names, columns, sort keys, key names) are whitelisted or refused', async (t) => {
  const f = fixture(t)
  const s = await seedRun(f)
  await f.c('testmeta-add-record', 'foo')
  const refused = async (p: Promise<unknown>, what: RegExp): Promise<void> => {
    await assert.rejects(p, (e: any) => e.code === 'BAD_MESSAGE' && what.test(e.message))
  }
  await refused(f.c('testmeta-update-field', 'foo', "author='x'; DROP TABLE test_meta; --", 'v'), /field/)
  await refused(f.c('testmeta-update-field', 'foo', 'author=author', 'v'), /field/)
  await refused(f.c('get-tests-for-run', s.run, null, null, null, 0, null, null, 'testname; DROP TABLE tests', null, null, null, null), /sort-by/)
  await refused(f.c('get-tests-for-run', s.run, null, null, null, 0, null, null, 'testname', 'asc; DROP TABLE tests', null, null, null), /sort-order/)
  await refused(f.c('get-tests-for-run', s.run, null, null, null, 0, null, null, null, null, 'id,(SELECT sql FROM sqlite_master)', null, null), /qryvals/)
  await refused(f.c('get-tests-for-run', s.run, null, null, null, 0, null, null, null, null, ['id', 'name FROM sqlite_master --'], null, null), /qryvals/)
  await refused(f.c('get-runs-by-patt', null, '%', '%', 0, null, ['id', 'runname FROM runs; DROP TABLE runs; --'], null), /fields/)
  await refused(f.c('get-runs', '%', null, 0, [["RELEASE' OR 1=1 --", '%']]), /keypatts/)
  await refused(f.c('insert-test', s.run, [['testname', 'x'], ['state=1; DROP TABLE tests; --', 'y']]), /record/)
  await refused(f.c('register-run', [['RELEASE', 'v1'], ['PLATFORM', 'x'], ['runname) VALUES (1); --', 'z']], 'r', 'new', 'n/a', 'u', ''), /keyvals/)
  // Hostile text as values is stored verbatim.
  const name = "o'brien\"; DROP TABLE runs; --"
  const run = await f.c('register-run', KV("v'1", 'x86'), name, 'new', 'n/a', name, '')
  assert.equal((await f.c('get-run-info', run)).rows[0][3], name)
  assert.equal(await f.c('set-var', "k'; --", "v'); DROP TABLE metadat; --"), "v'); DROP TABLE metadat; --")
  assert.equal(await f.c('get-var', "k'; --"), "v'); DROP TABLE metadat; --")
  await f.c('testmeta-update-field', 'foo', 'description', "'); DELETE FROM test_meta; --")
  assert.equal((await f.c('testmeta-get-record', 'foo')).description, "'); DELETE FROM test_meta; --")
  const db = f.peek()
  assert.equal(db.pragma('integrity_check', { simple: true }), 'ok')
  assert.equal(db.prepare('SELECT count(*) FROM tests').pluck().get(), 5)
  assert.equal(db.prepare('SELECT count(*) FROM runs').pluck().get(), 2)
  assert.equal(db.prepare('SELECT count(*) FROM test_meta').pluck().get(), 1)
})

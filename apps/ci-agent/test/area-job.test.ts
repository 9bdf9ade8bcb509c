/**
 * Reading a Megatest area as a job, and Megatest's re-run rules, on the shipped
 * fixture area (test/fixtures/megatest-area) and small areas written here.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { cpSync, mkdirSync, mkdtempSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { parseConfig } from '@evalmesh/megatest'
import { hmsToSeconds, itemsOf, readAreaJob, rerunDecision } from '../src/index.js'

const FIXTURE = join(dirname(fileURLToPath(import.meta.url)), '..', '..', '..', '..', 'test', 'fixtures', 'megatest-area')

function area (files: Record<string, string>): string {
  const dir = mkdtempSync(join(tmpdir(), 'evalmesh-area-job-'))
  for (const [name, text] of Object.entries(files)) {
    mkdirSync(dirname(join(dir, name)), { recursive: true })
    writeFileSync(join(dir, name), text)
  }
  return dir
}
const MT = '[fields]\nA TEXT\n[disks]\nd0 /tmp\n'

test('the fixture area: tests, items as real item paths, variables by target', () => {
  const dir = mkdtempSync(join(tmpdir(), 'evalmesh-area-job-'))
  cpSync(FIXTURE, dir, { recursive: true })
  const { job, notes } = readAreaJob(dir, { target: 'ubuntu/v1.0', runname: 'r' })
  assert.deepEqual(notes, [])
  assert.deepEqual(job.tests.map(t => t.name), ['compile', 'docs', 'lint', 'package', 'regress', 'setup', 'slowpoke', 'unit'])
  const compile = job.tests.find(t => t.name === 'compile')!
  assert.deepEqual(compile.items, ['x86/debug', 'x86/release', 'arm/debug', 'arm/release'])
  assert.deepEqual(compile.itemVars?.['arm/debug'], { ARCH: 'arm', MODE: 'debug' })
  assert.equal(job.tests.find(t => t.name === 'unit')!.mode, 'itemwait')
  assert.equal(job.tests.find(t => t.name === 'slowpoke')!.runtimeLimitMs, 2000)
  assert.equal(job.tests.find(t => t.name === 'docs')!.runtimeLimitMs, 600_000, '[setup] runtimelim is the default')
  assert.equal(job.env?.OPTLEVEL, '3', '[ubuntu/%] overrides [default]')
  assert.equal(job.env?.BANNER, 'first-ubuntu')
  assert.equal(job.concurrency, 4)
  const other = readAreaJob(dir, { target: 'debian/v2', runname: 'r' })
  assert.equal(other.job.env?.OPTLEVEL, '2')
  assert.match(other.notes[0]!, /no section for target debian\/v2/)
})

test('[items] cross product in order, then [itemstable] rows with "-" for short columns', () => {
  const tc = parseConfig('[items]\nX a b\nY 1 2 3\n[itemstable]\nP p q\nQ z\n', '/x')
  assert.deepEqual(itemsOf(tc).map(it => it.map(([, v]) => v).join('/')), ['a/1', 'a/2', 'a/3', 'b/1', 'b/2', 'b/3', 'p/z', 'q/-'])
})

test('bad areas are refused with the problem named', () => {
  assert.throws(() => readAreaJob(area({ 'megatest.config': MT, 'tests/a/testconfig': '[requirements]\nwaiton zz\n[ezsteps]\ns true\n' }), { target: 't', runname: 'r' }),
    /tests\/a\/testconfig: waiton zz, which is not a test of this area/)
  assert.throws(() => readAreaJob(area({ 'megatest.config': MT, 'tests/a/testconfig': '[requirements]\nwaiton b\n[ezsteps]\ns true\n', 'tests/b/testconfig': '[requirements]\nwaiton a\n[ezsteps]\ns true\n' }), { target: 't', runname: 'r' }),
    /waitons form a cycle: a -> b -> a/)
  assert.throws(() => readAreaJob(area({ 'megatest.config': MT, 'tests/a/testconfig': '[test_meta]\nauthor me\n' }), { target: 't', runname: 'r' }),
    /no \[ezsteps\] and no \[setup\] runscript/)
  assert.throws(() => readAreaJob(area({ 'megatest.config': '[fields]\nA TEXT\n', 'tests/a/testconfig': '[ezsteps]\ns true\n' }), { target: 't', runname: 'r' }),
    /has no \[disks\] section/)
  assert.throws(() => readAreaJob(area({ 'megatest.config': MT, 'tests/a/testconfig': '[requirements]\nmode sideways\n[ezsteps]\ns true\n' }), { target: 't', runname: 'r' }),
    /mode sideways: evalmesh knows normal, toplevel, itemwait, itemmatch/)
  assert.throws(() => readAreaJob(area({ 'x.config': '' }), { target: 't', runname: 'r' }), /is not a Megatest area: it has no megatest.config/)
})

test('[setup] runscript runs as one step when there are no ezsteps', () => {
  const { job } = readAreaJob(area({ 'megatest.config': MT, 'tests/a/testconfig': '[setup]\nrunscript main.sh\n' }), { target: 't', runname: 'r' })
  assert.deepEqual(job.tests[0]!.steps, [{ name: 'main.sh', shell: './main.sh' }])
})

test('runtimelim as common:hms-string->seconds', () => {
  assert.equal(hmsToSeconds('1h 30m'), 5400)
  assert.equal(hmsToSeconds('2d 5s'), 172805)
  assert.equal(hmsToSeconds('45'), 45)
})

test('Megatest\'s re-run rules (runs.scm run:test, megatest.scm -rerun-clean/-rerun-all)', () => {
  const run = (state: string, status: string, policy = {}): boolean => rerunDecision(state, status, policy) === null
  assert.ok(run('NOT_STARTED', 'n/a'))
  assert.ok(run('NOT_STARTED', 'PREQ_FAIL'))
  assert.ok(run('INCOMPLETE', 'DEAD'))
  assert.ok(!run('COMPLETED', 'PASS'))
  assert.ok(!run('COMPLETED', 'FAIL'), 'COMPLETED is not run again without -rerun')
  assert.ok(run('COMPLETED', 'FAIL', { statuses: ['FAIL'] }))
  assert.ok(!run('COMPLETED', 'PASS', { statuses: ['FAIL'] }))
  assert.ok(!run('KILLED', 'KILLED'))
  assert.ok(!run('RUNNING', 'n/a'))
  assert.ok(run('KILLED', 'KILLED', { clean: true }))
  assert.ok(run('COMPLETED', 'ABORT', { clean: true }))
  assert.ok(!run('COMPLETED', 'WARN', { clean: true }))
  assert.ok(run('COMPLETED', 'PASS', { all: true }))
  assert.match(rerunDecision('COMPLETED', 'PASS')!, /--rerun PASS runs it again/)
})

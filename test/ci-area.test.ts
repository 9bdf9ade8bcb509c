/**
 * `evalmesh ci run --area DIR` end to end: a Megatest area read from its own files
 * (test/fixtures/megatest-area: megatest.config, runconfigs.config, eight testconfigs
 * with ezsteps, items, an item table, waitons, itemwait, a runtimelim and a failing
 * step), run through the real CLI on real nodes (an area node serving the area on
 * real SQLite, workers with the ezstep function running the steps in bash). Checks
 * what a Megatest user would look at: the records in the area's database, the run
 * directories and logs under the link tree, re-runs that skip what completed,
 * -rerun, PREQ_FAIL, and -testpatt selection.
 */
import { after, before, describe, test } from 'node:test'
import assert from 'node:assert/strict'
import { cpSync, existsSync, lstatSync, readFileSync, realpathSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { Client } from '@evalmesh/client'
import { listServers } from '@evalmesh/megatest'
import { readRuns, type RunReport, type RunSummary, type TestReport } from '@evalmesh/ci-agent'
import { ROOT, newMesh, startNode, tempDir, type TestNode } from './support/node.js'
import { runCiCli } from './support/ci-cli.js'

/** ci run --json's summary: the value of a passed run, the error's summary of one that did not pass. */
function summaryOf (stdout: string): RunSummary {
  const j = JSON.parse(stdout) as { ok: true, value: RunSummary } | { ok: false, error: { code: string, summary: RunSummary } }
  if (j.ok) return j.value
  assert.equal(j.error.code, 'RUN_FAILED')
  return j.error.summary
}

const FIXTURE = join(ROOT, 'test', 'fixtures', 'megatest-area')
const EZSTEP = join(ROOT, 'apps', 'ci-agent', 'dist', 'src', 'ezstep.js')

/** A state dir holding the shared mesh key: nodes and clients made from these trust each other. */
const meshDir = newMesh('evalmesh-ci-area-mesh-')

const cli = runCiCli

describe('a Megatest area run from its own files', () => {
  let areaDir: string
  let areaNode: TestNode
  let workers: TestNode[] = []
  let clientDir: string
  let client: Client

  const run = async (runname: string, ...extra: string[]): Promise<{ code: number | null, summary: RunSummary, stderr: string }> => {
    const r = await cli(['ci', 'run', '--area', areaDir, '--target', 'ubuntu/v1.0', '--runname', runname, '--json', '--state-dir', clientDir, ...extra])
    let summary: RunSummary
    try { summary = summaryOf(r.stdout) } catch { throw new Error(`ci run printed no JSON (exit ${r.code}):\n${r.stdout}\n${r.stderr}`) }
    return { code: r.code, summary, stderr: r.stderr }
  }
  const report = async (runname: string): Promise<RunReport> => {
    const [r] = await readRuns(client, areaNode.host, 'mt', runname)
    return r!
  }
  const testOf = (r: RunReport, name: string, item = ''): TestReport => {
    const t = r.tests.find(x => x.testname === name && x.item_path === item)
    assert.ok(t !== undefined, `run ${r.runname} has ${name}/${item}: ${r.tests.map(x => `${x.testname}/${x.item_path}`).join(' ')}`)
    return t
  }
  const log = (t: TestReport, file = t.final_logf): string => readFileSync(join(t.rundir, file), 'utf8')

  before(async () => {
    areaDir = join(tempDir('evalmesh-ci-area-'), 'area')
    cpSync(FIXTURE, areaDir, { recursive: true })
    areaDir = realpathSync(areaDir)
    // The area node records; it takes no tests (no ezstep function, no broadcasts).
    areaNode = await startNode(['--area', `mt=${areaDir}`, '--gags', 'broadcast'], { stateDir: meshDir(), name: 'area' })
    workers = await Promise.all(['w1', 'w2'].map(async name => await startNode(['--functions', EZSTEP, '--concurrency', '4', '--timeout', '60000'], { stateDir: meshDir(), name })))
    clientDir = meshDir()
    writeFileSync(join(clientDir, 'peers'), workers.map(w => `${w.name} 127.0.0.1:${w.port}`).join('\n') + '\n')
    client = new Client({ stateDir: clientDir })
  })
  after(async () => {
    client.close()
    await Promise.all([areaNode, ...workers].map(async n => await n.stop()))
    // A node the CLI started for the area (the last test) is ours to stop, by its pid.
    for (const reg of listServers(areaDir)) if (reg.pid !== areaNode.proc.pid) { try { process.kill(reg.pid, 'SIGTERM') } catch { /* gone */ } }
  })

  test('every test runs in its own run directory under the link tree, recorded as Megatest records it', async () => {
    const { code, summary } = await run('r1')
    assert.equal(code, 1, 'lint fails, so the run does not pass')
    assert.equal(summary.area, 'mt')
    const r = await report('r1')
    assert.equal(r.target, 'ubuntu/v1.0')
    const byName = (name: string, item = ''): string => { const t = testOf(r, name, item); return `${t.state}/${t.status}` }

    // ezsteps, with the target's and runconfigs' variables ([default], [ubuntu/%], [ubuntu/v1.0], $VAR and #{get}).
    assert.equal(byName('setup'), 'COMPLETED/PASS')
    const setup = testOf(r, 'setup')
    assert.equal(setup.rundir, join(areaDir, 'lt', 'ubuntu', 'v1.0', 'r1', 'setup'))
    assert.ok(lstatSync(setup.rundir).isSymbolicLink(), 'the link tree entry links to the disk')
    assert.equal(realpathSync(setup.rundir), join(areaDir, 'runs', 'ubuntu', 'v1.0', 'r1', 'setup'))
    assert.equal(log(setup, 'prepare.log'), 'preparing ubuntu v1.0 opt 3 banner first-ubuntu\nhello from the area\n')
    assert.equal(setup.final_logf, 'where.log', 'the last step\'s log is the test\'s log')
    assert.equal(log(setup), 'in setup for r1\n')
    assert.deepEqual(setup.steps.map(s => `${s.stepname} ${s.state} ${s.status} ${s.logfile}`),
      ['prepare start - ', 'prepare end 0 prepare.log', 'where start - ', 'where end 0 where.log'], 'an ezstep ends with its exit code')

    // [items]: a cross product with real item paths, each its own directory; the test's files copied in.
    for (const item of ['x86/debug', 'x86/release', 'arm/debug']) {
      const t = testOf(r, 'compile', item)
      assert.equal(`${t.state}/${t.status}`, 'COMPLETED/PASS', item)
      assert.equal(t.rundir, join(areaDir, 'lt', 'ubuntu', 'v1.0', 'r1', 'compile', item))
      const [arch, mode] = item.split('/')
      assert.equal(log(t), `building for ${arch} in ${mode} mode (item ${item})\n`)
      assert.ok(existsSync(join(t.rundir, `artifact-${arch}-${mode}`)), 'build.sh ran in the item\'s directory')
    }
    const broken = testOf(r, 'compile', 'arm/release')
    assert.equal(`${broken.state}/${broken.status}`, 'COMPLETED/FAIL')
    assert.match(log(broken), /no arm release toolchain/)
    assert.equal(broken.steps.find(s => s.state === 'end')?.status, '2')
    assert.equal(byName('compile'), 'COMPLETED/FAIL', 'items roll up into the toplevel')
    assert.equal(testOf(r, 'compile').rundir, join(areaDir, 'lt', 'ubuntu', 'v1.0', 'r1', 'compile'))

    // mode itemwait: each unit item waits on the same compile item only.
    for (const item of ['x86/debug', 'x86/release', 'arm/debug']) assert.equal(byName('unit', item), 'COMPLETED/PASS', item)
    assert.equal(byName('unit', 'arm/release'), 'NOT_STARTED/PREQ_FAIL')

    // [itemstable]: one item per column, "-" for a short row.
    assert.deepEqual(r.tests.filter(t => t.testname === 'regress' && t.item_path !== '').map(t => `${t.item_path} ${t.state}/${t.status}`),
      ['alpha/1 COMPLETED/PASS', 'beta/2 COMPLETED/PASS', 'gamma/- COMPLETED/PASS'])
    assert.equal(log(testOf(r, 'regress', 'gamma/-')), 'suite gamma size -\n')

    // The failing step ends the test; the step after it never runs.
    const lint = testOf(r, 'lint')
    assert.equal(`${lint.state}/${lint.status}`, 'COMPLETED/FAIL')
    assert.deepEqual(lint.steps.filter(s => s.state === 'end').map(s => `${s.stepname} ${s.status}`), ['style 0', 'check 3'])
    assert.equal(lint.final_logf, 'check.log')
    assert.equal(log(lint), 'lint: 3 problems\n')
    assert.ok(!existsSync(join(lint.rundir, 'never.log')))

    // A test waiting on the failing one does not run.
    assert.equal(byName('package'), 'NOT_STARTED/PREQ_FAIL')
    assert.equal(testOf(r, 'package').steps.length, 0)

    // runtimelim 2s on a 30 s step: killed as Megatest's monitor kills it.
    const slow = testOf(r, 'slowpoke')
    assert.equal(`${slow.state}/${slow.status}`, 'KILLED/KILLED')
    assert.match(slow.comment, /Run time limit exceeded/)

    // [pre-launch-env-vars], expanded from the run's variables.
    assert.equal(log(testOf(r, 'docs')), 'docs as html-3\n')
    assert.equal(`${r.state}/${r.status}`, 'NOT_STARTED/PREQ_FAIL', 'Megatest\'s roll-up: a PREQ_FAIL toplevel outranks the KILLED one')
  })

  test('a re-run skips what completed; -rerun FAIL runs the failures again', async () => {
    const before = await report('r1')
    const { summary } = await run('r1')
    const skipped = summary.units.filter(u => u.skipped === true).map(u => u.item === '' ? u.test : `${u.test}/${u.item}`).sort()
    assert.deepEqual(skipped, ['compile/arm/debug', 'compile/arm/release', 'compile/x86/debug', 'compile/x86/release', 'docs', 'lint', 'regress/alpha/1', 'regress/beta/2', 'regress/gamma/-', 'setup', 'slowpoke',
      'unit/arm/debug', 'unit/x86/debug', 'unit/x86/release'])
    assert.deepEqual(summary.units.filter(u => u.skipped !== true).map(u => `${u.test}/${u.item} ${u.state}/${u.status}`).sort(),
      ['package/ NOT_STARTED/PREQ_FAIL', 'unit/arm/release NOT_STARTED/PREQ_FAIL'], 'NOT_STARTED tests are tried again')
    const after = await report('r1')
    assert.deepEqual(testOf(after, 'setup').steps, testOf(before, 'setup').steps, 'a skipped test keeps its records')

    const again = await run('r1', '--rerun', 'FAIL')
    const ran = again.summary.units.filter(u => u.skipped !== true).map(u => `${u.test}/${u.item}`).sort()
    assert.deepEqual(ran, ['compile/arm/release', 'lint/', 'package/', 'unit/arm/release'])
    const lint = testOf(await report('r1'), 'lint')
    assert.equal(`${lint.state}/${lint.status}`, 'COMPLETED/FAIL')
    assert.equal(lint.steps.filter(s => s.state === 'end').length, 2, 'the re-run replaced its steps')
  })

  test('-testpatt selects tests and items, and the tests they wait on run too', async () => {
    const { code, summary } = await run('r2', '--testpatt', 'regress/beta%,docs')
    assert.equal(code, 0)
    assert.deepEqual(summary.units.map(u => `${u.test}/${u.item}`).sort(), ['docs/', 'regress/beta/2', 'setup/'])
    const r = await report('r2')
    assert.deepEqual([...new Set(r.tests.map(t => t.testname))].sort(), ['docs', 'regress', 'setup'])
    assert.equal(r.state, 'COMPLETED')
    assert.equal(r.status, 'PASS')
    assert.equal(testOf(r, 'regress', 'beta/2').rundir, join(areaDir, 'lt', 'ubuntu', 'v1.0', 'r2', 'regress', 'beta/2'))
  })

  test('a bad selection is refused before anything is recorded', async () => {
    const bad = await cli(['ci', 'run', '--area', areaDir, '--target', 'ubuntu', '--runname', 'r3', '--state-dir', clientDir])
    assert.notEqual(bad.code, 0)
    assert.match(bad.stderr, /target "ubuntu" must give 2 value\(s\) joined by "\/", for the area's keys SYSTEM\/RELEASE/)
    const none = await cli(['ci', 'run', '--area', areaDir, '--target', 'ubuntu/v1.0', '--runname', 'r3', '--testpatt', 'nosuch', '--state-dir', clientDir])
    assert.notEqual(none.code, 0)
    assert.match(none.stderr, /testpatt "nosuch" selects no test/)
    await assert.rejects(readRuns(client, areaNode.host, 'mt', 'r3'), /has no run named "r3"/)
  })
  test('the area\'s node killed mid-run: ci run starts another on the area and the run is recorded to its end', async () => {
    const r = cli(['ci', 'run', '--area', areaDir, '--target', 'ubuntu/v1.0', '--runname', 'r4', '--testpatt', 'slowpoke', '--json', '--state-dir', clientDir])
    // The run directory exists once the test is launched; its 30 s step then runs (until its 2 s runtimelim).
    const dir = join(areaDir, 'lt', 'ubuntu', 'v1.0', 'r4', 'slowpoke', 'nap.log')
    for (let i = 0; i < 200 && !existsSync(dir); i++) await new Promise(resolve => setTimeout(resolve, 50))
    assert.ok(existsSync(dir), 'the step started')
    areaNode.proc.kill('SIGKILL')
    const out = await r
    const summary = summaryOf(out.stdout)
    assert.notEqual(summary.areaHost, areaNode.host, 'another node serves the area now')
    const [rep] = await readRuns(client, summary.areaHost, 'mt', 'r4')
    const slow = rep!.tests.find(t => t.testname === 'slowpoke')!
    assert.equal(`${slow.state}/${slow.status}`, 'KILLED/KILLED')
    assert.deepEqual(slow.steps.map(s => `${s.stepname} ${s.state}`), ['nap start', 'nap end'], 'the step\'s end was recorded on the new node')
    assert.equal(rep!.state, 'KILLED')
  })

})

/**
 * The CI agent end to end: real nodes on loopback (an area node serving Megatest on
 * real SQLite, worker nodes taking tests by broadcast), real isolates, the CLI.
 * Checks what a CI user sees: the states and statuses Megatest would give each
 * outcome, steps and test data recorded, roll-ups, summary, exit code, `ci status`.
 */
import { after, before, describe, test } from 'node:test'
import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { Client, type BroadcastConfig } from '@evalmesh/client'
import { parseJob, readRuns, runJob, type CiEvent, type JobSpec, type RunSummary } from '@evalmesh/ci-agent'
import { ROOT, newMesh, startNode, tempDir, writeFile, type TestNode } from './support/node.js'
import { runCiCli, type CliResult } from './support/ci-cli.js'

/** A state dir holding the shared mesh key: nodes and clients made from these trust each other. */
const meshDir = newMesh('evalmesh-ci-mesh-')

const FNS = `
export async function sleep (ms) {
  await new Promise((resolve, reject) => {
    const t = setTimeout(resolve, ms)
    this.signal.addEventListener('abort', () => { clearTimeout(t); reject(new Error('stopped')) }, { once: true })
  })
  return { status: 'PASS', comment: 'slept ' + ms }
}
export function measure (name, value, expected) {
  return { status: 'PASS', comment: 'measured for ' + this.peer.name, data: [{ category: 'perf', variable: name, value, expected, tol: 1, units: 'ms' }] }
}
`

async function cli (args: string[], env: Record<string, string> = {}): Promise<CliResult> {
  return await runCiCli(args, { env })
}

describe('a CI run across several nodes', () => {
  const areaDir = tempDir('evalmesh-ci-area-')
  let areaNode: TestNode
  let workers: TestNode[] = []
  let client: Client
  let broadcast: BroadcastConfig
  let clientDir: string

  before(async () => {
    const fns = writeFile(tempDir(), 'fns.mjs', FNS)
    areaNode = await startNode(['--area', `ci=${areaDir}`, '--keys', 'RELEASE,PLATFORM', '--gags', 'broadcast'], { stateDir: meshDir(), name: 'area' })
    workers = await Promise.all(['w1', 'w2', 'w3'].map(async name => await startNode(['--functions', fns, '--concurrency', '3', '--timeout', '60000'], { stateDir: meshDir(), name })))
    clientDir = meshDir()
    broadcast = { targets: workers.map(w => ({ address: '127.0.0.1', port: w.port })) }
    client = new Client({ stateDir: clientDir, broadcast })
    // The CLI finds the workers through the peers file of its state dir.
    writeFileSync(join(clientDir, 'peers'), workers.map(w => `${w.name} 127.0.0.1:${w.port}`).join('\n') + '\n')
  })
  after(async () => {
    client.close()
    await Promise.all([areaNode, ...workers].map(async n => await n.stop()))
  })

  test('a mixed run: passes, items, test data, a failing step, a failed prerequisite, an abort, a time limit', async () => {
    const job: JobSpec = parseJob({
      area: 'ci',
      target: { RELEASE: 'v1', PLATFORM: 'x86' },
      runname: 'mixed',
      concurrency: 4,
      tests: [
        { name: 'build', steps: [
          { name: 'compile', form: 'globalThis.built = ci.test + "@" + ci.target; ({ status: "PASS", comment: built })' },
          { name: 'link', form: 'built.length > 0' }
        ] },
        { name: 'unit', waiton: ['build'], items: ['a', 'b', 'c'], steps: [
          { name: 'run', form: '({ data: [{ category: "unit", variable: "n_" + ci.item, value: ci.item.charCodeAt(0), expected: ci.item.charCodeAt(0), tol: 0 }] })' },
          { name: 'measure', fn: 'measure', args: ['t_{item}', 10, 10.5] }
        ] },
        { name: 'lint', steps: [
          { name: 'eslint', form: 'throw new SyntaxError("3 problems in src/x.ts")' },
          { name: 'never', form: '"not reached"' }
        ] },
        { name: 'docs', waiton: ['lint'], steps: [{ name: 'build-docs', form: '1' }] },
        { name: 'publish', waiton: ['docs', 'build'], steps: [{ name: 'upload', form: '1' }] },
        { name: 'soak', steps: [{ name: 'wait', fn: 'sleep', args: [60000] }] },
        { name: 'perf', steps: [{ name: 'spin', form: 'while (true) {}', timeoutMs: 300 }] },
        { name: 'bench', steps: [{ name: 'numbers', form: '({ data: "perf,latency,12,10,1,ms" })' }] }
      ]
    })
    const events: CiEvent[] = []
    const operator = new Client({ stateDir: clientDir })
    const aborts: Array<Promise<unknown>> = []
    const summary = await runJob(job, {
      client,
      broadcast,
      areaHost: areaNode.host,
      onEvent: (e) => {
        events.push(e)
        // An operator aborts the soak test's running step (evalmesh abort TXN --host H).
        if (e.kind === 'step' && e.phase === 'start' && e.unit.test === 'soak') aborts.push(operator.remoteAbort(e.txn, e.host, { reason: 'operator: soak not needed today' }))
      }
    })
    await Promise.all(aborts)
    operator.close()
    const by = (name: string, item = ''): RunSummary['units'][number] => summary.units.find(u => u.test === name && u.item === item)!
    const ss = (name: string, item = ''): string => `${by(name, item).state}/${by(name, item).status}`

    assert.equal(ss('build'), 'COMPLETED/PASS')
    assert.deepEqual(by('build').steps.map(s => [s.name, s.status]), [['compile', 'PASS'], ['link', 'PASS']])
    for (const item of ['a', 'b', 'c']) assert.equal(ss('unit', item), 'COMPLETED/PASS')
    assert.equal(ss('lint'), 'COMPLETED/FAIL')
    assert.match(by('lint').comment, /eslint failed: SyntaxError: 3 problems/)
    assert.deepEqual(by('lint').steps.map(s => s.name), ['eslint'], 'steps after a failing step do not run')
    assert.equal(ss('docs'), 'NOT_STARTED/PREQ_FAIL')
    assert.match(by('docs').comment, /prerequisite lint did not pass/)
    assert.equal(ss('publish'), 'NOT_STARTED/PREQ_FAIL', 'a failed prerequisite propagates')
    assert.equal(ss('soak'), 'KILLED/ABORT')
    assert.match(by('soak').comment, /aborted/)
    assert.equal(ss('perf'), 'KILLED/ABORT')
    assert.match(by('perf').comment, /time limit of 300 ms/)
    assert.equal(ss('bench'), 'COMPLETED/FAIL', 'test data out of tolerance fails the test')
    // Megatest's roll-up over the toplevels: a PREQ_FAIL toplevel makes the run NOT_STARTED/PREQ_FAIL.
    assert.equal(summary.state, 'NOT_STARTED')
    assert.equal(summary.status, 'PREQ_FAIL', 'the run rolls up its toplevel tests as Megatest does')
    assert.equal(summary.passed, false)
    // Tests ran on the workers, never on the area node (it gags broadcasts).
    const nodes = new Set(summary.units.filter(u => u.node !== null).map(u => u.node))
    assert.ok([...nodes].every(n => ['w1', 'w2', 'w3'].includes(n!)), [...nodes].join(','))
    // Waiton order: unit items started only after build ended.
    const buildEnd = events.findIndex(e => e.kind === 'ended' && e.unit.test === 'build')
    const unitStart = events.findIndex(e => e.kind === 'started' && e.unit.test === 'unit')
    assert.ok(buildEnd >= 0 && unitStart > buildEnd)

    // What Megatest recorded, read back through the API from the area node.
    const [run] = await readRuns(client, areaNode.host, 'ci', summary.runId)
    assert.ok(run !== undefined)
    assert.equal(`${run.state}/${run.status}`, 'NOT_STARTED/PREQ_FAIL')
    assert.equal(run.target, 'v1/x86')
    const rec = (name: string, item = ''): typeof run.tests[number] => run.tests.find(t => t.testname === name && t.item_path === item)!
    assert.equal(`${rec('unit').state}/${rec('unit').status}`, 'COMPLETED/PASS', 'items roll up into the toplevel')
    assert.equal(`${rec('docs').state}/${rec('docs').status}`, 'NOT_STARTED/PREQ_FAIL')
    assert.equal(`${rec('soak').state}/${rec('soak').status}`, 'KILLED/ABORT')
    assert.ok(['w1', 'w2', 'w3'].includes(rec('build').host), 'the node that ran it is the test host')
    assert.deepEqual(rec('build').steps.map(s => [s.stepname, s.state, s.status]),
      [['compile', 'start', '-'], ['compile', 'end', 'PASS'], ['link', 'start', '-'], ['link', 'end', 'PASS']])
    assert.equal(rec('build').steps[1]!.comment, 'build@v1/x86', 'a form sees its test through ci')
    const unitB = rec('unit', 'b')
    assert.deepEqual(unitB.data.map(d => [d.category, d.variable, d.status]).sort(), [['perf', 't_b', 'pass'], ['unit', 'n_b', 'pass']])
    assert.match(unitB.steps.find(s => s.stepname === 'measure' && s.state === 'end')!.comment, /^measured for /)
    assert.equal(rec('bench').data[0]!.status, 'fail')
    assert.deepEqual(rec('lint').steps.map(s => [s.stepname, s.state, s.status]), [['eslint', 'start', '-'], ['eslint', 'end', 'FAIL']])
    // The run's task went to done and run stats were kept.
    const stats = await client.remoteApply('megatest.get-raw-run-stats', ['ci', summary.runId], areaNode.host) as Array<[string, string, number]>
    assert.ok(stats.some(([st, ss2, n]) => st === 'COMPLETED' && ss2 === 'PASS' && n >= 4))
  })

  test('a node killed mid-test: the test ends COMPLETED/DEAD, the rest of the run goes on', async () => {
    const fns = writeFile(tempDir(), 'fns.mjs', FNS)
    const victim = await startNode(['--functions', fns], { stateDir: meshDir(), name: 'victim' })
    const only = new Client({ stateDir: clientDir, broadcast: { targets: [{ address: '127.0.0.1', port: victim.port }] } })
    try {
      const job = parseJob({
        area: 'ci', target: { RELEASE: 'v1', PLATFORM: 'arm' }, runname: 'dies', claimTimeoutMs: 3000,
        tests: [
          { name: 'long', steps: [{ name: 'prepare', form: '1' }, { name: 'work', fn: 'sleep', args: [60000] }] },
          { name: 'after', waiton: ['long'], steps: [{ name: 'x', form: '1' }] }
        ]
      })
      const summary = await runJob(job, {
        client: only,
        broadcast: { targets: [{ address: '127.0.0.1', port: victim.port }] },
        areaHost: areaNode.host,
        onEvent: (e) => { if (e.kind === 'step' && e.phase === 'start' && e.step === 'work') victim.proc.kill('SIGKILL') }
      })
      const long = summary.units.find(u => u.test === 'long')!
      assert.equal(`${long.state}/${long.status}`, 'COMPLETED/DEAD')
      assert.match(long.comment, /LOST|CONNECT_FAILED/)
      assert.deepEqual(long.steps.map(s => [s.name, s.status]), [['prepare', 'PASS'], ['work', 'DEAD']])
      const afterTest = summary.units.find(u => u.test === 'after')!
      assert.equal(`${afterTest.state}/${afterTest.status}`, 'NOT_STARTED/PREQ_FAIL')
      assert.equal(`${summary.state}/${summary.status}`, 'NOT_STARTED/PREQ_FAIL')
      const [run] = await readRuns(only, areaNode.host, 'ci', 'dies')
      assert.equal(run!.tests.find(t => t.testname === 'long')!.status, 'DEAD')
    } finally {
      only.close()
      await victim.stop()
    }
  })

  test('no willing node: the test ends COMPLETED/DEAD after its claim timeout', async () => {
    const nobody = { targets: [{ address: '127.0.0.1', port: areaNode.port }] } // gags broadcast
    const c = new Client({ stateDir: clientDir, broadcast: nobody })
    try {
      const summary = await runJob(parseJob({ area: 'ci', target: { RELEASE: 'v1', PLATFORM: 'none' }, runname: 'orphan', claimTimeoutMs: 1500, tests: [{ name: 't', steps: [{ name: 's', form: '1' }] }] }),
        { client: c, broadcast: nobody, areaHost: areaNode.host })
      assert.equal(`${summary.units[0]!.state}/${summary.units[0]!.status}`, 'COMPLETED/DEAD')
      assert.match(summary.units[0]!.comment, /NO_WILLING_SERVER/)
    } finally {
      c.close()
    }
  })

  test('evalmesh ci run: plain progress lines, a summary, exit 0 on a pass and 1 otherwise; ci status from another node', async () => {
    const dir = tempDir()
    const good = writeFile(dir, 'good.json', JSON.stringify({
      area: 'ci', target: { RELEASE: 'v2', PLATFORM: 'x86' }, runname: 'cli-good',
      tests: [{ name: 'compile', items: ['x', 'y'], steps: [{ name: 's1', form: '"ok " + ci.item' }] }]
    }))
    const r = await cli(['ci', 'run', good, '--host', areaNode.host, '--state-dir', clientDir])
    assert.equal(r.code, 0, r.stdout + r.stderr)
    assert.match(r.stdout, /run cli-good \(id \d+, target v2\/x86\): 2 test\(s\)/)
    assert.match(r.stdout, /RUNNING +compile\/x on w\d/)
    assert.match(r.stdout, /COMPLETED +compile\/y: PASS/)
    assert.match(r.stdout, /COMPLETED\/PASS in [\d.]+ s; 2 PASS/)
    assert.doesNotMatch(r.stdout, /\r/, 'no progress bar when stdout is not a terminal')

    const bad = writeFile(dir, 'bad.json', JSON.stringify({
      area: 'ci', target: { RELEASE: 'v2', PLATFORM: 'x86' }, runname: 'cli-bad',
      tests: [{ name: 'fails', steps: [{ name: 's1', form: '({ status: "FAIL", comment: "expected 2 got 3" })' }] }]
    }))
    const rb = await cli(['ci', 'run', bad, '--host', areaNode.host, '--state-dir', clientDir, '--json'])
    assert.equal(rb.code, 1, rb.stdout + rb.stderr)
    const failed = JSON.parse(rb.stdout) as { ok: false, error: { code: string, summary: RunSummary } }
    assert.equal(failed.error.code, 'RUN_FAILED')
    const js = failed.error.summary
    assert.equal(`${js.state}/${js.status}`, 'COMPLETED/FAIL')
    assert.equal(js.units[0]!.comment, 'step s1 failed: expected 2 got 3')

    // Another node serving the same area read-only shows the recorded run.
    const reader = await startNode(['--area', `ci=${areaDir}`, '--read-only'], { stateDir: meshDir(), name: 'reader' })
    try {
      const st = await cli(['ci', 'status', 'cli-good', '--host', reader.host, '--state-dir', clientDir])
      assert.equal(st.code, 0, st.stderr)
      assert.match(st.stdout, /run cli-good \(id \d+, target v2\/x86, owner [^)]+\): COMPLETED\/PASS/)
      assert.match(st.stdout, /compile\/x +COMPLETED +PASS +w\d/)
      assert.match(st.stdout, /s1 \(end\) +PASS/)
      const sj = await cli(['ci', 'status', String(js.runId), '--host', reader.host, '--state-dir', clientDir, '--json'])
      const rep = (JSON.parse(sj.stdout) as { value: { status: string, tests: Array<{ steps: Array<{ comment: string }> }> } }).value
      assert.equal(rep.status, 'FAIL')
      assert.equal(rep.tests[0]!.steps[1]!.comment, 'expected 2 got 3')
      const none = await cli(['ci', 'status', 'no-such-run', '--host', reader.host, '--state-dir', clientDir])
      assert.equal(none.code, 1)
      assert.match(none.stderr, /has no run named "no-such-run"/)
    } finally {
      await reader.stop()
    }
  })

  test('on a terminal, ci run draws a progress bar', async () => {
    const dir = tempDir()
    const job = writeFile(dir, 'tty.json', JSON.stringify({
      area: 'ci', target: { RELEASE: 'v3', PLATFORM: 'x86' }, runname: 'tty',
      tests: [{ name: 't', items: ['1', '2', '3'], steps: [{ name: 's', form: '1' }] }]
    }))
    const runner = writeFile(dir, 'cli.mjs', `
      const { main, commands } = await import(${JSON.stringify(join(ROOT, 'apps/cli/dist/src/main.js'))})
      const ci = await import(${JSON.stringify(join(ROOT, 'apps/cli/dist/src/commands/ci.js'))})
      for (const c of [ci.ciCmd]) if (!commands.some(x => x.name === c.name)) commands.push(c)
      process.exitCode = await main(process.argv.slice(2))
    `)
    // script(1) gives the command a pseudo-terminal as stdout.
    const cmd = [process.execPath, '--no-node-snapshot', runner, 'ci', 'run', job, '--host', areaNode.host, '--state-dir', clientDir].map(a => `'${a}'`).join(' ')
    const proc = spawn('script', ['-qec', cmd, '/dev/null'], { stdio: ['ignore', 'pipe', 'pipe'] })
    let out = ''
    proc.stdout.on('data', (c: Buffer) => { out += c.toString() })
    const timer = setTimeout(() => proc.kill('SIGKILL'), 120_000)
    const code = await new Promise<number | null>(resolve => proc.once('exit', resolve))
    clearTimeout(timer)
    assert.equal(code, 0, out)
    assert.match(out, /\r\x1b\[K\[#*\.*\] [0-3]\/3 ended {2}\d+ running/, 'a bar redrawn in place')
    assert.match(out, /\[#{30}\] 3\/3 ended/, 'full at the end')
    assert.match(out, /COMPLETED\/PASS in [\d.]+ s; 3 PASS/)
  })

  test('bad job files are refused before anything is recorded, with the problem named', async () => {
    const dir = tempDir()
    const cases: Array<[unknown, RegExp]> = [
      [{ area: 'ci', target: { RELEASE: 'v1' }, runname: 'x', tests: [] }, /tests: must be a non-empty array/],
      [{ area: 'ci', target: { RELEASE: 'v1' }, runname: 'x', tests: [{ name: 'a', steps: [{ name: 's' }] }] }, /needs a form .* or a fn/],
      [{ area: 'ci', target: { RELEASE: 'v1' }, runname: 'x', tests: [{ name: 'a', waiton: ['b'], steps: [{ name: 's', form: '1' }] }, { name: 'b', waiton: ['a'], steps: [{ name: 's', form: '1' }] }] }, /cycle: a -> b -> a/],
      [{ area: 'ci', target: { RELEASE: 'v1' }, runname: 'x', tests: [{ name: 'a', waiton: ['zz'], steps: [{ name: 's', form: '1' }] }] }, /waits on "zz", which is not a test/],
      [{ area: 'ci', target: { RELEASE: 'v1' }, runname: 'x', tests: [{ name: 'a b', steps: [{ name: 's', form: '1' }] }] }, /"a b" must be letters/],
      [{ area: 'ci', target: { RELEASE: 'v1' }, runname: 'x', tets: [] }, /unknown field "tets"/]
    ]
    for (const [job, pattern] of cases) assert.throws(() => parseJob(job), (err: Error & { code?: string }) => err.code === 'BAD_JOB' && pattern.test(err.message))
    const notJson = writeFile(dir, 'broken.json', '{ "area": ')
    const r = await cli(['ci', 'run', notJson, '--host', areaNode.host, '--state-dir', clientDir])
    assert.equal(r.code, 1)
    assert.match(r.stderr, /is not JSON/)
    const wrongKeys = writeFile(dir, 'keys.json', JSON.stringify({ area: 'ci', target: { BRANCH: 'main' }, runname: 'k', tests: [{ name: 'a', steps: [{ name: 's', form: '1' }] }] }))
    const rk = await cli(['ci', 'run', wrongKeys, '--host', areaNode.host, '--state-dir', clientDir])
    assert.equal(rk.code, 1)
    assert.match(rk.stderr, /missing RELEASE, PLATFORM unknown BRANCH/)
    const noArea = writeFile(dir, 'area.json', JSON.stringify({ area: 'nope', target: { RELEASE: 'v1' }, runname: 'k', tests: [{ name: 'a', steps: [{ name: 's', form: '1' }] }] }))
    const ra = await cli(['ci', 'run', noArea, '--host', areaNode.host, '--state-dir', clientDir])
    assert.equal(ra.code, 1)
    assert.match(ra.stderr, /UNKNOWN_AREA.*"nope"/)
    const usage = await cli(['ci', 'launch'])
    assert.equal(usage.code, 2)
    assert.match(usage.stderr, /unknown subcommand "launch"/)
  })
})

describe('a CI agent that survives its area node', () => {
  const fnsFile = (): string => writeFile(tempDir(), 'fns.mjs', FNS)
  const job = (runname: string): JobSpec => parseJob({
    area: 'ci', target: { RELEASE: 'v9', PLATFORM: 'x86' }, runname, claimTimeoutMs: 10_000,
    tests: [
      { name: 'first', steps: [{ name: 'work', fn: 'sleep', args: [1500] }, { name: 'after', form: '1' }] },
      { name: 'second', waiton: ['first'], steps: [{ name: 'x', form: '2' }] }
    ]
  })

  test('the area node is killed mid-test: the agent reconnects to a new node on the same area and carries on', async () => {
    const areaDir = tempDir('evalmesh-ci-survive-')
    const worker = await startNode(['--functions', fnsFile(), '--timeout', '60000'], { stateDir: meshDir(), name: 'sw' })
    let areaNode = await startNode(['--area', `ci=${areaDir}`, '--keys', 'RELEASE,PLATFORM', '--gags', 'broadcast'], { stateDir: meshDir(), name: 'area1' })
    const nodes = [worker, areaNode]
    const broadcast: BroadcastConfig = { targets: [{ address: '127.0.0.1', port: worker.port }] }
    const c = new Client({ stateDir: meshDir(), broadcast })
    try {
      const failed: string[] = []
      const t0 = Date.now()
      const summary = await runJob(job('survive'), {
        client: c,
        broadcast,
        areaHost: areaNode.host,
        onEvent: (e) => { if (e.kind === 'step' && e.phase === 'start' && e.step === 'work') areaNode.proc.kill('SIGKILL') },
        reconnect: async (host) => {
          failed.push(host)
          areaNode = await startNode(['--area', `ci=${areaDir}`], { stateDir: meshDir(), name: 'area2' })
          nodes.push(areaNode)
          return areaNode.host
        }
      })
      assert.equal(failed.length, 1, 'one reconnect for all the calls that saw the loss')
      assert.ok(Date.now() - t0 < 60_000)
      assert.equal(summary.areaHost, areaNode.host)
      assert.deepEqual(summary.units.map(u => `${u.test}:${u.state}/${u.status}`), ['first:COMPLETED/PASS', 'second:COMPLETED/PASS'])
      assert.equal(`${summary.state}/${summary.status}`, 'COMPLETED/PASS')
      const [run] = await readRuns(c, areaNode.host, 'ci', summary.runId)
      assert.deepEqual(run!.tests.map(t => `${t.testname}:${t.state}/${t.status}`).sort(), ['first:COMPLETED/PASS', 'second:COMPLETED/PASS'])
    } finally {
      c.close()
      await Promise.all(nodes.map(async n => await n.stop().catch(() => null)))
    }
  })

  test('no node can be found again: the run ends at once with a clear error and the worker\'s step is aborted', async () => {
    const areaDir = tempDir('evalmesh-ci-lost-')
    const worker = await startNode(['--functions', fnsFile(), '--timeout', '60000'], { stateDir: meshDir(), name: 'lw' })
    const areaNode = await startNode(['--area', `ci=${areaDir}`, '--keys', 'RELEASE,PLATFORM', '--gags', 'broadcast'], { stateDir: meshDir(), name: 'area3' })
    const broadcast: BroadcastConfig = { targets: [{ address: '127.0.0.1', port: worker.port }] }
    const c = new Client({ stateDir: meshDir(), broadcast })
    try {
      const j = parseJob({
        area: 'ci', target: { RELEASE: 'v9', PLATFORM: 'x86' }, runname: 'lost', claimTimeoutMs: 10_000,
        tests: [{ name: 'long', steps: [{ name: 'work', fn: 'sleep', args: [60_000] }] }, { name: 'later', waiton: ['long'], steps: [{ name: 'x', form: '1' }] }]
      })
      let txn = ''
      const t0 = Date.now()
      await assert.rejects(runJob(j, {
        client: c,
        broadcast,
        areaHost: areaNode.host,
        onEvent: (e) => { if (e.kind === 'step' && e.phase === 'start') { txn = e.txn; areaNode.proc.kill('SIGKILL') } },
        reconnect: async () => { throw new Error('no node for area ci') }
      }), (e: any) => e.code === 'LOST' && /was lost/.test(e.message) && /no node for area ci/.test(e.message) && /aborted/.test(e.message))
      assert.ok(Date.now() - t0 < 45_000, `ended in ${Date.now() - t0} ms, not after the 60 s step`)
      // The worker's step was aborted, not left running.
      const st = await c.fetchResult(txn, worker.host, { wait: true, timeoutMs: 10_000 }).then(() => 'done', (e: any) => e.code)
      assert.equal(st, 'ABORTED')
    } finally {
      c.close()
      await Promise.all([worker, areaNode].map(async n => await n.stop().catch(() => null)))
    }
  })
})

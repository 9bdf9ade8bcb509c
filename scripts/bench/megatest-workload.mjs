#!/usr/bin/env node
// The typical Megatest CI workload (docs/megatest.md, spec §5) as a replayable
// driver: one run, N item tests of one itemized test, S steps each, with the
// runner's registration and launch calls and each test process's meta calls,
// steps, test data, roll-ups and run stats.
//
//   import { runTypicalWorkload } from './megatest-workload.mjs'
//   const { calls, seconds } = await runTypicalWorkload(call, { tests: 200, steps: 5, concurrency: 8 })
//
// `call(command, params)` is async and returns the command's result (throwing
// on error). Run directly, it drives an area in-process and prints calls/s:
//
//   node scripts/bench/megatest-workload.mjs [--tests 200] [--steps 5] [--concurrency 8]
import { fileURLToPath } from 'node:url'

const sleep = (ms) => new Promise(resolve => setTimeout(resolve, ms))

/**
 * @param {(command: string, params: unknown[]) => Promise<unknown>} call
 * @param {{ tests?: number, steps?: number, concurrency?: number, runname?: string }} [opts]
 * @returns {Promise<{ calls: number, seconds: number, busyRetries: number, runId: number, runState: unknown }>}
 */
export async function runTypicalWorkload (call, opts = {}) {
  const tests = opts.tests ?? 200
  const steps = opts.steps ?? 5
  const concurrency = Math.max(1, opts.concurrency ?? 8)
  const runname = opts.runname ?? `bench-${process.pid}-${Date.now()}`
  if (!Number.isSafeInteger(tests) || tests < 1 || tests > 100_000) throw new Error('tests must be 1..100000')
  if (!Number.isSafeInteger(steps) || steps < 0 || steps > 1000) throw new Error('steps must be 0..1000')
  let calls = 0
  let busyRetries = 0
  // A busy server asks the client to call back later (tt:backoff); bounded here.
  const c = async (command, ...params) => {
    for (let attempt = 0; ; attempt++) {
      calls++
      try {
        return await call(command, params)
      } catch (err) {
        if (err?.code !== 'MEGATEST_BUSY' || attempt >= 100) throw err
        busyRetries++
        await sleep(Math.min(200, 10 * (attempt + 1)))
      }
    }
  }
  const testname = 'bench'
  const started = process.hrtime.bigint()

  // Runner: keys, run, task, test meta.
  const keys = await c('get-keys')
  const runId = await c('register-run', keys.map(k => [k, 'bench']), runname, 'new', 'n/a', 'bench-user', '')
  await c('set-run-state-status', runId, 'RUNNING', 'n/a')
  const taskKey = `${runname}-task`
  await c('tasks-add', 'run-tests', 'bench-user', keys.map(() => 'bench').join('/'), runname, `${testname}/%`, taskKey)
  await c('tasks-set-state-given-param-key', taskKey, 'running')
  if (await c('testmeta-get-record', testname) === null) {
    await c('testmeta-add-record', testname)
    await c('testmeta-update-field', testname, 'jobgroup', 'bench')
  }

  const items = Array.from({ length: tests }, (_, i) => `item-${String(i).padStart(5, '0')}`)
  let next = 0
  const worker = async () => {
    while (next < items.length) {
      const item = items[next++]
      // Runner, per item: register item and toplevel, prereqs, capacity, launch.
      await c('general-call', 'register-test', runId, runId, testname, item)
      await c('general-call', 'register-test', runId, runId, testname, '')
      const id = await c('get-test-id', runId, testname, item)
      await c('get-test-id', runId, testname, '')
      await c('get-prereqs-not-met', runId, [], testname, item, 'normal', null)
      await c('get-count-tests-running', runId)
      await c('get-count-tests-running-in-jobgroup', runId, 'bench')
      await c('get-test-info-by-id', runId, id)
      await c('set-state-status-and-roll-up-items', runId, id, null, 'LAUNCHED', 'n/a', null)
      await c('set-state-status-and-roll-up-items', runId, testname, item, 'LAUNCHED', null, null)
      await c('general-call', 'test-set-rundir-shortdir', runId, `/bench/${runname}/${testname}/${item}`, `${testname}/${item}`, testname, item)

      // The test process.
      await c('get-test-info-by-id', runId, id)
      await c('test-set-state-status', runId, id, 'REMOTEHOSTSTART', 'n/a', null)
      await c('get-keys')
      await c('general-call', 'update-test-rundat', runId, id, 0.5, 100000, 10, 1)
      await c('general-call', 'update-cpuload-diskfree', runId, 0.5, 100000, id)
      await c('general-call', 'update-run-duration', runId, 1, id)
      await c('general-call', 'update-uname-host', runId, 'Linux bench', 'bench-host', id)
      await c('set-state-status-and-roll-up-items', runId, id, null, 'RUNNING', 'n/a', null)
      await c('test-set-top-process-pid', runId, id, 10000 + (next % 50000))
      for (let s = 0; s < steps; s++) {
        const step = `step${s}`
        await c('teststep-set-status!', runId, id, step, 'start', '-', '', '')
        await c('csv->test-data', runId, id, `${step},duration,${s + 1},${s + 1},1,s`)
        await c('general-call', 'test-set-log', runId, `${step}.html`, id)
        await c('teststep-set-status!', runId, id, step, 'end', '0', 'ok', `${step}.log`)
        await c('get-test-info-by-id', runId, id)
        await c('set-state-status-and-roll-up-items', runId, id, null, 'RUNNING', 'PASS', null)
      }
      // One heartbeat round.
      await c('general-call', 'update-run-duration', runId, 2, id)
      await c('get-test-info-by-id', runId, id)
      await c('test-get-top-process-pid', runId, id)
      // End of test.
      await c('get-test-info-by-id', runId, id)
      const final = (next % 17 === 0) ? 'FAIL' : 'PASS'
      await c('set-state-status-and-roll-up-items', runId, id, null, 'COMPLETED', final, null)
      await c('get-steps-for-test', runId, id)
      await c('update-run-stats', runId, await c('get-raw-run-stats', runId))
    }
  }
  await Promise.all(Array.from({ length: Math.min(concurrency, tests) }, worker))

  // Runner wrap-up (-run-wait poll, task done); dashboards poll too.
  await c('get-count-tests-running-for-run-id', runId)
  await c('tasks-set-state-given-param-key', taskKey, 'done')
  await c('get-tests-for-run', runId, `${testname}/%`, [], [], 0, 50, false, 'event_time', 'desc', 'shortlist', 0, 'dashboard')
  await c('get-changed-record-ids', 0)
  const runState = await c('get-run-state-status', runId)
  const seconds = Number(process.hrtime.bigint() - started) / 1e9
  return { calls, seconds, busyRetries, runId, runState }
}

function arg (name, dflt) {
  const i = process.argv.indexOf(`--${name}`)
  return i >= 0 ? Number(process.argv[i + 1]) : dflt
}

async function main () {
  const { mkdtempSync, rmSync } = await import('node:fs')
  const { tmpdir } = await import('node:os')
  const { join } = await import('node:path')
  const mt = await import(new URL('../../packages/megatest/dist/src/index.js', import.meta.url).href)
  const tests = arg('tests', 200)
  const steps = arg('steps', 5)
  const concurrency = arg('concurrency', 8)
  const dir = mkdtempSync(join(tmpdir(), 'megatest-bench-'))
  try {
    const svc = mt.createMegatestService({ areas: [{ name: 'bench', dir, keys: ['RELEASE', 'PLATFORM'] }], loadLimit: Math.max(32, concurrency * 2) })
    const viaService = await runTypicalWorkload((cmd, params) => svc.callOrThrow('bench', cmd, params), { tests, steps, concurrency })
    svc.close()
    const area = mt.openArea({ name: 'bench', dir })
    const direct = await runTypicalWorkload(async (cmd, params) => area.exec(cmd, params), { tests, steps, concurrency })
    area.close()
    const line = (label, r) => `${label.padEnd(26)} ${String(r.calls).padStart(6)} calls in ${r.seconds.toFixed(2)} s = ${Math.round(r.calls / r.seconds)} calls/s (run ${JSON.stringify(r.runState)}, busy retries ${r.busyRetries})`
    console.log(`megatest typical CI workload: ${tests} item tests x ${steps} steps, concurrency ${concurrency}, node ${process.version}`)
    console.log(line('service.callOrThrow', viaService))
    console.log(line('area.exec (no service)', direct))
  } finally {
    rmSync(dir, { recursive: true, force: true })
  }
}

if (process.argv[1] !== undefined && fileURLToPath(import.meta.url) === process.argv[1]) {
  main().catch(err => { console.error(err); process.exit(1) })
}

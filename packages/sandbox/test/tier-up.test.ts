import { test, after } from 'node:test'
import assert from 'node:assert/strict'
import { execFileSync } from 'node:child_process'
import { readFileSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import { EARLY_TIER_UP_FLAGS } from '../src/index.js'
import { startSandbox, value } from './helpers.js'

// The sandbox processes reach their steady speed early (tier-up.ts): they are forked with
// EARLY_TIER_UP_FLAGS, unless the node itself was started with its own budget, which they
// then share. What the flags buy is measured in the benchmarks, not here.

const argsOf = (pid: number): string[] => readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').filter(Boolean)

const sandbox = await startSandbox({ processes: 1 })
after(() => sandbox.stop())

test('sandbox processes are forked with the early tier-up flags, and still evaluate', async () => {
  assert.equal(await value(sandbox, 'n = 20; n + 1', 'tier/default'), 21)
  const pid = sandbox.stats.processes?.find(p => p.sessions > 0)?.pid ?? sandbox.stats.pid
  assert.ok(pid !== undefined, 'a sandbox process is running')
  const args = argsOf(pid)
  for (const flag of EARLY_TIER_UP_FLAGS) assert.ok(args.includes(flag), `${flag} in ${args.join(' ')}`)
})

test('a node started with its own --interrupt-budget passes that one on instead', () => {
  const index = fileURLToPath(new URL('../src/index.js', import.meta.url))
  const script = `
    const { createSandbox, tierUpFlags } = await import(${JSON.stringify(index)})
    const s = createSandbox({ limits: { timeoutMs: 400, memoryMb: 32, resultBytes: 65536, outputBytes: 256 }, grants: [], hostCall: async () => undefined, processes: 1 })
    await s.start()
    const r = await s.run({ txn: 't/1', session: 'c/default', form: 'k = 2; k * 3', limits: { timeoutMs: 400, memoryMb: 32, resultBytes: 65536, outputBytes: 256 } })
    const pid = s.stats.processes?.find(p => p.sessions > 0)?.pid ?? s.stats.pid
    const { readFileSync } = await import('node:fs')
    console.log(JSON.stringify({ value: r.value, flags: tierUpFlags(), child: readFileSync('/proc/' + pid + '/cmdline', 'utf8').split('\\0') }))
    await s.stop()`
  const out = JSON.parse(execFileSync(process.execPath, ['--no-node-snapshot', '--interrupt-budget=50000', '--input-type=module', '-e', script], { encoding: 'utf8', timeout: 60_000 }).trim().split('\n').pop()!) as { value: number, flags: string[], child: string[] }
  assert.equal(out.value, 6)
  assert.deepEqual(out.flags, ['--interrupt-budget=50000'])
  assert.ok(out.child.includes('--interrupt-budget=50000'), `the child has the node's flag: ${out.child.join(' ')}`)
  for (const flag of EARLY_TIER_UP_FLAGS) assert.ok(!out.child.includes(flag), `and not ${flag}`)
})

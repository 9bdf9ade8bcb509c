import { test, after } from 'node:test'
import assert from 'node:assert/strict'
import { spawnSync } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import { startSandbox, run, value, seen } from './helpers.js'

// Pure forms (literals and operators only) in a session holding nothing in a sandbox
// process are evaluated in the node's own small isolate (inline.ts). A user must not be
// able to tell, except by the time it takes and describe's `sandbox.inline` count.

const sandbox = await startSandbox({ processes: 1 })
after(() => sandbox.stop())

const PURE = [
  '1+1', '2**10', '-0', '0/0', '1/0', '-1/0', '7 % 3', '1;2;3', '!0', '1 < 2 ? 10 : 20', '(1, 2)',
  '[1, 2, [3, [4]]]', '({a: 1, b: [true, null, false]})', '[]', '({})', 'null', 'void 0', '~5 >>> 1',
  '0.1 + 0.2', '1e308 * 10', '[1, 2] === [1, 2]', '1 && 0 || 3', 'null ?? 4'
]

test('pure forms give the same outcome inline as in a sandbox process, and only pure forms in stateless sessions go inline', async () => {
  const before = sandbox.stats.inline ?? 0
  const inline: unknown[] = []
  for (const [i, form] of PURE.entries()) inline.push(seen(await run(sandbox, form, `fresh${i}/default`)))
  assert.equal((sandbox.stats.inline ?? 0) - before, PURE.length, 'each pure form in a fresh session ran inline')

  // A session that holds a context: the same forms run in its sandbox process.
  await value(sandbox, 'held = 1', 'keeper/default')
  const mid = sandbox.stats.inline ?? 0
  const inChild: unknown[] = []
  for (const form of PURE) inChild.push(seen(await run(sandbox, form, 'keeper/default')))
  assert.equal(sandbox.stats.inline, mid, 'a session with state keeps all its runs in its process')
  assert.deepEqual(inline, inChild)
  assert.ok(Object.is((inline[2] as { value: unknown }).value, -0), '-0 keeps its sign')

  // Forms that name a variable, call, loop or hold a string are never inline.
  for (const form of ['x', 'Math.max(1, 2)', '"a" + 1', 'typeof 1', '1n + 1n', 'globalThis.y', 'while (false) {}']) {
    const n: number | undefined = sandbox.stats.inline
    await run(sandbox, form, 'other/default')
    assert.equal(sandbox.stats.inline, n, `${form} is not inline`)
  }
})

test('a pure form in a session whose process was replaced still carries the notice, in order', async () => {
  await value(sandbox, 'x = 41', 'bob/default')
  assert.equal(await value(sandbox, 'x + 1', 'bob/default'), 42)
  const restarted = new Promise(resolve => sandbox.on('restart', resolve))
  process.kill(sandbox.stats.pid!, 'SIGKILL')
  await restarted
  const r = await run(sandbox, '1+1', 'bob/default')
  assert.ok(r.ok && r.value === 2)
  assert.match(r.contextLost ?? '', /sandbox process serving this session was replaced/)
})

test('a pure result over the run\'s result limit is refused RESULT_LIMIT, as it would be in a process', async () => {
  const r = await run(sandbox, '[1, 2, 3, 4, 5, 6, 7, 8]', 'small/default', { resultBytes: 8 })
  assert.equal(r.ok, false)
  assert.equal(!r.ok && r.error.code, 'RESULT_LIMIT')
  assert.match(!r.ok ? r.error.message : '', /over the result limit of 8 bytes/)
})

test('a node process started without --no-node-snapshot does not load isolated-vm itself, and still evaluates', () => {
  const index = fileURLToPath(new URL('../src/index.js', import.meta.url))
  const script = `
    const { createSandbox } = await import(${JSON.stringify(index)})
    const limits = { timeoutMs: 1000, memoryMb: 32, resultBytes: 1024, outputBytes: 256 }
    const sb = createSandbox({ limits, grants: [], hostCall: async () => undefined })
    await sb.start()
    const r = await sb.run({ txn: 't', session: 'c/default', form: '1+1', limits })
    console.log(JSON.stringify({ value: r.value, inline: sb.stats.inline }))
    await sb.stop()`
  const out = spawnSync(process.execPath, ['--input-type=module', '-e', script], { encoding: 'utf8', timeout: 60_000, env: { ...process.env, NODE_OPTIONS: '' } })
  assert.equal(out.status, 0, out.stderr)
  assert.deepEqual(JSON.parse(out.stdout), { value: 2, inline: 0 })
})

import { test, after } from 'node:test'
import assert from 'node:assert/strict'
import { startSandbox, run, value, failure } from './helpers.js'

const sandbox = await startSandbox()
after(() => sandbox.stop())

test('forms run in a child process, forked with --no-node-snapshot (pure forms aside: see inline.test)', async () => {
  assert.equal(await value(sandbox, 'typeof process', 'where/1'), 'undefined')
  assert.equal(typeof sandbox.stats.pid, 'number')
  assert.notEqual(sandbox.stats.pid, process.pid)
})

test('a form is a REPL line: completion values, globals and let/const persist in the session', async () => {
  assert.equal(await value(sandbox, 'x = 5'), 5)
  assert.equal(await value(sandbox, 'x + 1'), 6)
  assert.equal(await value(sandbox, 'let y = 10; const z = 20; y + z'), 30)
  assert.equal(await value(sandbox, 'y + z + x'), 35)
  assert.equal(await value(sandbox, 'function twice (n) { return 2 * n }'), undefined)
  assert.equal(await value(sandbox, 'twice(21)'), 42)
  assert.equal(await value(sandbox, 'if (x > 1) { "big" } else { "small" }'), 'big')
})

test('the same form text runs afresh each time, also after a reset', async () => {
  const form = 'count = (globalThis.count ?? 0) + 1'
  assert.equal(await value(sandbox, form, 'again/1'), 1)
  assert.equal(await value(sandbox, form, 'again/1'), 2)
  await sandbox.resetSession('again/1')
  assert.equal(await value(sandbox, form, 'again/1'), 1)
})

test('sessions are kept apart from each other', async () => {
  await value(sandbox, 'secret = "a"; let mine = 1', 'alice/default')
  await value(sandbox, 'secret = "b"', 'bob/default')
  assert.equal(await value(sandbox, 'secret', 'alice/default'), 'a')
  assert.equal(await value(sandbox, 'secret', 'bob/default'), 'b')
  const e = await failure(sandbox, 'mine', 'bob/default')
  assert.equal(e.name, 'ReferenceError')
})

test('resetSession forgets the session globals and leaves the others', async () => {
  await value(sandbox, 'kept = 1', 'r/a')
  await value(sandbox, 'kept = 2', 'r/b')
  await sandbox.resetSession('r/a')
  assert.equal(await value(sandbox, 'typeof kept', 'r/a'), 'undefined')
  assert.equal(await value(sandbox, 'kept', 'r/b'), 2)
  await sandbox.resetSession('never/used')
})

test('runs in one session execute in order; different sessions run concurrently', async () => {
  await value(sandbox, 'log = []', 'order/1')
  const forms = Array.from({ length: 50 }, (_, i) => run(sandbox, `log.push(${i}); log.length`, 'order/1'))
  const results = await Promise.all(forms)
  assert.deepEqual(results.map(r => r.ok && r.value), Array.from({ length: 50 }, (_, i) => i + 1))
  // A slow promise in one session does not hold up another session.
  const slow = run(sandbox, 'new Promise(() => {})', 'slow/1', { timeoutMs: 2000 })
  const fast = await run(sandbox, '"quick"', 'fast/1')
  assert.equal(fast.ok && fast.value, 'quick')
  assert.equal(sandbox.stats.running >= 1, true)
  assert.equal((await slow).ok, false)
})

test('a promise completion value is awaited', async () => {
  assert.equal(await value(sandbox, 'Promise.resolve(41).then(n => n + 1)'), 42)
  const e = await failure(sandbox, 'Promise.reject(new TypeError("no"))')
  assert.equal(e.code, 'EVAL_ERROR')
  assert.equal(e.name, 'TypeError')
  assert.equal(e.message, 'no')
})

test('top-level await keeps the value of the last statement', async () => {
  assert.equal(await value(sandbox, 'await Promise.resolve(7)'), 7)
  assert.equal(await value(sandbox, 'const a = await Promise.resolve(2); const b = await 3; a * b'), 6)
  assert.equal(await value(sandbox, 'kept = await Promise.resolve("k");'), 'k')
  assert.equal(await value(sandbox, 'kept'), 'k')
  assert.equal(await value(sandbox, 'for (const n of [1, 2]) { await n }'), undefined)
  const e = await failure(sandbox, 'await (async () => { throw new RangeError("deep") })()')
  assert.equal(e.name, 'RangeError')
  assert.match(e.stack ?? '', /form\.js:1:/)
})

test('structured values cross: Map, Set, Date, BigInt, typed arrays, undefined, nested objects', async () => {
  const v = await value(sandbox, '({ m: new Map([["a", 1]]), s: new Set([2]), d: new Date(0), b: 2n ** 70n, u8: new Uint8Array([1, 2]), u: undefined, n: [null, -0, NaN] })') as Record<string, unknown>
  assert.deepEqual(v.m, new Map([['a', 1]]))
  assert.deepEqual(v.s, new Set([2]))
  assert.deepEqual(v.d, new Date(0))
  assert.equal(v.b, 2n ** 70n)
  assert.deepEqual(v.u8, new Uint8Array([1, 2]))
  assert.equal('u' in v, true)
  assert.equal(v.u, undefined)
  assert.deepEqual(v.n, [null, -0, NaN])
  assert.equal(await value(sandbox, 'undefined'), undefined)
})

test('console output is captured and formatted', async () => {
  const r = await run(sandbox, 'console.log("plain", 1, { a: [1, "s"], m: new Map([[1, true]]) }, 5n, undefined, null); console.error(new Set(["x"])); console.warn(Symbol("w")); console.info(() => 1); 9', 'out/1', { outputBytes: 4096 })
  assert.equal(r.ok, true)
  assert.equal(r.ok && r.value, 9)
  assert.equal(r.output, "plain 1 { a: [ 1, 's' ], m: Map(1) { 1 => true } } 5n undefined null\nSet(1) { 'x' }\nSymbol(w)\n[Function: (anonymous)]\n")
  assert.equal(r.outputTruncated, false)
  const cyc = await run(sandbox, 'const o = { get g () { throw new Error("no") } }; o.self = o; console.debug(o)', 'out/1', { outputBytes: 4096 })
  assert.equal(cyc.output, '{ g: [Getter], self: [Circular] }\n')
})

test('console output stops at outputBytes and says it was truncated', async () => {
  const r = await run(sandbox, 'for (let i = 0; i < 1000; i++) console.log("line " + i); "done"', 'out/2', { outputBytes: 100 })
  assert.equal(r.ok && r.value, 'done')
  assert.equal(Buffer.byteLength(r.output), 100)
  assert.equal(r.outputTruncated, true)
  assert.match(r.output, /^line 0\nline 1\n/)
  // Output comes back with errors too.
  const e = await run(sandbox, 'console.log("before"); throw new Error("after")', 'out/2')
  assert.equal(e.ok, false)
  assert.equal(e.output, 'before\n')
})

test('seconds reports the evaluation time', async () => {
  const r = await run(sandbox, '1 + 1')
  assert.equal(typeof r.seconds, 'number')
  assert.equal(r.seconds >= 0, true)
})

import { test, after } from 'node:test'
import assert from 'node:assert/strict'
import { startSandbox, run, value, failure, noHostPaths, LIMITS } from './helpers.js'

// The ceiling allows slow memory bombs to reach the memory limit on a loaded machine.
const sandbox = await startSandbox({ limits: { ...LIMITS, timeoutMs: 10_000 } })
after(() => sandbox.stop())

test('an infinite loop ends with TIME_LIMIT; the session keeps its globals', async () => {
  await value(sandbox, 'before = "still here"', 'loop/1')
  const e = await failure(sandbox, 'for (;;) {}', 'loop/1', { timeoutMs: 200 })
  assert.equal(e.code, 'TIME_LIMIT')
  assert.equal(e.wire, 501)
  assert.equal(e.message, 'evaluation exceeded its wall-time limit of 200 ms')
  assert.equal(await value(sandbox, 'before', 'loop/1'), 'still here')
})

test('a loop in microtasks and a promise that never settles end with TIME_LIMIT', async () => {
  const micro = await failure(sandbox, '(async () => { for (;;) await null })()', 'loop/2', { timeoutMs: 200 })
  assert.equal(micro.code, 'TIME_LIMIT')
  const never = await failure(sandbox, 'new Promise(() => {})', 'loop/2', { timeoutMs: 200 })
  assert.equal(never.code, 'TIME_LIMIT')
  assert.match(never.message, /wall-time limit of 200 ms/)
  assert.equal(await value(sandbox, '"alive"', 'loop/2'), 'alive')
})

test('a memory bomb ends with MEMORY_LIMIT; the session starts fresh and others are untouched', async () => {
  await value(sandbox, 'keep = 1', 'mem/1')
  await value(sandbox, 'other = 2', 'mem/2')
  const e = await failure(sandbox, 'const a = []; for (;;) a.push("x".repeat(1e5) + Math.random())', 'mem/1', { timeoutMs: 10_000 })
  assert.equal(e.code, 'MEMORY_LIMIT')
  assert.match(e.message, /memory limit of 32 MiB/)
  assert.match(e.message, /isolate was disposed/)
  assert.equal(await value(sandbox, 'typeof keep', 'mem/1'), 'undefined')
  assert.equal(await value(sandbox, 'other', 'mem/2'), 2)
  assert.equal(sandbox.stats.restarts, 0)
})

test('WebAssembly memory, which the isolate limit would not count, is not available', async () => {
  assert.equal(await value(sandbox, 'typeof WebAssembly + typeof SharedArrayBuffer + typeof Atomics'), 'undefinedundefinedundefined')
  const e = await failure(sandbox, 'new ArrayBuffer(500 * 1024 * 1024).byteLength')
  assert.equal(e.code, 'EVAL_ERROR')
  assert.equal(e.name, 'RangeError')
})

test('deep recursion is an EVAL_ERROR with RangeError and user frames only', async () => {
  const e = await failure(sandbox, 'function down (n) { return down(n + 1) + 1 }\ndown(0)')
  assert.equal(e.code, 'EVAL_ERROR')
  assert.equal(e.name, 'RangeError')
  assert.match(e.message, /Maximum call stack size exceeded/)
  assert.match(e.stack ?? '', /at down \(form\.js:1:/)
  noHostPaths(e.stack)
})

test('a result over resultBytes ends with RESULT_LIMIT', async () => {
  const e = await failure(sandbox, '"x".repeat(100 * 1024)')
  assert.equal(e.code, 'RESULT_LIMIT')
  assert.match(e.message, new RegExp(`over the result limit of ${LIMITS.resultBytes} bytes`))
  const big = await failure(sandbox, 'new Uint8Array(10)', undefined, { resultBytes: 8 })
  assert.equal(big.code, 'RESULT_LIMIT')
})

test('functions, symbols and objects holding them are NOT_CLONEABLE', async () => {
  for (const form of ['(function f () {})', 'Symbol("s")', '({ a: 1, f () {} })', '[1, () => 2]', 'Promise.resolve(() => 1)']) {
    const e = await failure(sandbox, form)
    assert.equal(e.code, 'NOT_CLONEABLE', form)
    assert.equal(e.wire, 504)
  }
  // A TypeError the form throws itself is not mistaken for a clone failure.
  const own = await failure(sandbox, 'throw new TypeError("f could not be cloned.")')
  assert.equal(own.code, 'EVAL_ERROR')
})

test('a syntax error is an EVAL_ERROR named SyntaxError, with or without await', async () => {
  const e = await failure(sandbox, 'let = = 1')
  assert.equal(e.code, 'EVAL_ERROR')
  assert.equal(e.name, 'SyntaxError')
  const a = await failure(sandbox, 'await (1 +')
  assert.equal(a.name, 'SyntaxError')
  noHostPaths(a.stack)
})

test('thrown errors, strings and plain objects become WireErrors with a message', async () => {
  const custom = await failure(sandbox, 'class Oops extends Error { constructor (m) { super(m); this.name = "Oops" } }\nthrow new Oops("custom")')
  assert.deepEqual([custom.code, custom.wire, custom.name, custom.message], ['EVAL_ERROR', 500, 'Oops', 'custom'])
  assert.match(custom.stack ?? '', /^Oops: custom\n {4}at form\.js:2:7/)
  noHostPaths(custom.stack)
  const str = await failure(sandbox, 'throw "just a string"')
  assert.deepEqual([str.name, str.message], ['Error', 'just a string'])
  const obj = await failure(sandbox, 'throw { message: "from an object" }')
  assert.equal(obj.message, 'from an object')
  const bare = await failure(sandbox, 'throw { a: 1 }')
  assert.equal(bare.message, 'a non-Error object without a message was thrown')
  noHostPaths(bare.stack)
  const num = await failure(sandbox, 'throw 42')
  assert.match(num.message, /42/)
  const rej = await failure(sandbox, 'Promise.reject("rejected string")')
  assert.equal(rej.message, 'rejected string')
})

test('limits above the node ceiling are clamped to it', async () => {
  const e = await failure(sandbox, '"x".repeat(100 * 1024)', 'clamp/1', { resultBytes: 10 * 1024 * 1024 })
  assert.equal(e.code, 'RESULT_LIMIT')
  assert.match(e.message, new RegExp(`limit of ${LIMITS.resultBytes} bytes`))
})

test('a failing session does not disturb concurrent runs elsewhere', async () => {
  const results = await Promise.all([
    run(sandbox, 'for (;;) {}', 'noisy/1', { timeoutMs: 300 }),
    run(sandbox, 'const a = []; for (;;) a.push(new Array(1e5).fill(1))', 'noisy/2', { timeoutMs: 10_000 }),
    ...Array.from({ length: 20 }, (_, i) => run(sandbox, `${i} * 2`, `quiet/${i % 4}`))
  ])
  assert.equal(results[0].ok || results[0].error.code, 'TIME_LIMIT')
  assert.equal(results[1].ok || results[1].error.code, 'MEMORY_LIMIT')
  assert.deepEqual(results.slice(2).map(r => r.ok && r.value), Array.from({ length: 20 }, (_, i) => i * 2))
  assert.equal(sandbox.stats.restarts, 0)
})

import { test, after } from 'node:test'
import assert from 'node:assert/strict'
import type { EvalLimits } from '@evalmesh/protocol'
import { batchForm } from '../src/batch-forms.js'
import type { Sandbox } from '../src/index.js'
import { startSandbox, run, value, seen, LIMITS } from './helpers.js'

const sandbox = await startSandbox({ limits: { ...LIMITS, timeoutMs: 20_000 } })
after(() => sandbox.stop())

/** Queue all forms at once in one session (so they reach the child together) and collect the results in order. */
async function together (sb: Sandbox, session: string, forms: string[], limits: Partial<EvalLimits> = {}): Promise<unknown[]> {
  const results = await Promise.all(forms.map(f => run(sb, f, session, limits)))
  return results.map(seen)
}

/**
 * The same forms in two sessions prepared alike: one where the batch path may run
 * them, one where a top-level `let` sends every form down the slow path. Each form
 * must get the same outcome in both, in order; the batch path must have been used.
 */
async function sameAsSlowPath (name: string, prep: string, forms: string[], limits: Partial<EvalLimits> = {}, replacesIsolate = false): Promise<unknown[]> {
  await value(sandbox, prep, `${name}/batch`)
  await value(sandbox, `let slowPathOnly = 1; ${prep}`, `${name}/slow`)
  const before = sandbox.stats.batched
  const batch = await together(sandbox, `${name}/batch`, forms, limits)
  const batched = sandbox.stats.batched - before
  const slow = await together(sandbox, `${name}/slow`, forms, limits)
  // (A fresh isolate has no script-level bindings, so the slow session may batch again after one.)
  if (!replacesIsolate) assert.equal(sandbox.stats.batched - before - batched, 0, 'the slow session ran nothing on the batch path')
  assert.ok(batched > 0, 'the batch path was used')
  for (let i = 0; i < forms.length; i++) assert.deepEqual(batch[i], slow[i], `form ${i}: ${forms[i]}`)
  return batch
}

test('a mixed batch: each form gets exactly its own outcome, in order, as on the slow path', async () => {
  const forms = [
    'n = n + 1',
    '1n + 1', // throws inside a batch
    'for (;;) {}', // times out (slow path: it loops)
    'n',
    's', // a symbol: not cloneable
    'Promise.resolve(n + 40)', // a promise result is awaited
    'console.log("out", n); n * 10', // console output is its own
    '[n, { k: "v" }, "x".length]', // a member call: alone
    '[n, { k: "v" }]', // an object result, handed over after the batch
    'nope + 1', // not a global: declined by the runner, runs alone
    'n = n + 1',
    'big', // a long string
    'let fresh = n; fresh', // a script-level binding persists
    'n + fresh',
    'n++, n'
  ]
  const r = await sameAsSlowPath('mixed', 'n = 1; s = Symbol("q"); big = "é".repeat(5000)', forms, { timeoutMs: 300 })
  const codes = r.map(x => (x as { ok: boolean, error?: { code: string } }).ok ? 'ok' : (x as { error: { code: string } }).error.code)
  assert.deepEqual(codes, ['ok', 'EVAL_ERROR', 'TIME_LIMIT', 'ok', 'NOT_CLONEABLE', 'ok', 'ok', 'ok', 'ok', 'EVAL_ERROR', 'ok', 'ok', 'ok', 'ok', 'ok'])
  assert.deepEqual(r[0], { ok: true, value: 2, output: '', outputTruncated: false })
  const thrown = r[1] as { error: { name: string, stack: string } }
  assert.equal(thrown.error.name, 'TypeError')
  assert.equal(thrown.error.stack, 'TypeError: Cannot mix BigInt and other types, use explicit conversions\n    at form.js:1:4')
  assert.deepEqual(r[5], { ok: true, value: 42, output: '', outputTruncated: false })
  assert.deepEqual(r[6], { ok: true, value: 20, output: 'out 2\n', outputTruncated: false })
  assert.deepEqual(r[8], { ok: true, value: [2, { k: 'v' }], output: '', outputTruncated: false })
  assert.equal((r[9] as { error: { name: string } }).error.name, 'ReferenceError')
  assert.equal((r[11] as { value: string }).value, 'é'.repeat(5000))
  assert.deepEqual(r.slice(12).map(x => (x as { value: unknown }).value), [3, 6, 4])
})

test('a form that stalls the isolate inside a batch alone gets TIME_LIMIT; the forms after it still run', async () => {
  // BigInt exponentiation does not check for termination, so the isolate is found
  // unresponsive and replaced, exactly as on the slow path. (It takes about 1.4 s here,
  // far past the 300 ms limit plus the 250 ms probe: a fast machine cannot finish it
  // in time to answer the probe, and the test would then see a kept isolate.)
  const r = await sameAsSlowPath('stall', 'k = 1', ['k = k + 1', 'k * 10', '3n ** 60000000n === 0n', '7 * 6', '"after"', 'typeof k'], { timeoutMs: 300 }, true)
  assert.deepEqual(r.map(x => (x as { ok: boolean, value?: unknown }).ok ? (x as { value: unknown }).value : (x as { error: { code: string } }).error.code),
    [2, 20, 'TIME_LIMIT', 42, 'after', 'undefined'])
  assert.match((r[2] as { error: { message: string } }).error.message, /wall-time limit of 300 ms; the isolate did not respond/)
})

test('a memory bomb inside a batch alone gets MEMORY_LIMIT; the forms after it run in a fresh context', async () => {
  const r = await sameAsSlowPath('bomb', 'b = 1; c = 1; d = 1',
    ['b = b + 1', 'b = 2n ** 200000000n, c = b + 1n, d = c + 1n, d = d + 1n, d = d + 1n, d = d + 1n, 0', '"next"', 'typeof b'], { timeoutMs: 10_000 }, true)
  assert.deepEqual(r.map(x => (x as { ok: boolean, value?: unknown }).ok ? (x as { value: unknown }).value : (x as { error: { code: string } }).error.code),
    [2, 'MEMORY_LIMIT', 'next', 'undefined'])
  assert.equal(sandbox.stats.restarts, 0)
})

test('results over the size limit and limits per form are kept per form inside a batch', async () => {
  const r = await together(sandbox, 'sizes/1', ['"x".repeat(10)', '"y".repeat(100)', '"abc" + "def"', '"abcdefghij" + "klmnopq"'], { resultBytes: 20 })
  // (the repeat calls run alone; the concatenations are batched)
  assert.deepEqual(r.map(x => (x as { ok: boolean }).ok ? (x as { value: unknown }).value : (x as { error: { code: string } }).error.code),
    ['xxxxxxxxxx', 'RESULT_LIMIT', 'abcdef', 'RESULT_LIMIT'])
})

test('aborting a form that waits in a running batch drops it without touching the others', async () => {
  await value(sandbox, 'w = 1', 'abort/1')
  const stall = run(sandbox, '3n ** 60000000n === 0n', 'abort/1', { timeoutMs: 300 }, 'batch/stall')
  const waiting = run(sandbox, 'w = w + 1', 'abort/1', { timeoutMs: 300 }, 'batch/waiting')
  const after = run(sandbox, '"third"', 'abort/1', { timeoutMs: 300 }, 'batch/third')
  await new Promise(resolve => setTimeout(resolve, 100))
  assert.equal(sandbox.abort('batch/waiting'), true)
  const [a, b, c] = await Promise.all([stall, waiting, after])
  assert.equal(!a.ok && a.error.code, 'TIME_LIMIT')
  assert.equal(!b.ok && b.error.code, 'ABORTED')
  assert.match(!b.ok ? b.error.message : '', /before it started/)
  assert.equal(c.ok && c.value, 'third')
})

test('a getter, a proxy or an object behind a name keeps a form off the batch path', async () => {
  await value(sandbox, 'hits = 0; Object.defineProperty(globalThis, "g", { get () { hits++; return 5 }, configurable: true }); o = { valueOf () { hits++; return 1 } }; pr = new Proxy({}, { get () { hits++; return () => 7 } }); 0', 'hooks/1')
  const before = sandbox.stats.batched
  const r = await together(sandbox, 'hooks/1', ['g + 1', 'o + 1', 'hits', 'globalThis.g', 'hits', 'pr + 1', 'hits'])
  assert.deepEqual(r.map(x => (x as { value: unknown }).value), [6, 2, 2, 5, 3, 8, 4])
  assert.equal(sandbox.stats.batched - before, 3)
})

test('the batch grammar admits only forms that cannot run code of their own', () => {
  for (const form of ['1+1', 'x', 'x = x + 1', 'globalThis.x = (globalThis.x|0) + 1', '[1, "a", { b: 2 }]', 'a ?? b', 'typeof x === "number" ? x : 0', 'x++; y--', '2 ** -1', '"use strict" + x', '; ;', '']) {
    assert.notEqual(batchForm(form), undefined, form)
  }
  for (const form of ['f()', 'a.b', 'a[0]', 'new A', '`t`', 'x => x', 'function f () {}', 'let a = 1', 'var a = 1', 'const a = 1', 'class A {}',
    'await x', 'import("fs")', '"use strict"; x = 1', '"use strict"', '{ a: 1 }', '[1] + 1', '({}) == 1', 'a in b', 'a instanceof b', 'x\n+1',
    'a || b ?? c', '-x ** 2', 'x /* c */', 'x // c', 'x <!-- y', '--> x', '...a', '[...a]', '({ ...a })', '({ __proto__: a })', '({ "__proto__": a })',
    'x = [1]', 'x += {}', 'delete x', 'this', 'eval("1")', 'arguments', '08', '1_000', '0x10', '1.toString', '"\\101"', 'a?.b', 'globalThis', 'globalThis.globalThis', 'é', '\\u0061']) {
    assert.equal(batchForm(form), undefined, form)
  }
  assert.equal(batchForm('('.repeat(1000) + '1' + ')'.repeat(1000)), undefined)
  // Precedence as JavaScript has it: a looser operator after a tighter one, `??` kept apart.
  for (const form of ['a | b && c || d', '(a ?? b) || c', 'a ?? (b || c)', '1 + 2 * 3 < 4 === true', 'a && (b ?? c) || d']) {
    assert.notEqual(batchForm(form), undefined, form)
  }
  for (const form of ['a ?? b && c', 'a && b ?? c', '[1] < 2', '1 + [2]', '{} | 0']) assert.equal(batchForm(form), undefined, form)
})

test('classifying a form is linear in its nesting: 60 nested parentheses are decided at once, not in 2^60 steps', () => {
  for (const d of [30, 45, 60]) {
    assert.deepEqual(batchForm('('.repeat(d) + 'a ?? 1' + ')'.repeat(d)), { names: ['a'], usesGlobalThis: false, bounded: true })
    assert.equal(batchForm('('.repeat(d) + '1' + ')'.repeat(d))?.bounded, true)
    assert.deepEqual(batchForm('['.repeat(d) + ']'.repeat(d))?.names, [])
  }
  assert.deepEqual(batchForm('globalThis.x = y + z'), { names: ['x', 'y', 'z'], usesGlobalThis: true, bounded: true })
})

test('bounded forms (no string or bigint literal, no typeof) may take the synchronous trip', () => {
  for (const form of ['1+1', 'x = x + 1', 'x++; y--', '[1, { b: 2 }]', 'a ?? b', '2 ** -1', 'x = 1e308 * 10']) {
    assert.equal(batchForm(form)?.bounded, true, form)
  }
  assert.equal(batchForm('x = 2n * y'), undefined, 'bigint literals are not batch forms')
  for (const form of ['"a" + x', '[1, "a"]', '({ "k": 1 })', 'typeof x']) {
    assert.equal(batchForm(form)?.bounded, false, form)
  }
})

test('a bounded form on a name holding a string or bigint is batched asynchronously, with the same outcome', async () => {
  const r = await sameAsSlowPath('strict', 's = "ab"; b = 2n; n = 3', ['s', 'b', 'n + 1', 's', 'n', 'b', 'n = n * 2', 'n'])
  assert.deepEqual(r.map(x => (x as { value: unknown }).value), ['ab', 2n, 4, 'ab', 3, 2n, 6, 6])
})

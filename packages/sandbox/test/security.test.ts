import { test, after } from 'node:test'
import assert from 'node:assert/strict'
import { EvalMeshError } from '@evalmesh/protocol'
import { startSandbox, run, value, failure, noHostPaths } from './helpers.js'

const calls: Array<{ name: string, args: unknown[], ctx: { txn: string, session: string } }> = []
const sandbox = await startSandbox({
  grants: ['evalserver.status', 'evalserver.abort', 'fns.greet', 'megatest.get-keys', 'fns.fail', 'fns.code', 'fns.echo', 'fns.func'],
  hostCall: async (name, args, ctx) => {
    calls.push({ name, args, ctx })
    switch (name) {
      case 'fns.greet': return `hello ${String(args[0])}`
      case 'megatest.get-keys': return new Map([['k', [1, 2]]])
      case 'fns.fail': throw new Error(`failed at ${import.meta.url}`)
      case 'fns.code': throw new EvalMeshError('UNKNOWN_AREA', 'no area x')
      case 'fns.echo': return args
      case 'fns.func': return () => 1
      default: return { which: args[0] ?? 'all', running: [] }
    }
  }
})
after(() => sandbox.stop())

test('granted names appear as nested functions that return promises of the host result', async () => {
  assert.deepEqual(await value(sandbox, 'await evalserver.status("running")'), { which: 'running', running: [] })
  assert.equal(await value(sandbox, 'fns.greet("mesh")'), 'hello mesh')
  assert.deepEqual(await value(sandbox, 'megatest["get-keys"]("area")'), new Map([['k', [1, 2]]]))
  assert.equal(await value(sandbox, 'evalserver.status() instanceof Promise'), true)
  const last = calls.find(c => c.name === 'fns.greet')!
  assert.deepEqual(last.args, ['mesh'])
  assert.equal(last.ctx.session, 'c1/default')
  assert.match(last.ctx.txn, /^t\//)
})

test('host errors arrive as plain Errors with the message only', async () => {
  const r = await value(sandbox, 'let caught; try { await fns.fail() } catch (e) { caught = e }; [caught instanceof Error, caught.message, String(caught.stack)]', 'hosterr/1') as [boolean, string, string]
  assert.equal(r[0], true)
  assert.equal(r[1], 'failed at <host>')
  noHostPaths(r[2])
  assert.equal(await value(sandbox, 'fns.code().catch(e => e.code + ": " + e.message)'), 'UNKNOWN_AREA: no area x')
  const e = await failure(sandbox, 'await fns.func()')
  assert.match(e.message, /cannot be passed into the sandbox/)
  const unhandled = await failure(sandbox, 'await fns.fail()')
  assert.equal(unhandled.code, 'EVAL_ERROR')
  noHostPaths(unhandled.stack)
})

test('only what is granted is visible: no require, process, timers, fetch or isolated-vm objects', async () => {
  const visible = await value(sandbox, '[typeof require, typeof process, typeof setTimeout, typeof setInterval, typeof fetch, typeof module, typeof Buffer, typeof $0, typeof $1, typeof ivm]')
  assert.deepEqual(visible, Array(10).fill('undefined'))
  const globals = await value(sandbox, 'Object.getOwnPropertyNames(globalThis).filter(k => !/^[A-Z]/.test(k)).sort()') as string[]
  assert.deepEqual(globals, ['console', 'decodeURI', 'decodeURIComponent', 'encodeURI', 'encodeURIComponent', 'escape', 'eval', 'evalserver', 'fns', 'globalThis', 'isFinite', 'isNaN', 'megatest', 'parseFloat', 'parseInt', 'undefined', 'unescape'])
  // Walk everything reachable from the granted names: plain functions and objects only.
  const kinds = await value(sandbox, `
    const seen = new Set(); const out = new Set()
    const walk = (v, d) => { if (d > 4 || v === null || (typeof v !== 'object' && typeof v !== 'function') || seen.has(v)) return; seen.add(v)
      out.add(Object.prototype.toString.call(v) + ':' + (Object.getPrototypeOf(v) === Object.prototype || Object.getPrototypeOf(v) === Function.prototype))
      for (const k of Reflect.ownKeys(v)) { const d2 = Object.getOwnPropertyDescriptor(v, k); if ('value' in d2) walk(d2.value, d + 1) } }
    walk(evalserver, 0); walk(fns, 0); walk(megatest, 0); walk(console, 0); [...out].sort()`)
  assert.deepEqual(kinds, ['[object Function]:true', '[object Object]:true'])
})

test('escape attempts find nothing of the host', async () => {
  assert.equal(await value(sandbox, 'this.constructor.constructor("return typeof process")()'), 'undefined')
  assert.equal(await value(sandbox, '(() => {}).constructor("return this")().process'), undefined)
  assert.equal(await value(sandbox, 'globalThis.require'), undefined)
  assert.equal(await value(sandbox, 'evalserver.status.constructor("return typeof process + typeof require")()'), 'undefinedundefined')
  assert.equal(await value(sandbox, 'Object.getPrototypeOf(fns.greet).constructor("return globalThis")() === globalThis'), true)
  const trick = await value(sandbox, `
    Error.prepareStackTrace = (e, frames) => frames.map(f => [typeof f.getThis(), String(f.getFileName()), typeof f.getFunction()].join(' ')).join('|')
    let s1; try { null.x } catch (e) { s1 = e.stack }
    let s2; try { await fns.fail() } catch (e) { s2 = e.stack }
    Error.prepareStackTrace = undefined
    ;[s1, s2].join('#')`) as string
  noHostPaths(trick)
  assert.doesNotMatch(trick, /process|require/)
  // Code that overrides prototypes only hurts itself.
  assert.equal(await value(sandbox, 'Object.prototype.then = () => {}; Array.prototype.map = null; "ok"', 'hostile/1'), 'ok')
  const r = await run(sandbox, 'Map.prototype.get = () => { throw new Error("x") }; fns.greet("again")', 'hostile/1')
  assert.equal(r.ok && r.value, 'hello again')
  const e = await failure(sandbox, 'import("fs")')
  assert.equal(e.code, 'EVAL_ERROR')
})

test('hostile arguments to granted functions cannot break the child', async () => {
  const getter = await value(sandbox, 'let hits = 0; const o = { get boom () { hits++; return "b" } }; await fns.echo(o); hits') as number
  assert.equal(getter, 1)
  const throwing = await failure(sandbox, 'await fns.echo({ get boom () { throw new Error("getter threw") } })')
  assert.match(throwing.message, /getter threw/)
  const fn = await failure(sandbox, 'await fns.echo(() => 1)')
  assert.match(fn.message, /could not be cloned/)
  const sym = await failure(sandbox, 'await fns.echo(Symbol("s"))')
  assert.equal(sym.code, 'EVAL_ERROR')
  const huge = await failure(sandbox, 'await fns.echo("x".repeat(2 ** 20))')
  assert.match(huge.message, /arguments to fns\.echo are \d+ bytes, over the limit/)
  const proxy = await failure(sandbox, 'await fns.echo(new Proxy({}, { ownKeys () { throw new Error("trap") } }))')
  assert.equal(proxy.code, 'EVAL_ERROR')
  const cyclic = await value(sandbox, 'const c = { n: 1 }; c.self = c; const back = await fns.echo(c); back[0].self === back[0]')
  assert.equal(cyclic, true)
  assert.equal(await value(sandbox, 'fns.greet("still fine")'), 'hello still fine')
  assert.equal(sandbox.stats.restarts, 0)
})

test('host calls made after the evaluation finished are refused', async () => {
  await value(sandbox, 'later = new Promise(r => { globalThis.go = r }).then(() => fns.greet("late")).then(v => "got " + v, e => "refused: " + e.message); 1', 'late/1')
  // The next form resolves the gate, so the late call happens during this run.
  assert.equal(await value(sandbox, 'go(); await later', 'late/1'), 'got hello late')
  await value(sandbox, 'gate2 = new Promise(r => { globalThis.go2 = r }); after2 = gate2.then(() => fns.greet("x")).catch(e => e.message); go2(); 2', 'late/2')
  const msg = await value(sandbox, 'after2', 'late/2')
  assert.equal(typeof msg, 'string')
})

test('setGrants changes what the next run sees; bad names are refused', async () => {
  sandbox.setGrants(['fns.greet', 'solo'])
  assert.deepEqual(await value(sandbox, '[typeof evalserver, typeof fns.greet, typeof fns.fail, typeof solo]'), ['undefined', 'function', 'undefined', 'function'])
  assert.throws(() => sandbox.setGrants(['a.__proto__.b']), /reserved segment "__proto__"/)
  assert.throws(() => sandbox.setGrants(['a..b']), /invalid segment/)
  assert.throws(() => sandbox.setGrants(['a b']), /invalid segment/)
})

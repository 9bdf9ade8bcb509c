import { test, after } from 'node:test'
import assert from 'node:assert/strict'
import { startSandbox, LIMITS } from './helpers.js'

// A host function the form awaits: the test decides when the form may go on, so what the
// listener has heard while the form is still running is known exactly.
let release: (() => void) | undefined
const sandbox = await startSandbox({
  grants: ['fns.gate'],
  hostCall: async () => { await new Promise<void>(resolve => { release = resolve }) }
})
after(() => sandbox.stop())

async function until (check: () => boolean, what: string): Promise<void> {
  for (let i = 0; i < 200 && !check(); i++) await new Promise(resolve => setTimeout(resolve, 10))
  assert.ok(check(), `timed out waiting for ${what}`)
}

test('a streaming run sends its output while it runs, and the result still holds all of it', async () => {
  const chunks: string[] = []
  let settled = false
  const running = sandbox.run({
    txn: 's/1', session: 'c1/stream', limits: { ...LIMITS, outputBytes: 4096 },
    form: 'console.log("first"); await fns.gate(); console.log("second"); 7',
    onOutput: text => chunks.push(text)
  }).finally(() => { settled = true })
  await until(() => chunks.join('') === 'first\n', 'the first line')
  assert.equal(settled, false, 'the first line arrived before the form finished')
  release!()
  const r = await running
  assert.equal(r.ok && r.value, 7)
  // The last chunk comes before the result: the stream is whole when the outcome arrives.
  assert.equal(chunks.join(''), 'first\nsecond\n')
  assert.equal(r.output, 'first\nsecond\n')
})

test('streamed output stops at outputBytes, as the captured output does', async () => {
  const chunks: string[] = []
  const r = await sandbox.run({
    txn: 's/2', session: 'c1/stream', limits: { ...LIMITS, outputBytes: 100 },
    form: 'for (let i = 0; i < 1000; i++) console.log("line " + i); "done"',
    onOutput: text => chunks.push(text)
  })
  assert.equal(r.ok && r.value, 'done')
  assert.equal(r.outputTruncated, true)
  assert.equal(chunks.join(''), r.output)
  assert.equal(Buffer.byteLength(chunks.join('')), 100)
  // A tight loop's lines are sent in few messages, not one per line.
  assert.ok(chunks.length < 10, `${chunks.length} chunks`)
})

test('a run that does not ask for a stream sends none, and a listener that throws does not stop the run', async () => {
  const r = await sandbox.run({ txn: 's/3', session: 'c1/stream', limits: LIMITS, form: 'console.log("quiet"); 1' })
  assert.equal(r.ok && r.output, 'quiet\n')
  const thrown = await sandbox.run({
    txn: 's/4', session: 'c1/stream', limits: LIMITS, form: 'console.log("x"); 2',
    onOutput: () => { throw new Error('listener failed') }
  })
  assert.equal(thrown.ok && thrown.value, 2)
  // Errors stream their output too.
  const chunks: string[] = []
  const e = await sandbox.run({
    txn: 's/5', session: 'c1/stream', limits: LIMITS, form: 'console.log("before"); throw new Error("after")',
    onOutput: text => chunks.push(text)
  })
  assert.equal(e.ok, false)
  assert.equal(chunks.join(''), 'before\n')
})

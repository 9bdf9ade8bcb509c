/**
 * Ctrl-C on a waiting CLI command (issue 16, point 2): the first aborts the remote work,
 * names its txn and exits 130; a second leaves at once. Real CLI processes get a real
 * SIGINT, as a terminal sends it; the node's own records say whether the work stopped.
 */
import { after, before, test } from 'node:test'
import assert from 'node:assert/strict'
import { spawn, type ChildProcess } from 'node:child_process'
import { CLI, busyFor, eventually, localClient, startNode, tempDir, writeFile, type TestNode } from './support/node.js'
import type { Client } from '@evalmesh/client'
import { readRuns } from '@evalmesh/ci-agent'

let node: TestNode
let client: Client

before(async () => {
  node = await startNode(['--area', `ci=${tempDir('evalmesh-int-area-')}`, '--keys', 'TARGET', '--concurrency', '4'], { name: 'intnode' })
  client = localClient(node)
})
after(async () => { client.close(); await node.stop() })

function cli (args: string[]): { proc: ChildProcess, stderr: () => string, exit: Promise<number | null> } {
  const proc = spawn(process.execPath, ['--no-node-snapshot', CLI, ...args], { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, EVALMESH_STATE_DIR: node.stateDir } })
  let err = ''
  proc.stderr!.on('data', (c: Buffer) => { err += c.toString() })
  proc.stdout!.resume()
  const timer = setTimeout(() => proc.kill('SIGKILL'), 60_000)
  const exit = new Promise<number | null>(resolve => proc.once('exit', (code, signal) => { clearTimeout(timer); resolve(code ?? (signal === 'SIGKILL' ? -9 : null)) }))
  return { proc, stderr: () => err, exit }
}

const running = async (): Promise<string[]> => (await client.status(node.host, { which: 'running' })).map(r => r.txn)

test('Ctrl-C on evalmesh eval aborts the running form, names its txn and exits 130', async () => {
  const c = cli(['eval', busyFor(30_000), '--host', node.host])
  const [txn] = await eventually(async () => { const r = await running(); return r.length === 1 && r }, 'the form to run', 20_000)
  c.proc.kill('SIGINT')
  assert.equal(await c.exit, 130, c.stderr())
  assert.ok(c.stderr().includes(txn!), `the txn is named: ${c.stderr()}`)
  const [rec] = await eventually(async () => { const d = await client.status(node.host, { which: 'done', id: txn! }); return d.length === 1 && d }, 'the done record', 20_000)
  assert.equal(rec!.errorCode, 'ABORTED')
  assert.match(rec!.reason ?? '', /Ctrl-C/)
})

test('a second Ctrl-C leaves at once', async () => {
  const c = cli(['eval', busyFor(30_000), '--host', node.host])
  await eventually(async () => (await running()).length === 1, 'the form to run', 20_000)
  c.proc.kill('SIGINT')
  c.proc.kill('SIGINT')
  assert.equal(await c.exit, 130, c.stderr())
  await eventually(async () => (await running()).length === 0, 'the first Ctrl-C\'s abort to land', 20_000)
})

test('Ctrl-C on evalmesh ci run ends the steps it started, records the run as aborted and exits 130', async () => {
  const job = writeFile(tempDir(), 'job.json', JSON.stringify({
    area: 'ci', target: { TARGET: 't' }, runname: 'interrupted',
    tests: [{ name: 'long', steps: [{ name: 'spin', form: '(() => { const until = Date.now() + 30000; while (Date.now() < until) {} ; return { status: "PASS" } })()' }] }]
  }))
  const c = cli(['ci', 'run', job, '--host', node.host])
  await eventually(async () => (await running()).length === 1, 'the step to run', 30_000)
  c.proc.kill('SIGINT')
  assert.equal(await c.exit, 130, c.stderr())
  assert.match(c.stderr(), /interrupted: aborting running steps/)
  await eventually(async () => (await running()).length === 0, 'the step to be aborted', 20_000)
  const long = await eventually(async () => {
    const [report] = await readRuns(client, node.host, 'ci', 'interrupted')
    const t = report?.tests.find(x => x.testname === 'long')
    return t !== undefined && t.state !== 'RUNNING' && t
  }, 'the test to be recorded as no longer running', 20_000)
  // (A step that had not started when Ctrl-C came has no records; one that started was ended.)
  const states = long.steps.map(s => s.state)
  assert.ok(states.length === 0 || (states[0] === 'start' && states.at(-1) === 'end'), `steps: ${states.join(', ')}`)
})

/**
 * Console output that streams as it happens (issue 16): a form's lines reach the client,
 * the CLI and a subscriber while the form still runs, over a real node. The form waits on
 * an operator function the test opens (a file appearing), so what was heard before the
 * form finished is known, not guessed from timing.
 */
import { after, before, describe, test } from 'node:test'
import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { PassThrough, Writable } from 'node:stream'
import { Client } from '@evalmesh/client'
import { startRepl } from '@evalmesh/repl'
import { startServer } from '@evalmesh/server'
import type { StreamEvent } from '@evalmesh/protocol'
import { CLI, eventually, localClient, startNode, tempDir, writeFile, type TestNode } from './support/node.js'

const GATE_MODULE = `import { existsSync } from 'node:fs'
export async function gate (path) {
  for (let i = 0; i < 3000 && !existsSync(path); i++) await new Promise(resolve => setTimeout(resolve, 10))
  return existsSync(path)
}
`

let gates = 0
/** A gate the form awaits: `fns.gate(path)` returns once open() has run. */
function newGate (dir: string): { path: string, open: () => void } {
  const path = join(dir, `gate-${++gates}`)
  return { path, open: () => writeFileSync(path, '') }
}

describe('streamed console output', () => {
  let node: TestNode
  let client: Client
  let dir: string
  before(async () => {
    dir = tempDir()
    node = await startNode(['--functions', writeFile(dir, 'gate.mjs', GATE_MODULE), '--timeout', '30000'])
    client = localClient(node)
  })
  after(async () => { client.close(); await node.stop() })

  test('remoteEval with onOutput: lines arrive while the form runs, in order, and the outcome still carries them all', async () => {
    const gate = newGate(dir)
    const heard: string[] = []
    let settled = false
    const running = client.evalDetailed(`console.log("one"); console.log("two"); await fns.gate(${JSON.stringify(gate.path)}); console.log("three"); 42`,
      node.host, { onOutput: text => heard.push(text) }).finally(() => { settled = true })
    await eventually(() => heard.join('') === 'one\ntwo\n', 'the first two lines')
    assert.equal(settled, false, 'heard before the form finished')
    gate.open()
    const r = await running
    assert.ok('value' in r)
    assert.equal(r.value, 42)
    assert.equal(heard.join(''), 'one\ntwo\nthree\n')
    assert.equal(r.output, 'one\ntwo\nthree\n')
  })

  test('a result that waits with onOutput gets what was written so far, then the rest live', async () => {
    const gate = newGate(dir)
    const txn = await client.remoteEval(`console.log("early"); await fns.gate(${JSON.stringify(gate.path)}); console.log("late"); "ok"`,
      node.host, { wait: false, session: 'fetch' }) as string
    await eventually(async () => (await client.status(node.host, { id: txn }))[0]?.state === 'running', 'the form to run')
    const first: string[] = []
    const firstFetch = client.fetchResult(txn, node.host, { wait: true, onOutput: text => first.push(text) })
    await eventually(() => first.join('') === 'early\n', 'the early line')
    // The node has sent that line, so it holds it: a follower from now on gets it as catch-up.
    const heard: string[] = []
    const fetched = client.fetchResult(txn, node.host, { wait: true, onOutput: text => heard.push(text) })
    await eventually(() => heard.join('') === 'early\n', 'the output so far')
    gate.open()
    const r = await fetched
    assert.equal(r.value, 'ok')
    assert.equal(heard.join(''), 'early\nlate\n')
    assert.equal((await firstFetch).value, 'ok')
    assert.equal(first.join(''), 'early\nlate\n')
  })

  test('a subscriber sees output events of the txns it may see', async () => {
    const events: StreamEvent[] = []
    const conn = await client.connection(client.resolve(node.host))
    const sub = await conn.subscribe(batch => events.push(...batch))
    try {
      const r = await client.evalDetailed('console.log("watched"); 1', node.host)
      assert.ok('value' in r)
      await eventually(() => events.some(e => e.type === 'output' && e.txn === r.txn && e.text === 'watched\n'), 'the output event')
    } finally {
      sub.close()
    }
  })

  test('without onOutput nothing is streamed: the output comes once, with the outcome', async () => {
    const r = await client.evalDetailed('console.log("plain"); 2', node.host)
    assert.ok('value' in r)
    assert.equal(r.output, 'plain\n')
  })

  test('evalmesh eval prints the output live on stderr while the form runs, the value on stdout at the end', async () => {
    const gate = newGate(dir)
    const child = spawn(process.execPath, ['--no-node-snapshot', CLI, 'eval', '--host', node.host,
      `console.log("progress 1"); await fns.gate(${JSON.stringify(gate.path)}); console.log("progress 2"); 6 * 7`],
    { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, EVALMESH_STATE_DIR: node.stateDir } })
    let stdout = ''
    let stderr = ''
    child.stdout.on('data', d => { stdout += d })
    child.stderr.on('data', d => { stderr += d })
    const exited = new Promise<number | null>(resolve => child.on('close', code => resolve(code)))
    let done = false
    void exited.then(() => { done = true })
    try {
      await eventually(() => stderr.includes('progress 1\n'), `the first line on stderr (stderr: ${stderr})`)
      assert.equal(done, false, 'printed while the form still ran')
      assert.equal(stdout, '', 'the value comes at the end')
      gate.open()
      assert.equal(await exited, 0, stderr)
      assert.equal(stdout.trim(), '42')
      // Each line once: streamed lines are not printed again with the outcome.
      assert.equal(stderr.split('progress 1').length - 1, 1, stderr)
      assert.equal(stderr.split('progress 2').length - 1, 1, stderr)
    } finally {
      if (!done) child.kill('SIGKILL')
    }
  })
})

test('the REPL prints a form\'s output as it happens, then the value, each line once', async () => {
  const dir = tempDir()
  let open: (() => void) | undefined
  const gate = async (): Promise<boolean> => await new Promise<boolean>(resolve => { open = () => resolve(true) })
  const server = await startServer({ stateDir: dir, name: 'replstream', port: 0, functions: { gate } })
  const host = `127.0.0.1:${server.address.port}`
  const client = new Client({ stateDir: dir })
  const input = new PassThrough()
  let written = ''
  const output = new Writable({ write (chunk: Buffer, _e, cb) { written += chunk.toString('utf8'); cb() } })
  const repl = await startRepl({ client, defaultHost: host, input, output, terminal: true, historyFile: join(dir, 'history') })
  const out = (): string => written.replace(/\x1b\[[0-9;?]*[A-Za-z]/g, '').replace(/\r/g, '')
  try {
    input.write(`.host ${host}\r`)
    await eventually(() => out().includes('plain input now evaluates on replstream'), 'the switch')
    input.write('console.log("tick"); await fns.gate(); console.log("tock"); 40 + 2\r')
    await eventually(() => out().includes('tick\n') && open !== undefined, `the first line (${out()})`)
    assert.doesNotMatch(out(), /\n42\n/, 'the value comes after')
    open!()
    await eventually(() => out().includes('\n42\n'), `the value (${out()})`)
    assert.match(out(), /tick\ntock\n(.*\n)?42\n/)
    assert.equal(out().split('tick').length - 1, 2, 'typed once (echo), printed once: ' + out())
  } finally {
    repl.server.close()
    client.close()
    await server.stop()
  }
})

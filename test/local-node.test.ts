/**
 * One rule for "the local node" (issue 16, point 1; README "Which node a command talks
 * to"), as a user meets it: every command, the REPL's helpers and bare addresses find the
 * node started from the state dir, the most recently started of those alive; then
 * $EVALMESH_HOST, then client.json; then an error that names the fix. Ports are never
 * guessed. Real nodes, the real CLI.
 */
import { after, before, test } from 'node:test'
import assert from 'node:assert/strict'
import { rmSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { newMesh, runCli, startNode, type CliRun, type TestNode } from './support/node.js'

let stateDir: string
let otherDir: string
let first: TestNode
let second: TestNode
let elsewhere: TestNode

function evalmesh (args: string[], opts: { env?: Record<string, string>, input?: string } = {}): Promise<CliRun> {
  return runCli(args, { stateDir, ...opts })
}

/** The name of the node a command reached, from its --json reply. */
async function reached (args: string[], env?: Record<string, string>): Promise<string> {
  const r = await evalmesh([...args, '--json'], env === undefined ? {} : { env })
  assert.equal(r.code, 0, `${args.join(' ')}: ${r.stdout}${r.stderr}`)
  const reply = JSON.parse(r.stdout) as { value: { name?: string } | unknown, node?: string }
  return reply.node ?? (reply.value as { name: string }).name
}

before(async () => {
  const meshDir = newMesh('evalmesh-local-')
  stateDir = meshDir()
  otherDir = meshDir()
  first = await startNode([], { stateDir, name: 'first' })
  second = await startNode([], { stateDir, name: 'second' })
  elsewhere = await startNode([], { stateDir: otherDir, name: 'elsewhere' })
})

after(async () => {
  for (const n of [first, second, elsewhere]) await n.stop()
  rmSync(stateDir, { recursive: true, force: true })
  rmSync(otherDir, { recursive: true, force: true })
})

test('with no --host, every command talks to the node most recently started from the state dir', async () => {
  assert.equal(await reached(['describe']), 'second')
  assert.equal(await reached(['ping']), 'second')
  // eval and apply without --host broadcast instead: one of this state dir's nodes runs it, never another's.
  assert.ok(['first', 'second'].includes(await reached(['eval', '1 + 1'])))
  // trace and policy reply without a name: what they change shows where they went.
  assert.equal((await evalmesh(['trace', '--on'])).code, 0)
  assert.equal((await evalmesh(['describe', '--host', second.host, '--json'])).stdout.includes('"trace":true'), true)
  assert.equal((await evalmesh(['describe', '--host', first.host, '--json'])).stdout.includes('"trace":false'), true)
  assert.equal((await evalmesh(['policy', '--gag', 'mallory'])).code, 0)
  assert.match((await evalmesh(['policy', '--host', second.host])).stdout, /gags:\s+mallory/)
  assert.doesNotMatch((await evalmesh(['policy', '--host', first.host])).stdout, /mallory/)
})

test('the REPL\'s helpers use the same local node', async () => {
  const r = await evalmesh(['repl'], { input: 'await remoteApply("evalserver.describe").then(d => "on " + d.name)\n' })
  assert.equal(r.code, 0, r.stderr)
  assert.match(r.stdout, /'on second'/)
})

test('a bare address means the port of the node this state dir started there; one nobody advertises is an error asking for host:port', async () => {
  assert.equal(await reached(['describe', '--host', '127.0.0.1']), 'second')
  assert.equal(await reached(['describe', '--host', 'localhost']), 'second')
  const r = await evalmesh(['describe', '--host', '127.0.0.9'])
  assert.equal(r.code, 1)
  assert.match(r.stderr, /UNKNOWN_HOST: "127\.0\.0\.9" has no port, and no node known here advertises one at that address: give host:port \(e\.g\. 127\.0\.0\.9:6680\)/)
})

test('when the newest node stops, the one before it is the local node; with none alive, $EVALMESH_HOST, then client.json, then an error naming the fix', async () => {
  await second.stop()
  assert.equal(await reached(['describe']), 'first')
  await first.stop()

  const none = await evalmesh(['describe'])
  assert.equal(none.code, 1)
  assert.match(none.stderr, /UNKNOWN_HOST: no local node: none is running with state dir .* \(start one with `evalmesh serve`\), and neither \$EVALMESH_HOST nor .*client\.json names a default; give --host host:port/)

  writeFileSync(join(stateDir, 'client.json'), JSON.stringify({ host: elsewhere.host }))
  assert.equal(await reached(['describe']), 'elsewhere')
  // The environment beats the file.
  const env = await evalmesh(['describe'], { env: { EVALMESH_HOST: '127.0.0.1:1' } })
  assert.equal(env.code, 1)
  assert.match(env.stderr, /cannot connect to 127\.0\.0\.1:1/)

  writeFileSync(join(stateDir, 'client.json'), '{"host": ')
  const bad = await evalmesh(['describe'])
  assert.equal(bad.code, 1)
  assert.match(bad.stderr, /client\.json is not JSON .*; it should be \{"host": "host:port"\}/)
})

/**
 * A node logs what happens to it (issue 10, point 4): to stderr by default, as JSON lines
 * with --log-format json, into a file with --log-file; a sandbox restart and a stop are
 * there whether or not the trace is on.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { readFileSync, statSync } from 'node:fs'
import { join } from 'node:path'
import { eventually, localClient, startNode, tempDir } from './support/node.js'

test('a node logs its start, a sandbox restart and its stop, as JSON lines, with the trace off', async () => {
  const node = await startNode(['--log-format', 'json', '--log-level', 'info'])
  const client = localClient(node)
  try {
    assert.equal(await client.remoteEval('1 + 1', node.host), 2)
    const pid = (await client.describe(node.host)).sandbox?.processes?.find(p => p.clients > 0)?.pid
    assert.ok(pid !== undefined)
    process.kill(pid, 'SIGKILL')
    const lines = (): Array<Record<string, unknown>> => node.output().split('\n').filter(l => l.startsWith('{')).map(l => JSON.parse(l) as Record<string, unknown>)
    await eventually(() => lines().some(l => l.component === 'sandbox' && l.event === 'restart'), 'the sandbox restart in the log')
    assert.ok(lines().some(l => l.component === 'node' && l.event === 'started'))
    const restart = lines().find(l => l.event === 'restart')!
    assert.equal(restart.level, 'warn')
    assert.match(String(restart.message), /SIGKILL/)
  } finally {
    client.close()
    // Also when an assertion failed: a test must not leave its node running.
    await node.stop()
  }
})

test('--log-file appends text lines to a private file', async () => {
  const file = join(tempDir(), 'node.log')
  const node = await startNode(['--log-file', file])
  await node.stop()
  const text = readFileSync(file, 'utf8')
  assert.match(text, /info\s+node\s+.*listening on/)
  assert.match(text, /stopping/)
  assert.equal(statSync(file).mode & 0o777, 0o600)
})

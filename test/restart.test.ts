/**
 * Transactions that survive a crash (issue 13, point 4): kill -9 a node, start it again on
 * the same state dir, and what it had done is still there; what it was doing is lost.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { statSync } from 'node:fs'
import { join } from 'node:path'
import { RemoteEvalError } from '@evalmesh/client'
import { busyFor, eventually, localClient, startNode, tempDir } from './support/node.js'

test('after kill -9 and a restart: done records, kept results and retransmits answer as before; running work is recorded lost', async () => {
  const stateDir = tempDir()
  const first = await startNode(['--timeout', '20000'], { stateDir })
  const client = localClient(first)
  let done: string
  let running: string
  let queued: string
  try {
    done = (await client.evalDetailed('({ answer: 6 * 7 })', first.host)).txn
    running = await client.remoteEval(busyFor(15000), first.host, { wait: false, session: 'long' }) as string
    queued = await client.remoteEval('"never"', first.host, { wait: false, session: 'long' }) as string
    await eventually(async () => (await client.status(first.host, { id: running }))[0]?.state === 'running', 'the long form to run')
    await new Promise(resolve => setTimeout(resolve, 100)) // the store writes at the end of each turn
  } finally {
    client.close()
  }
  await first.stop('SIGKILL')
  assert.equal(statSync(join(stateDir, 'txns.journal')).mode & 0o777, 0o600)

  const second = await startNode(['--timeout', '20000'], { stateDir })
  const again = localClient(second)
  try {
    const [record] = await again.status(second.host, { which: 'done', id: done })
    assert.equal(record?.howStopped, 'completed')
    assert.deepEqual((await again.fetchResult(done, second.host)).value, { answer: 42 })
    for (const txn of [running, queued]) {
      const [lost] = await again.status(second.host, { which: 'done', id: txn })
      assert.equal(lost?.howStopped, 'lost', txn)
      assert.equal(lost?.reason, 'node restarted')
      await assert.rejects(again.fetchResult(txn, second.host), (e: RemoteEvalError) => e.code === 'LOST' && /node restarted/.test(e.message))
    }
    // A retransmit of the finished txn gets its recorded outcome: it does not run again.
    const conn = await again.connection(again.resolve(second.host))
    const replay = await conn.request({ kind: 'eval', txn: done, form: '({ answer: 6 * 7 })', wait: true })
    assert.ok('value' in replay)
    assert.deepEqual(replay.value, { answer: 42 })
    assert.equal((await again.status(second.host, { which: 'running' })).length, 0, 'nothing was started')
    assert.equal((await again.describe(second.host)).retention.durable, true)
  } finally {
    again.close()
    await second.stop()
  }
})

test('a journal that cannot be written (the file-size limit, as a full disk) does not take the node down: it goes on in memory and says so', async () => {
  const stateDir = tempDir()
  // 64 KiB: the key and the node's locator fit, the journal fills after about a hundred records.
  const node = await startNode([], { stateDir, fileSizeLimitKiB: 64 })
  const client = localClient(node)
  try {
    assert.equal((await client.describe(node.host)).retention.durable, true)
    const big = 'x'.repeat(2000) // each record's line carries its form
    for (let i = 0; i < 150; i++) assert.equal(await client.remoteEval(`${JSON.stringify(big)}.length + ${i}`, node.host), 2000 + i)
    await eventually(async () => (await client.describe(node.host)).retention.durable === false, 'describe to stop saying durable')
    assert.match(node.output(), /error\s+store\s+.*txns\.journal could not be written \(.*\): from now on this node keeps its transactions in memory only/)
    // Still serving, and still keeping results in memory.
    const { txn } = await client.evalDetailed('6 * 7', node.host)
    assert.equal((await client.fetchResult(txn, node.host)).value, 42)
    assert.ok(statSync(join(stateDir, 'txns.journal')).size <= 64 * 1024)
  } finally {
    client.close()
  }
  assert.equal(await node.stop(), 0, 'and it stops cleanly')
})

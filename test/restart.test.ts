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

/**
 * Liveness over a real node (PROTOCOL.md §8 "Liveness"): a call without timeoutMs to a
 * node that stopped answering fails LOST within the heartbeat's bound, and a long
 * evaluation on a live node is never cut off by it.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import type { EvalMeshError } from '@evalmesh/client'
import { busyFor, localClient, startNode } from './support/node.js'

test('a call to a node stopped with SIGSTOP fails LOST within the heartbeat timeout', async () => {
  const node = await startNode()
  const client = localClient(node) // default heartbeat: ping after 1 s, LOST after 5 s
  try {
    assert.equal(await client.remoteEval('1 + 1', node.host), 2) // the pooled connection is open
    node.proc.kill('SIGSTOP')
    const started = Date.now()
    const err = await client.remoteEval('2 + 2', node.host).catch((e: EvalMeshError) => e) as EvalMeshError
    const took = Date.now() - started
    assert.equal(err.code, 'LOST', String(err))
    assert.ok(typeof err.data.txn === 'string' && err.message.includes(err.data.txn), err.message)
    assert.match(String((err.cause as Error | undefined)?.message), /no reply to ping/)
    assert.ok(took >= 4000 && took < 9000, `LOST after ${took} ms`)
  } finally {
    client.close()
    node.proc.kill('SIGCONT')
    await node.stop()
  }
})

test('a 3-second evaluation on a live node is not cut off by a 1-second heartbeat timeout', async () => {
  const node = await startNode()
  // Stricter than the default, so that the evaluation outlasts the timeout three times over.
  const client = localClient(node, { heartbeatIntervalMs: 200, heartbeatTimeoutMs: 1000 })
  try {
    assert.equal(await client.remoteEval(busyFor(3000), node.host), 'slept 3000')
  } finally {
    client.close()
    await node.stop()
  }
})

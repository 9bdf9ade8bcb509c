/**
 * IPv6 end to end on loopback (issue 12, point 3): a node listening on [::1] takes directed
 * requests over TCP and answers broadcast queries over UDP/IPv6 from its local clients.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { Client } from '@evalmesh/client'
import { startNode } from './support/node.js'

test('a node on [::1]: directed eval and a broadcast with no host work over IPv6', async () => {
  const node = await startNode(['--listen', '::1'])
  // Where the node takes unicast broadcast queries, as its locator says (the CLI reads the same).
  const { udp } = JSON.parse(readFileSync(join(node.stateDir, 'node.json'), 'utf8')) as { udp: { address: string, port: number } }
  assert.equal(udp.address, '::1')
  const client = new Client({ stateDir: node.stateDir, broadcast: { targets: [udp] } })
  try {
    const host = `[::1]:${node.port}`
    assert.match(node.output(), /listening on \[::1\]:\d+/)
    assert.equal(await client.remoteEval('6 * 7', host), 42)
    const broadcast = await client.evalDetailed('"by broadcast"', null)
    assert.ok('value' in broadcast && broadcast.value === 'by broadcast')
    assert.match(broadcast.host ?? '', /^\[::1\]:\d+$/)
    assert.equal((await client.status(host, { which: 'done' })).length, 2)
  } finally {
    client.close()
    await node.stop()
  }
})

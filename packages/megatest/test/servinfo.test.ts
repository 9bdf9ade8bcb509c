import { test } from 'node:test'
import assert from 'node:assert/strict'
import { readFileSync, readdirSync, writeFileSync, utimesSync, mkdirSync } from 'node:fs'
import { basename, join } from 'node:path'
import {
  areaSignature, cleanStaleServers, explainStartDecision, formatServinfoLine, isPrimaryServer, listServers,
  parseServinfoLine, registerServer, servinfoDir, shouldStartServer, touchServer, unregisterServer
} from '../src/index.js'
import { tempDir } from './helpers.js'

const age = (file: string, ms: number): void => {
  const t = new Date(Date.now() - ms)
  utimesSync(file, t, t)
}

test('registerServer writes <area>/.servinfo/<host>:<port>-<pid> with one parseable line', (t) => {
  const area = tempDir(t)
  const rec = registerServer(area, { host: '127.0.0.1', port: 6680, node: 'node-a', pid: 4242, startedAt: 1700000000.25 })
  assert.equal(basename(rec.file), '127.0.0.1:6680-4242')
  assert.equal(rec.serverId, areaSignature(area))
  const text = readFileSync(rec.file, 'utf8')
  assert.equal(text, `SERVER STARTED: 127.0.0.1:6680 AT 1700000000.250 server-id: ${rec.serverId} pid: 4242 node: node-a\n`)
  assert.deepEqual(parseServinfoLine(text, rec.file), rec)
  assert.deepEqual(listServers(area), [rec])
  assert.deepEqual(readdirSync(servinfoDir(area)), ['127.0.0.1:6680-4242'], 'no temp file left behind')
  const v6 = parseServinfoLine(formatServinfoLine({ ...rec, host: '::1', port: 7000, node: 'node with spaces' }))
  assert.deepEqual([v6?.host, v6?.port, v6?.node], ['::1', 7000, 'node with spaces'])
  assert.equal(parseServinfoLine('garbage'), null)
  assert.throws(() => registerServer(area, { host: 'h', port: 0, node: 'n' }), /port/)
  assert.throws(() => registerServer(area, { host: 'h', port: 1, node: 'a\nb' }), /single line/)
})

test('staleness: untouched files drop out of the live list, a touch brings them back, clean removes stale and junk', (t) => {
  const area = tempDir(t)
  const a = registerServer(area, { host: '127.0.0.1', port: 7001, node: 'a', pid: 1, startedAt: 100 })
  const b = registerServer(area, { host: '127.0.0.1', port: 7002, node: 'b', pid: 2, startedAt: 200 })
  assert.deepEqual(listServers(area).map(s => s.node), ['a', 'b'], 'oldest start first')
  assert.equal(isPrimaryServer(area, a.file), true)
  assert.equal(isPrimaryServer(area, b.file), false)
  age(a.file, 11_000)
  assert.deepEqual(listServers(area).map(s => s.node), ['b'])
  assert.equal(isPrimaryServer(area, b.file), true, 'b takes over once a is stale')
  assert.deepEqual(listServers(area, { staleAfterMs: 20_000 }).map(s => s.node), ['a', 'b'])
  assert.equal(touchServer(a.file), true)
  assert.deepEqual(listServers(area).map(s => s.node), ['a', 'b'])
  age(a.file, 30_000)
  writeFileSync(join(servinfoDir(area), 'junk:1-1'), 'not a servinfo line\n')
  const removed = cleanStaleServers(area)
  assert.deepEqual(removed.map(f => basename(f)).sort(), ['127.0.0.1:7001-1', 'junk:1-1'])
  assert.deepEqual(readdirSync(servinfoDir(area)), ['127.0.0.1:7002-2'])
  assert.equal(touchServer(a.file), false, 'touching a removed file reports the loss')
  unregisterServer(b.file)
  assert.deepEqual(listServers(area), [])
  assert.deepEqual(listServers(tempDir(t)), [], 'no .servinfo directory yet')
})

test('shouldStartServer: not within 5 s of our last start, not when enough live servers are registered', (t) => {
  const area = tempDir(t)
  const now = Date.now()
  assert.equal(shouldStartServer(area, { now, lastStartAt: null }), true)
  assert.equal(shouldStartServer(area, { now, lastStartAt: now - 4_000 }), false)
  assert.match(explainStartDecision(area, { now, lastStartAt: now - 4_000 }).reason, /ms ago/)
  assert.equal(shouldStartServer(area, { now, lastStartAt: now - 6_000 }), true)
  const s = registerServer(area, { host: '127.0.0.1', port: 7003, node: 'a' })
  assert.equal(shouldStartServer(area, { now, lastStartAt: null }), false, 'one live server is enough by default')
  assert.equal(shouldStartServer(area, { now, lastStartAt: null, maxServers: 2 }), true)
  const d = explainStartDecision(area, { now, lastStartAt: null })
  assert.deepEqual(d.live.map(x => x.file), [s.file])
  age(s.file, 15_000)
  assert.equal(shouldStartServer(area, { now, lastStartAt: null }), true, 'a stale registration does not count')
  assert.equal(shouldStartServer(area, { now, lastStartAt: null, servers: [s] }), false, 'caller-supplied list is used as is')
  mkdirSync(join(servinfoDir(area), 'subdir'))
  assert.deepEqual(listServers(area), [])
})

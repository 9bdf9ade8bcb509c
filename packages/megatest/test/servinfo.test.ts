import { test } from 'node:test'
import assert from 'node:assert/strict'
import { readFileSync, readdirSync, writeFileSync, utimesSync, mkdirSync } from 'node:fs'
import { basename, join } from 'node:path'
import {
  areaSignature, cleanStaleServers, explainStartDecision, formatServinfoLine, isPrimaryServer, listServers,
  parseServinfoLine, registerServer, servinfoDir, shouldStartServer, startHeartbeat, touchServer, unregisterServer
} from '../src/index.js'
import { tempDir } from './helpers.js'

const age = (file: string, ms: number): void => {
  const t = new Date(Date.now() - ms)
  utimesSync(file, t, t)
}

test('registerServer writes <area>/.servinfo/<host>:<port>-<pid>:main.db with Megatest\'s line, node after it', (t) => {
  const area = tempDir(t)
  const rec = registerServer(area, { host: '127.0.0.1', port: 6680, node: 'node-a', pid: 4242, startedAt: 1700000000.25 })
  assert.equal(basename(rec.file), '127.0.0.1:6680-4242:main.db')
  assert.equal(rec.dbfname, 'main.db')
  assert.equal(rec.serverId, areaSignature(area))
  const text = readFileSync(rec.file, 'utf8')
  assert.equal(text, `SERVER STARTED: 127.0.0.1:6680 AT 1700000000.250 server-id: ${rec.serverId} pid: 4242 dbfname: main.db node: node-a\n`)
  // tt:server-get-info's regex (not anchored at the end) reads the same six fields.
  const tt = /^SERVER STARTED: (\S+):(\d+) AT ([\d.]+) server-id: (\S+) pid: (\d+) dbfname: (\S+)/.exec(text)
  assert.deepEqual(tt?.slice(1), ['127.0.0.1', '6680', '1700000000.250', rec.serverId, '4242', 'main.db'])
  assert.deepEqual(parseServinfoLine(text, rec.file), rec)
  assert.deepEqual(listServers(area), [rec])
  assert.deepEqual(readdirSync(servinfoDir(area)), ['127.0.0.1:6680-4242:main.db'], 'no temp file left behind')
  // A file Megatest wrote (no node) and one in evalmesh's older format (node: in place of dbfname:) both parse.
  const mt = parseServinfoLine(`SERVER STARTED: 10.0.0.5:50216 AT 1616502350.0 server-id: ${rec.serverId} pid: 777 dbfname: main.db`)
  assert.deepEqual([mt?.host, mt?.pid, mt?.dbfname, mt?.node], ['10.0.0.5', 777, 'main.db', ''])
  const older = parseServinfoLine(`SERVER STARTED: 127.0.0.1:1 AT 1.000 server-id: x pid: 5 node: old-node`)
  assert.deepEqual([older?.dbfname, older?.node], ['main.db', 'old-node'])
  const perRun = parseServinfoLine(`SERVER STARTED: 127.0.0.1:2 AT 2.000 server-id: x pid: 6 dbfname: 3.db`)
  assert.equal(perRun?.dbfname, '3.db')
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
  assert.deepEqual(removed.map(f => basename(f)).sort(), ['127.0.0.1:7001-1:main.db', 'junk:1-1'])
  assert.deepEqual(readdirSync(servinfoDir(area)), ['127.0.0.1:7002-2:main.db'])
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

test('startHeartbeat with a PrimaryWatch: a second server learns the earlier, live one is primary; a dead one\'s leftover file does not demote', async (t) => {
  const area = tempDir(t)
  const first = registerServer(area, { host: '127.0.0.1', port: 7101, node: 'first', pid: 11, startedAt: Date.now() / 1000 - 5 })
  age(first.file, 2000)
  // A Megatest server's file for a per-run db is not a main.db server.
  writeFileSync(join(servinfoDir(area), '127.0.0.1:7200-12:3.db'), formatServinfoLine({ host: '127.0.0.1', port: 7200, startedAt: 1, serverId: 'x', pid: 12, dbfname: '3.db', node: '' }) + '\n')
  assert.deepEqual(listServers(area).map(s => s.node), ['first'])
  const second = registerServer(area, { host: '127.0.0.1', port: 7102, node: 'second', pid: 13 })
  const demoted: Array<string | undefined> = []
  const beat = startHeartbeat(second.file, 30, undefined, { areaDir: area, onNotPrimary: (p) => demoted.push(p?.node) })
  t.after(() => beat.stop())
  await new Promise(resolve => setTimeout(resolve, 120))
  assert.deepEqual(demoted, [], 'first has not been touched since second started: it may be dead')
  touchServer(first.file)
  await new Promise(resolve => setTimeout(resolve, 120))
  assert.deepEqual(demoted, ['first'], 'once first heartbeats, second is told, once')
  // The primary itself is never told.
  const told: unknown[] = []
  const own = startHeartbeat(first.file, 30, undefined, { areaDir: area, onNotPrimary: (p) => told.push(p) })
  t.after(() => own.stop())
  await new Promise(resolve => setTimeout(resolve, 120))
  assert.deepEqual(told, [])
})

test('the load guard: no start while the normalized load is above maxLoad (Megatest: 2.0), only when asked', (t) => {
  const area = tempDir(t)
  const now = Date.now()
  assert.equal(shouldStartServer(area, { now, lastStartAt: null, maxLoad: 2, normalizedLoad: 2.5 }), false)
  assert.match(explainStartDecision(area, { now, lastStartAt: null, maxLoad: 2, normalizedLoad: 2.5 }).reason, /load 2.50 is above 2/)
  assert.equal(shouldStartServer(area, { now, lastStartAt: null, maxLoad: 2, normalizedLoad: 1.5 }), true)
  assert.equal(shouldStartServer(area, { now, lastStartAt: null, normalizedLoad: 99 }), true, 'off unless maxLoad is given')
})

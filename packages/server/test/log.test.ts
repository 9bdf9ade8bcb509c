import { test } from 'node:test'
import assert from 'node:assert/strict'
import dc from 'node:diagnostics_channel'
import { PassThrough } from 'node:stream'
import { mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { channels, publish, EVENTS, EVENT_NAMES, type EventName } from '../src/events.js'
import { createNodeLogger } from '../src/log.js'
import { Trace, attachTrace } from '../src/trace.js'

const NODE = 'n0de'
const fixed = (): Date => new Date('2026-12-03T00:40:00.123Z')

function capture (): { stream: PassThrough, lines: () => string[] } {
  const stream = new PassThrough()
  let text = ''
  stream.setEncoding('utf8')
  stream.on('data', (c: string) => { text += c })
  return { stream, lines: () => text.split('\n').filter(l => l !== '') }
}

test('every event is declared once: a channel evalmesh:<component>:<event>, a level, a wording', () => {
  const names = new Set<string>()
  for (const n of EVENT_NAMES) {
    const spec = EVENTS[n as EventName]
    const name = String(channels[n].name)
    assert.equal(name, `evalmesh:${spec.component}:${spec.event}`, n)
    assert.ok(!names.has(name), `${name} declared twice`)
    names.add(name)
    assert.ok(['debug', 'info', 'warn', 'error'].includes(spec.level), n)
  }
  // The channel objects are diagnostics_channel's own: anyone may subscribe by name.
  assert.equal(dc.channel('evalmesh:sandbox:restart'), channels.sandboxRestart as unknown)
})

test('publish costs nothing without subscribers and delivers with one', () => {
  let got: unknown
  assert.equal(channels.nodeStopping.hasSubscribers, false)
  publish(channels.nodeStopping, { node: NODE, reason: 'nobody listens' })
  const fn = (m: unknown): void => { got = m }
  channels.nodeStopping.subscribe(fn)
  publish(channels.nodeStopping, { node: NODE, reason: 'test' })
  channels.nodeStopping.unsubscribe(fn)
  assert.deepEqual(got, { node: NODE, reason: 'test' })
})

test('text lines: time, level, component, message; levels below the threshold are left out', () => {
  const { stream, lines } = capture()
  const log = createNodeLogger({ level: 'info', stream, now: fixed })
  publish(channels.sandboxRestart, { node: NODE, reason: 'isolate crashed' })
  publish(channels.txnStarted, { node: NODE, txn: 'c:1', peer: 'ann', peerId: 'p', summary: '1 + 1' }) // debug: left out
  publish(channels.requestRefused, { node: NODE, txn: 'c:2', peer: 'mallory', peerId: 'p', mode: 'directed', rule: 'gag mallory' })
  log.close()
  publish(channels.sandboxRestart, { node: NODE, reason: 'after close' })
  assert.deepEqual(lines(), [
    '2026-12-03T00:40:00.123Z warn  sandbox    restarted: isolate crashed',
    '2026-12-03T00:40:00.123Z info  request    directed request refused: gag mallory txn=c:2 peer=mallory'
  ])
})

test('level warn leaves info out; level debug takes everything', () => {
  const warn = capture()
  const debug = capture()
  const a = createNodeLogger({ level: 'warn', stream: warn.stream })
  const b = createNodeLogger({ level: 'debug', stream: debug.stream })
  publish(channels.policyChanged, { node: NODE, by: 'op', hosts: ['directed'], gags: [] })
  publish(channels.txnStarted, { node: NODE, txn: 'c:1', peer: 'ann', peerId: 'p', summary: 'x' })
  publish(channels.controlPortUnavailable, { node: NODE, message: 'in use' })
  a.close(); b.close()
  assert.equal(warn.lines().length, 1)
  assert.match(warn.lines()[0]!, /warn {2}control {4}no control port: in use$/)
  assert.equal(debug.lines().length, 3)
})

test('json lines: time, level, component, event, message and the payload', () => {
  const { stream, lines } = capture()
  const log = createNodeLogger({ level: 'debug', format: 'json', stream, now: fixed })
  publish(channels.sandboxRestart, { node: NODE, reason: 'oom', culpritSession: 's1' })
  log.log('info', 'cli', 'hello')
  log.close()
  const [ev, own] = lines().map(l => JSON.parse(l) as Record<string, unknown>)
  assert.deepEqual(ev, {
    time: '2026-12-03T00:40:00.123Z', level: 'warn', component: 'sandbox', event: 'restart',
    message: 'restarted: oom (session s1)', node: NODE, reason: 'oom', culpritSession: 's1'
  })
  assert.deepEqual(own, { time: '2026-12-03T00:40:00.123Z', level: 'info', component: 'cli', message: 'hello' })
})

test('a hostile peer name cannot forge a line or drive the terminal', () => {
  const evil = 'mallory\x1b[2J\ninfo  node       all is well'
  const text = capture()
  const json = capture()
  const a = createNodeLogger({ level: 'debug', stream: text.stream })
  const b = createNodeLogger({ level: 'debug', format: 'json', stream: json.stream })
  publish(channels.discoveryConflict, { node: NODE, name: evil, address: '198.18.0.9', renamedTo: 'me-2' })
  publish(channels.connectionAccepted, { node: NODE, connection: 3, peer: evil, peerId: 'p', address: '10.0.0.1', trustedBy: 'mesh' })
  a.close(); b.close()
  const lines = text.lines()
  assert.equal(lines.length, 2, lines.join('\n'))
  for (const l of lines) {
    assert.ok(!l.includes('\x1b'), l)
    assert.ok(l.includes('mallory\\x1b[2J\\ninfo'), l)
  }
  const j = json.lines()
  assert.equal(j.length, 2)
  assert.equal((JSON.parse(j[1]!) as { peer: string }).peer, evil)
  assert.ok(!j[1]!.includes('\x1b'))
})

test('node filter: only the given node', () => {
  const { stream, lines } = capture()
  const log = createNodeLogger({ stream, node: 'mine' })
  publish(channels.nodeStopping, { node: 'other', reason: 'x' })
  publish(channels.nodeStopping, { node: 'mine', reason: 'y' })
  log.close()
  assert.equal(lines().length, 1)
  assert.match(lines()[0]!, /stopping: y$/)
})

test('--log-file appends, owner-only', () => {
  const dir = mkdtempSync(join(tmpdir(), 'em-log-'))
  try {
    const file = join(dir, 'node.log')
    for (const reason of ['one', 'two']) {
      const log = createNodeLogger({ file })
      publish(channels.nodeStopping, { node: NODE, reason })
      log.close()
    }
    const text = readFileSync(file, 'utf8').trim().split('\n')
    assert.equal(text.length, 2)
    assert.match(text[0]!, /stopping: one$/)
    assert.match(text[1]!, /stopping: two$/)
    assert.equal(statSync(file).mode & 0o777, 0o600)
  } finally {
    rmSync(dir, { recursive: true, force: true })
  }
})

test('bad level or format is refused', () => {
  assert.throws(() => createNodeLogger({ level: 'loud' as never }), /log level/)
  assert.throws(() => createNodeLogger({ format: 'xml' as never }), /log format/)
})

test('the trace ring is a subscriber: its own node only, only while on, wording as before', () => {
  const trace = new Trace()
  const detach = attachTrace(trace, NODE)
  publish(channels.requestRefused, { node: NODE, txn: 'c:1', peer: 'ann', peerId: 'p', mode: 'directed', rule: 'off' })
  assert.equal(trace.since(0).length, 0) // off
  assert.equal(channels.requestRefused.hasSubscribers, false, 'an idle trace holds no subscription')
  trace.enabled = true
  publish(channels.requestRefused, { node: NODE, txn: 'c:2', peer: 'ann', peerId: 'p', mode: 'directed', rule: 'gag ann' })
  publish(channels.requestRefused, { node: 'someone-else', txn: 'c:3', peer: 'bo', peerId: 'q', mode: 'directed', rule: 'x' })
  publish(channels.nodeStarted, { node: NODE, name: 'n', host: '127.0.0.1', port: 1 }) // not a trace kind
  publish(channels.sandboxRestart, { node: NODE, reason: 'crash' })
  const events = trace.since(0)
  assert.deepEqual(events.map(e => [e.kind, e.detail, e.txn, e.peer]), [
    ['refused', 'directed request refused: gag ann', 'c:2', 'ann'],
    ['error', 'sandbox restarted: crash', undefined, undefined]
  ])
  // The legacy API still records directly.
  trace.record('policy', 'by hand')
  assert.equal(trace.since(0).length, 3)
  assert.equal(trace.lastSeq, 3)
  trace.enabled = false
  detach()
  assert.equal(channels.requestRefused.hasSubscribers, false)
})

test('trace switching publishes trace:switched', () => {
  const trace = new Trace()
  attachTrace(trace, NODE)
  const got: unknown[] = []
  const fn = (m: unknown): void => { got.push(m) }
  channels.traceSwitched.subscribe(fn)
  trace.setEnabled(true, 'op')
  trace.clear()
  trace.enabled = false
  channels.traceSwitched.unsubscribe(fn)
  trace.detach()
  assert.deepEqual(got, [
    { node: NODE, on: true, by: 'op' },
    { node: NODE, on: true, cleared: true },
    { node: NODE, on: false }
  ])
})

test('a subscriber that throws does not break the publisher', () => {
  const { stream } = capture()
  stream.write = () => { throw new Error('boom') }
  const log = createNodeLogger({ stream })
  assert.doesNotThrow(() => publish(channels.nodeStopping, { node: NODE, reason: 'x' }))
  log.close()
})

/** The fleet config file, the reload plan and the m2sh spellings, without processes. */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { ConfigDb, ConfigError, dependencyOrder, normalizeArgs, parseConfig, planReload, serveArgs } from '@evalmesh/fleet'

const FILE = '/srv/fleet/fleet.json'

test('parseConfig: defaults, paths relative to the file, dependency order, serve arguments', () => {
  const c = parseConfig(JSON.stringify({
    defaults: { restart: { maxRestarts: 2 }, gags: ['broadcast'] },
    nodes: [
      { name: 'agent', port: 7001, after: ['area'], limits: { timeoutMs: 5000 }, quotas: { runningPerClient: 2 }, logLevel: 'debug' },
      { name: 'area', port: 7000, areas: ['nightly=areas/n', 'other'], functions: 'fns.mjs', gags: [] }
    ]
  }), FILE)
  assert.equal(c.runDir, '/srv/fleet/run')
  const [agent, area] = c.nodes
  assert.equal(agent!.stateDir, '/srv/fleet/nodes/agent')
  assert.equal(agent!.log, '/srv/fleet/run/agent.log')
  assert.equal(agent!.restart.maxRestarts, 2)
  assert.equal(agent!.restart.backoffMs, 250)
  assert.deepEqual(agent!.gags, ['broadcast'])
  assert.deepEqual(area!.gags, [])
  assert.deepEqual(area!.areas, ['nightly=/srv/fleet/areas/n', 'other=/srv/fleet/other'])
  assert.equal(area!.functions, '/srv/fleet/fns.mjs')
  assert.deepEqual(dependencyOrder(c.nodes).map(n => n.name), ['area', 'agent'])
  assert.deepEqual(serveArgs(agent!), ['serve', '--name', 'agent', '--state-dir', '/srv/fleet/nodes/agent', '--listen', '127.0.0.1', '--port', '7001',
    '--gags', 'broadcast', '--timeout', '5000', '--quota', 'runningPerClient=2', '--log-level', 'debug'])
})

test('parseConfig: mistakes name the node and the field', () => {
  const bad = (nodes: unknown[], pattern: RegExp): void => {
    assert.throws(() => parseConfig(JSON.stringify({ nodes }), FILE), (err: Error) => err instanceof ConfigError && pattern.test(err.message))
  }
  bad([{ name: 'a' }], /node a: "port" is required/)
  bad([{ name: 'a', port: 1, colour: 'red' }], /unknown field "colour"/)
  bad([{ name: 'a', port: 1 }, { name: 'a', port: 2 }], /same name/)
  bad([{ name: 'a', port: 1 }, { name: 'b', port: 1 }], /same address/)
  bad([{ name: 'a', port: 1, after: ['x'] }], /after "x": no such node/)
  bad([{ name: 'a', port: 1, after: ['b'] }, { name: 'b', port: 2, after: ['a'] }], /dependency cycle: a -> b -> a/)
  bad([{ name: 'a', port: 1, quotas: { speed: 1 } }], /quotas: unknown field "speed"/)
  bad([{ name: 'a', port: 1, trust: ['not a key'] }], /trust\[0\]/)
  bad([{ name: 'a', port: 1, logLevel: 'loud' }], /logLevel must be/)
  assert.throws(() => parseConfig('{ nodes: [] }', FILE), /not JSON/)
})

test('uuids: kept by name across loads when the file gives none; the log survives a load', () => {
  const dir = mkdtempSync(join(tmpdir(), 'em-fleet-db-'))
  try {
    const db = new ConfigDb(join(dir, 'fleet.db'), { create: true })
    const text = JSON.stringify({ nodes: [{ name: 'a', port: 7000 }, { name: 'b', port: 7001, uuid: 'fixed' }] })
    db.load(parseConfig(text, join(dir, 'f.json'), db.uuids()), 'f.json')
    const first = db.uuids()
    db.log('commit', ['commit', '-m', 'one'], 'one')
    db.load(parseConfig(text, join(dir, 'f.json'), db.uuids()), 'f.json')
    assert.deepEqual(db.uuids(), first)
    assert.equal(first.get('b'), 'fixed')
    assert.deepEqual(db.entries().map(e => e.message), ['one'])
    db.close()
  } finally {
    rmSync(dir, { recursive: true, force: true })
  }
})

test('planReload: policy live, the rest by restart', () => {
  const [n] = parseConfig(JSON.stringify({ nodes: [{ name: 'a', port: 7000, gags: ['x', 'y'] }] }), FILE).nodes
  assert.deepEqual(planReload(n!, { ...n!, gags: ['y', 'z'], hosts: ['directed'] }), { restart: [], live: ['hosts directed', 'ungag x', 'gag z'] })
  assert.deepEqual(planReload({ ...n!, hosts: ['directed'] }, n!), { restart: [], live: ['hosts default'] })
  assert.deepEqual(planReload(n!, { ...n!, port: 7001, limits: { timeoutMs: 1 } }).restart, ['port'])
  // Limits, quotas and functions are live; one taken out goes back to a default only a start computes.
  assert.deepEqual(planReload(n!, { ...n!, limits: { timeoutMs: 1, concurrency: 3 }, quotas: { runningPerClient: 2 }, functions: '/f.mjs' }), { restart: [], live: ['limits timeoutMs=1 concurrency=3', 'quota runningPerClient=2', 'functions load /f.mjs'] })
  assert.deepEqual(planReload({ ...n!, limits: { timeoutMs: 1 }, functions: '/f.mjs' }, n!), { restart: ['limits'], live: ['functions none'] })
  assert.deepEqual(planReload({ ...n!, functions: '/f.mjs' }, { ...n!, functions: '/f.mjs' }, true).live, ['functions load /f.mjs'])
  assert.deepEqual(planReload(n!, { ...n!, restart: { ...n!.restart, maxRestarts: 9 }, after: ['b'] }), { restart: [], live: [] })
})

test('normalizeArgs: m2sh\'s one-dash long options', () => {
  assert.deepEqual(normalizeArgs(['stop', '-name', 'a', '-murder', '-m', 'msg', '--grace', '5', '-every', '--', '-x']),
    ['stop', '--name', 'a', '--murder', '-m', 'msg', '--grace', '5', '--every', '--', '-x'])
})

/**
 * The status window for the whole mesh (issue 16): `monitor --mesh` with three real nodes,
 * driven through a fake TTY (keys in, screen read back), and on a real terminal under
 * tmux: the nodes pane, watching another node, a node going down and coming back, the
 * filter, the sort, a transaction's detail, history across a restart, resize.
 */
import { after, before, describe, test } from 'node:test'
import assert from 'node:assert/strict'
import { spawnSync } from 'node:child_process'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Client } from '@evalmesh/client'
import { startServer, type EvalServer } from '@evalmesh/server'
import { createMonitor, type Monitor } from '@evalmesh/monitor'
import { CLI, eventually } from './support/node.js'
import { fakeTty, key, type Tty } from './support/tty.js'

const ENTER = '\r'
const ESC = '\x1b'
const TAB = '\t'

interface Mesh { dir: string, servers: EvalServer[], hosts: string[], client: Client }

/** Three nodes sharing one state dir (so one key is operator on all), listed in its peers file. */
async function startMesh (): Promise<Mesh> {
  const dir = mkdtempSync(join(tmpdir(), 'em-mesh-'))
  const servers: EvalServer[] = []
  for (const name of ['alpha', 'beta', 'gamma']) servers.push(await startServer({ stateDir: dir, name, port: 0 }))
  const hosts = servers.map(s => `127.0.0.1:${s.address.port}`)
  writeFileSync(join(dir, 'peers'), servers.map((s, i) => `${s.name} ${hosts[i]!}\n`).join(''))
  return { dir, servers, hosts, client: new Client({ stateDir: dir }) }
}

async function stopMesh (m: Mesh): Promise<void> {
  m.client.close()
  for (const s of m.servers) await s.stop().catch(() => undefined)
  rmSync(m.dir, { recursive: true, force: true })
}

const lines = (m: Monitor): string[] => m.text()
const has = (m: Monitor, text: string): boolean => lines(m).some(l => l.includes(text))
const nodeRow = (m: Monitor, name: string): string | undefined => {
  const from = Math.floor(m.screen.width as number * 0.6)
  return lines(m).map(l => l.slice(from)).find(l => new RegExp(`[ >]${name} `).test(l))
}

async function until (m: Monitor, what: string, probe: () => boolean, ms = 20_000): Promise<void> {
  await eventually(() => probe(), `${what}\n--- screen ---\n${lines(m).join('\n')}`, ms)
}

describe('monitor --mesh on a fake terminal', () => {
  let mesh: Mesh
  let tty: Tty
  let monitor: Monitor
  const peersFile = (): Array<{ name: string, host: string, source: string }> =>
    mesh.servers.map((s, i) => ({ name: s.name, host: mesh.hosts[i]!, source: 'peers file' }))

  before(async () => {
    mesh = await startMesh()
    tty = fakeTty(140, 40)
    monitor = createMonitor({ client: mesh.client, host: mesh.hosts[0]!, input: tty.input, output: tty.output, refreshMs: 100, handleProcessEvents: false, mesh: true, nodes: peersFile })
  })
  after(async () => {
    monitor.quit()
    await stopMesh(mesh)
  })

  test('the nodes pane lists every node, up, with its lists and policy; the header counts them', async () => {
    await mesh.client.remoteEval('1 + 1', mesh.hosts[1]!)
    await until(monitor, 'three nodes up', () => ['alpha', 'beta', 'gamma'].every(n => /\sup\s/.test(nodeRow(monitor, n) ?? '')))
    await until(monitor, 'beta shows its done record', () => /done 1/.test(nodeRow(monitor, 'beta') ?? ''))
    assert.match(nodeRow(monitor, 'alpha') ?? '', />alpha /, 'the watched node is marked')
    assert.match(nodeRow(monitor, 'gamma') ?? '', / gamma .* up +run 0 queue 0 done 0/)
    assert.ok(has(monitor, 'mesh 3/3 up'), lines(monitor)[0])
    assert.ok(has(monitor, 'nodes (3, 3 up)'))
  })

  test('Enter on a node watches it: its lists replace the first node\'s', async () => {
    const marker = await mesh.client.remoteEval('"on gamma"; 7 * 6', mesh.hosts[2]!)
    assert.equal(marker, 42)
    // Focus the nodes pane: from running, Tab goes to input, done, trace, then nodes.
    for (let i = 0; i < 4; i++) await key(tty, TAB)
    await key(tty, 'G') // vi keys: the last row, gamma
    await key(tty, ENTER)
    await until(monitor, 'gamma watched', () => />gamma /.test(nodeRow(monitor, 'gamma') ?? '') && has(monitor, 'node gamma'))
    await until(monitor, 'gamma\'s done row', () => has(monitor, '"on gamma"; 7 * 6'))
    assert.ok(!has(monitor, '1 + 1'), 'beta\'s and alpha\'s rows are gone')
  })

  test('a node that goes down shows down, and up again when it is back', async () => {
    const beta = mesh.servers[1]!
    const port = beta.address.port
    await beta.stop()
    await until(monitor, 'beta down', () => /\sdown\s/.test(nodeRow(monitor, 'beta') ?? ''))
    assert.ok(has(monitor, 'mesh 2/3 up'))
    mesh.servers[1] = await startServer({ stateDir: mesh.dir, name: 'beta', port })
    await until(monitor, 'beta up again', () => /\sup\s/.test(nodeRow(monitor, 'beta') ?? ''))
    // Its history came back with it: the done record survived the restart (the journal).
    await until(monitor, 'beta\'s done count after the restart', () => /done 1/.test(nodeRow(monitor, 'beta') ?? ''))
  })

  test('/ filters the lists, s sorts them, Enter shows a transaction\'s detail with its output and result', async () => {
    const gamma = mesh.hosts[2]!
    await mesh.client.remoteEval('console.log("hi!");"apple"', gamma)
    await mesh.client.remoteEval('"banana"', gamma)
    await until(monitor, 'both rows', () => has(monitor, '"apple"') && has(monitor, '"banana"'))
    await key(tty, '/')
    for (const ch of 'apple') await key(tty, ch)
    await key(tty, ENTER)
    await until(monitor, 'only the apple row', () => has(monitor, '"apple"') && !has(monitor, '"banana"') && has(monitor, '/apple'))
    await key(tty, 's')
    await until(monitor, 'sorted by client', () => has(monitor, 'by client'))
    await key(tty, 's')
    await key(tty, 's')
    await until(monitor, 'back to time order', () => !has(monitor, 'by client') && !has(monitor, 'by took'))
    // The done pane, its first row: the detail.
    for (let i = 0; i < 2; i++) await key(tty, TAB)
    await key(tty, ENTER)
    await until(monitor, 'the detail view', () => has(monitor, 'transaction ') && has(monitor, 'hi!') && has(monitor, 'result     "apple"'))
    assert.ok(has(monitor, 'client     alpha') || has(monitor, 'client     '), 'the client is named')
    assert.ok(lines(monitor).some(l => /took \d/.test(l)), 'timings are shown')
    await key(tty, ESC)
    await until(monitor, 'the detail closed', () => !has(monitor, 'Esc or Enter closes'))
    await key(tty, '/')
    await key(tty, ENTER)
    await until(monitor, 'the filter cleared', () => has(monitor, '"banana"'))
  })
})

// ---- a real terminal: tmux ---------------------------------------------------

const hasTmux = spawnSync('tmux', ['-V']).status === 0
const tmuxSocket = `evalmesh-mesh-${process.pid}`
const tmux = (...args: string[]): string => spawnSync('tmux', ['-L', tmuxSocket, ...args], { encoding: 'utf8' }).stdout
const capture = (session: string): string => tmux('capture-pane', '-p', '-t', session)

test('evalmesh monitor --mesh on a real terminal (tmux): three nodes, Enter watches one, a node down and back, resize', { skip: hasTmux ? false : 'tmux is not installed (scripts/system-deps.sh installs it)' }, async () => {
  const mesh = await startMesh()
  const shot = (): string => capture('mesh')
  try {
    await mesh.client.remoteEval('"seen on beta"', mesh.hosts[1]!)
    const cmd = `EVALMESH_STATE_DIR=${mesh.dir} ${process.execPath} --no-node-snapshot ${CLI} monitor --mesh --host ${mesh.hosts[0]!} --refresh 200`
    spawnSync('tmux', ['-L', tmuxSocket, 'new-session', '-d', '-s', 'mesh', '-x', '140', '-y', '40', cmd])
    await eventually(() => /nodes \(3, 3 up\)/.test(shot()), `three nodes up\n${shot()}`)
    for (let i = 0; i < 4; i++) tmux('send-keys', '-t', 'mesh', 'Tab')
    tmux('send-keys', '-t', 'mesh', 'Down')
    tmux('send-keys', '-t', 'mesh', 'Enter')
    await eventually(() => shot().includes('node beta') && shot().includes('"seen on beta"'), `beta watched\n${shot()}`)
    const gamma = mesh.servers[2]!
    const port = gamma.address.port
    await gamma.stop()
    await eventually(() => /gamma\s+\S+\s+down/.test(shot()), `gamma down\n${shot()}`)
    mesh.servers[2] = await startServer({ stateDir: mesh.dir, name: 'gamma', port })
    await eventually(() => /gamma\s+\S+\s+up/.test(shot()), `gamma up again\n${shot()}`)
    tmux('resize-window', '-t', 'mesh', '-x', '100', '-y', '30')
    await eventually(() => shot().split('\n').length <= 31 && /nodes \(3, 3 up\)/.test(shot()), `after the resize\n${shot()}`)
    tmux('send-keys', '-t', 'mesh', 'q')
    await eventually(() => tmux('list-sessions').includes('mesh') === false || !shot().includes('nodes ('), 'the window to close')
  } finally {
    tmux('kill-server')
    await stopMesh(mesh)
  }
})

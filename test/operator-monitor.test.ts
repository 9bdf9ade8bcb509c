/**
 * The status window driven headless through a fake TTY (PassThrough in, Writable out)
 * against real nodes on loopback: what the screen shows after key presses and clicks.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Client } from '@evalmesh/client'
import { startServer, type EvalServer } from '@evalmesh/server'
import { createMonitor, shortTxn, type Monitor } from '@evalmesh/monitor'
import { fakeTty, key, type Tty } from './support/tty.js'

const hold = async function (this: { signal: AbortSignal }): Promise<never> {
  return await new Promise((_resolve, reject) => {
    this.signal.addEventListener('abort', () => reject(this.signal.reason), { once: true })
  })
}

let current: Monitor | undefined

async function waitFor<T> (what: string, probe: () => T | undefined | false | Promise<T | undefined | false>, ms = 20_000): Promise<T> {
  const until = Date.now() + ms
  let last: unknown
  while (Date.now() < until) {
    try {
      const v = await probe()
      if (v !== undefined && v !== false) return v
    } catch (err) { last = err }
    await new Promise(resolve => setTimeout(resolve, 40))
  }
  const screen = current === undefined ? '' : '\n--- screen ---\n' + current.text().join('\n')
  throw new Error(`timed out waiting for ${what}${last !== undefined ? ` (last error: ${(last as Error).message})` : ''}${screen}`)
}

/** The rows inside a left-hand pane (running, input, done), as the screen shows them. */
function pane (m: Monitor, name: string): string[] {
  const lines = m.text()
  const width = Math.floor(m.screen.width as number * 0.6)
  const left = lines.map(l => l.slice(0, width))
  const top = left.findIndex(l => l.includes(`─ ${name} (`))
  if (top < 0) return []
  const out: string[] = []
  for (let i = top + 1; i < left.length && !left[i]!.startsWith('└'); i++) out.push(left[i]!)
  return out
}

const screenHas = (m: Monitor, text: string): boolean => m.text().some(l => l.includes(text))
/** The header line says connected (not connecting..., not disconnected). */
const isConnected = (m: Monitor): boolean => /\sconnected\s/.test(m.text()[0] ?? '')
/** The right-hand column, where policy, peers and the trace pane are. */
const rightHas = (m: Monitor, text: string): boolean => {
  const from = Math.floor(m.screen.width as number * 0.6)
  return m.text().slice(1).some(l => l.slice(from).includes(text))
}

interface Setup { dir: string, server: EvalServer, host: string, client: Client, worker: Client, tty: Tty, monitor: Monitor }

async function setup (init: Parameters<typeof startServer>[0] = {}, size?: [number, number]): Promise<Setup> {
  const dir = mkdtempSync(join(tmpdir(), 'em-mon-'))
  const server = await startServer({ stateDir: dir, name: 'watched', port: 0, functions: { hold }, ...init })
  const host = `127.0.0.1:${server.address.port}`
  const client = new Client({ stateDir: dir })
  const worker = new Client({ stateDir: dir })
  const tty = size === undefined ? fakeTty() : fakeTty(size[0], size[1])
  const monitor = createMonitor({ client, host, input: tty.input, output: tty.output, refreshMs: 100, handleProcessEvents: false })
  current = monitor
  return { dir, server, host, client, worker, tty, monitor }
}

async function teardown (s: Setup): Promise<void> {
  s.monitor.quit()
  s.client.close()
  s.worker.close()
  await s.server.stop()
  rmSync(s.dir, { recursive: true, force: true })
}

test('running, queued and done work appear; a clicked running row + d + y aborts exactly that one', async () => {
  // restarts: as the fleet's supervisor tells a node it brought back.
  const s = await setup({ concurrency: 2, restarts: 3 })
  try {
    await waitFor('the header to say how often the node was restarted', () => /connected up \d+s, restarted 3x/.test(s.monitor.text()[0] ?? ''))
    await s.worker.remoteEval('1 + 1', s.host)
    const a = await s.worker.remoteApply('hold', [], s.host, { wait: false }) as string
    const b = await s.worker.remoteApply('hold', [], s.host, { wait: false }) as string
    const c = await s.worker.remoteApply('hold', [], s.host, { wait: false }) as string
    await waitFor('two running rows', () => pane(s.monitor, 'running').filter(l => l.includes('hold()')).length === 2)
    const running = pane(s.monitor, 'running')
    assert.ok(running.some(l => l.includes(shortTxn(a, 22)) || l.includes(shortTxn(a, 14))), running.join('\n'))
    assert.ok(screenHas(s.monitor, 'running (2)'))
    const queued = pane(s.monitor, 'input')
    assert.ok(queued.some(l => l.includes('hold()') && (l.includes(shortTxn(c, 22)) || l.includes(shortTxn(c, 14)))), queued.join('\n'))
    const done = pane(s.monitor, 'done')
    assert.ok(done.some(l => l.includes('1 + 1') && l.includes('completed')), done.join('\n'))
    assert.ok(screenHas(s.monitor, 'hosts: directed, broadcast'))
    assert.ok(screenHas(s.monitor, '(discovery not enabled)') || screenHas(s.monitor, '(no peers known)'))

    // Click the row of b (whichever line it is on), then d, then y.
    const lines = s.monitor.text()
    const tailB = shortTxn(b, 14).slice(1)
    const y = lines.findIndex(l => l.slice(0, 72).includes(tailB))
    assert.ok(y > 0)
    await key(s.tty, `\x1b[<0;5;${y + 1}M`)
    await key(s.tty, `\x1b[<0;5;${y + 1}m`)
    await waitFor('b selected', () => s.monitor.text()[y]!.includes(tailB) && (s.monitor.screen as any).focused?.selected === y - 3)
    await key(s.tty, 'd')
    await waitFor('the confirmation', () => screenHas(s.monitor, `Abort running ${b}`))
    await key(s.tty, 'y')
    const record = await waitFor('b aborted on the node', () => s.server.status('done', b)[0])
    assert.equal(record.howStopped, 'aborted')
    assert.match(record.reason ?? '', /status window/)
    assert.equal(s.server.status('running', a).length, 1, 'the other running row was left alone')
    await waitFor('the done pane to show the abort', () => pane(s.monitor, 'done').some(l => l.includes(tailB) && l.includes('aborted')))
    // c moved up from the queue into b's slot.
    await waitFor('c running', () => pane(s.monitor, 'running').some(l => l.includes(shortTxn(c, 14).slice(1))))

    // A queued row: Tab to the input pane, Delete, n keeps it, then d + y drops it.
    const d = await s.worker.remoteApply('hold', [], s.host, { wait: false }) as string
    await waitFor('d queued', () => pane(s.monitor, 'input').some(l => l.includes(shortTxn(d, 14).slice(1))))
    await key(s.tty, '\t')
    await key(s.tty, '\x1b[3~')
    await waitFor('the confirmation for d', () => screenHas(s.monitor, `Abort queued ${d}`))
    await key(s.tty, 'n')
    await waitFor('the dialog to close', () => !screenHas(s.monitor, `Abort queued ${d}`))
    assert.equal(s.server.status('input', d).length, 1)
    await key(s.tty, 'd')
    await waitFor('the confirmation for d again', () => screenHas(s.monitor, `Abort queued ${d}`))
    await key(s.tty, 'y')
    const dr = await waitFor('d dropped', () => s.server.status('done', d)[0])
    assert.equal(dr.howStopped, 'aborted')
    assert.equal(s.server.status('running', a).length, 1)
  } finally {
    await teardown(s)
  }
})

test('t toggles tracing on the node and the trace pane fills; c clears the pane', async () => {
  const s = await setup()
  try {
    await waitFor('connected', () => isConnected(s.monitor) && screenHas(s.monitor, 'trace (off)'))
    assert.equal(s.server.trace.enabled, false)
    await key(s.tty, 't')
    await waitFor('trace on at the node', () => s.server.trace.enabled)
    await waitFor('the pane label', () => screenHas(s.monitor, 'trace (on)'))
    await s.worker.remoteEval('"traced" + 1', s.host)
    await waitFor('trace events on screen', () => rightHas(s.monitor, 'finished') && rightHas(s.monitor, 'served'))
    await key(s.tty, 'c')
    await waitFor('the pane cleared', () => !rightHas(s.monitor, 'served') && !rightHas(s.monitor, 'finished'))
    await key(s.tty, 't')
    await waitFor('trace off at the node', () => !s.server.trace.enabled)
    await waitFor('the pane label off', () => screenHas(s.monitor, 'trace (off)'))
  } finally {
    await teardown(s)
  }
})

test('g edits gags (+name gags, -name ungags); ? shows help', async () => {
  const s = await setup()
  try {
    await waitFor('connected', () => screenHas(s.monitor, 'gags:  (none)'))
    await key(s.tty, 'g')
    await waitFor('the gag prompt', () => screenHas(s.monitor, '+name gags'))
    await key(s.tty, '+mallory broadcast')
    await key(s.tty, '\r')
    await waitFor('gags at the node', () => s.server.policy.state.gags.join(',') === 'mallory,broadcast')
    await waitFor('gags on screen', () => screenHas(s.monitor, 'gags:  mallory, broadcast'))
    // Keys typed into the prompt did not act as commands (q would have quit, t toggled).
    assert.equal(s.server.trace.enabled, false)
    await key(s.tty, 'g')
    await waitFor('the gag prompt again', () => screenHas(s.monitor, '+name gags'))
    await key(s.tty, '-broadcast')
    await key(s.tty, '\r')
    await waitFor('ungagged', () => s.server.policy.state.gags.join(',') === 'mallory')
    await key(s.tty, '?')
    await waitFor('help', () => screenHas(s.monitor, 'abort the selected running or queued transaction'))
    await key(s.tty, 'x')
    await waitFor('help closed', () => !screenHas(s.monitor, 'abort the selected running or queued transaction'))
  } finally {
    await teardown(s)
  }
})

test('q and C-c quit and restore the terminal', async () => {
  for (const quitKey of ['q', '\x03']) {
    const s = await setup()
    try {
      await waitFor('connected', () => isConnected(s.monitor))
      const before = s.tty.written().length
      assert.ok(s.tty.written().includes('\x1b[?1049h'), 'the window used the alternate screen: ' + JSON.stringify(s.tty.written().slice(0, 300)))
      await key(s.tty, quitKey)
      await s.monitor.closed
      const after = s.tty.written().slice(before)
      assert.ok(after.includes('\x1b[?1049l'), 'left the alternate screen')
      assert.ok(after.includes('\x1b[?25h'), 'showed the cursor again')
    } finally {
      await teardown(s)
    }
  }
})

test('survives the node restarting: shows the disconnection, reconnects, shows new work', async () => {
  const s = await setup()
  try {
    await waitFor('connected', () => isConnected(s.monitor))
    const port = s.server.address.port
    await s.server.stop()
    await waitFor('disconnected', () => screenHas(s.monitor, 'disconnected, retrying...'))
    s.server = await startServer({ stateDir: s.dir, name: 'watched', port, functions: { hold } })
    await waitFor('reconnected', () => isConnected(s.monitor))
    const txn = await s.worker.remoteApply('hold', [], s.host, { wait: false }) as string
    await waitFor('new work on the new node', () => pane(s.monitor, 'running').some(l => l.includes(shortTxn(txn, 14).slice(1))))
  } finally {
    await teardown(s)
  }
})

test('fits the terminal as it is resized', async () => {
  const s = await setup({}, [120, 36])
  try {
    await waitFor('connected', () => isConnected(s.monitor))
    for (const [cols, rows] of [[80, 24], [150, 45], [100, 30]] as const) {
      s.tty.output.columns = cols
      s.tty.output.rows = rows
      s.tty.output.emit('resize')
      await waitFor(`a ${cols}x${rows} screen`, () => {
        const lines = s.monitor.text()
        return lines.length === rows && lines.every(l => l.length === cols) &&
          lines.some(l => l.includes('─ running (')) && lines.some(l => l.includes('─ done (')) && lines.some(l => l.includes('trace ('))
      })
      // The bottom border of the done pane sits right above the footer line.
      const lines = s.monitor.text()
      assert.ok(lines[rows - 2]!.startsWith('└'), lines[rows - 2])
      assert.match(lines[rows - 1]!, /q quit|trace|gags/)
    }
  } finally {
    await teardown(s)
  }
})

test('a queued row says what it waits for; with it selected, the footer says it too', async () => {
  const s = await setup()
  try {
    const first = await s.worker.remoteEval('while (true) {}', s.host, { wait: false, session: 's1', limits: { timeoutMs: 30_000 } }) as string
    const second = await s.worker.remoteEval('1 + 2', s.host, { wait: false, session: 's1' }) as string
    // The row is cut at the pane's width; the footer has room for all of it.
    await waitFor('the queued row with its wait', () => pane(s.monitor, 'input').some(l => l.includes('1 + 2  [session s1, held by …')))
    await key(s.tty, '\t')
    await waitFor('the footer', () => {
      const last = s.monitor.text().at(-1) ?? ''
      return last.includes(shortTxn(second, 14).slice(1)) && last.includes(`waits: session s1, held by ${shortTxn(first, 14)}`) && last
    })
    await s.worker.remoteAbort(first, s.host)
    await waitFor('the second done', () => s.server.status('done', second)[0])
  } finally {
    await teardown(s)
  }
})

test('a host that names no node: the header says so, it is not asked again every tick, r retries', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'em-mon-'))
  let lookups = 0
  const client = new Client({ stateDir: dir, lookup: () => { lookups++; return undefined } })
  const tty = fakeTty()
  const monitor = createMonitor({ client, host: 'no-such-node', input: tty.input, output: tty.output, refreshMs: 50, handleProcessEvents: false })
  current = monitor
  try {
    await waitFor('the header to say it cannot watch it', () => /cannot watch it: "no-such-node" is neither host:port/.test(monitor.text()[0] ?? ''))
    assert.ok(screenHas(monitor, 'no-such-node names no node this client knows; q quits'))
    const asked = lookups
    // Ten refresh periods later, nobody asked again.
    await new Promise(resolve => setTimeout(resolve, 500))
    assert.equal(lookups, asked)
    await key(tty, 'r')
    await waitFor('r to ask once more', () => lookups > asked)
  } finally {
    monitor.quit()
    client.close()
    rmSync(dir, { recursive: true, force: true })
  }
})

import { test } from 'node:test'
import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import Database from 'better-sqlite3'
import { createMegatestService } from '../src/index.js'
import { tempDir } from './helpers.js'

const CHILD = fileURLToPath(new URL('./fixtures/durability-child.js', import.meta.url))

test('a write acknowledged to the caller survives kill -9 of the writing process', async (t) => {
  const dir = tempDir(t)
  const child = spawn(process.execPath, [CHILD, dir], { stdio: ['ignore', 'pipe', 'pipe'] })
  t.after(() => { if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL') })
  let stderr = ''
  child.stderr.on('data', (d: Buffer) => { stderr += d.toString() })
  let lastAck = -1
  let runId = -1
  const target = 200
  const exited = new Promise<NodeJS.Signals | null>(resolve => child.on('exit', (_code, signal) => resolve(signal)))
  await new Promise<void>((resolve, reject) => {
    let buf = ''
    child.stdout.on('data', (d: Buffer) => {
      buf += d.toString()
      let nl: number
      while ((nl = buf.indexOf('\n')) >= 0) {
        const line = buf.slice(0, nl)
        buf = buf.slice(nl + 1)
        const m = /^(ack|run) (\d+)$/.exec(line)
        if (m?.[1] === 'run') runId = Number(m[2])
        if (m?.[1] === 'ack') {
          lastAck = Number(m[2])
          // Kill while it is mid-stream, right after an acknowledgement.
          if (lastAck >= target && child.signalCode === null) {
            child.kill('SIGKILL')
            resolve()
          }
        }
      }
    })
    child.on('exit', () => (lastAck >= target ? resolve() : reject(new Error(`child exited early: ${stderr}`))))
  })
  assert.equal(await exited, 'SIGKILL')
  assert.ok(lastAck >= target)
  // Reopen through the service (recovers the WAL) and look for every acknowledged write.
  const svc = createMegatestService({ areas: [{ name: 'ci', dir }] })
  t.after(() => svc.close())
  const lastVar = await svc.callOrThrow('ci', 'get-var', ['last-ack']) as number
  assert.ok(lastVar >= lastAck, `last-ack var ${lastVar} is at least the last acknowledged ${lastAck}`)
  for (const i of [0, Math.floor(lastAck / 2), lastAck]) {
    assert.equal(typeof await svc.callOrThrow('ci', 'get-test-id', [runId, 't', `item-${i}`]), 'number', `item-${i}`)
  }
  const db = new Database(`${dir}/megatest.db`, { readonly: true })
  t.after(() => db.close())
  const n = db.prepare("SELECT count(*) FROM tests WHERE testname='t'").pluck().get() as number
  assert.ok(n >= lastAck + 1, `${n} rows for ${lastAck + 1} acknowledged registrations`)
  assert.equal(db.pragma('integrity_check', { simple: true }), 'ok')
})

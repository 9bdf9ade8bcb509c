/**
 * `--json` has one shape for every subcommand (issue 16, point 5): one JSON document on
 * stdout, `{ok: true, value}` or `{ok: false, error: {code, message}}`, and the exit
 * status is 0 exactly when ok is true. Every command of the CLI is run here on success
 * and on failure, against a real node, and the list is checked against the CLI's own,
 * so that a new command cannot go untested.
 */
import { after, before, test } from 'node:test'
import assert from 'node:assert/strict'
import { spawnSync } from 'node:child_process'
import { join } from 'node:path'
import { CLI, busyFor, startNode, tempDir, writeFile, type TestNode } from './support/node.js'

interface Case { args: string[], ok: boolean, code?: string }

let node: TestNode
let area: string
const DEAD = '127.0.0.1:1'

function run (args: string[]): { status: number | null, stdout: string, stderr: string } {
  const r = spawnSync(process.execPath, ['--no-node-snapshot', CLI, ...args, '--json'], {
    encoding: 'utf8', timeout: 60_000, env: { ...process.env, EVALMESH_STATE_DIR: node.stateDir }
  })
  return { status: r.status, stdout: r.stdout, stderr: r.stderr }
}

before(async () => {
  area = tempDir('evalmesh-json-area-')
  node = await startNode(['--area', `ci=${area}`, '--keys', 'TARGET'], { name: 'jsonnode' })
})
after(async () => { await node.stop() })

test('every subcommand prints {ok, value | error:{code, message}} with --json, and exits 0 exactly when ok', async () => {
  const host = ['--host', node.host]
  const done = JSON.parse(run(['eval', '"kept"', ...host]).stdout) as { txn: string }
  const waiting = JSON.parse(run(['eval', busyFor(20_000), ...host, '--no-wait', '--session', 'held']).stdout) as { value: string }
  const run1 = JSON.parse(run(['apply', 'megatest.register-run', '"ci"', '{"TARGET":"t"}', '"r1"', '"new"', '"n/a"', '"me"', '""', ...host]).stdout) as { ok: boolean }
  assert.equal(run1.ok, true)
  const fleetDir = tempDir('evalmesh-json-fleet-')
  const fleetFile = writeFile(fleetDir, 'fleet.json', JSON.stringify({ nodes: [{ name: 'f1', port: 47999 }] }))
  const db = join(fleetDir, 'fleet.db')

  const cases: Record<string, Case[]> = {
    serve: [{ args: ['serve', '--port', 'notaport'], ok: false, code: 'USAGE' }],
    eval: [{ args: ['eval', '6 * 7', ...host], ok: true }, { args: ['eval', 'throw new Error("no")', ...host], ok: false, code: 'EVAL_ERROR' }],
    apply: [{ args: ['apply', 'evalserver.describe', ...host], ok: true }, { args: ['apply', 'nosuch', ...host], ok: false, code: 'UNKNOWN_FUNCTION' }],
    abort: [{ args: ['abort', waiting.value, ...host], ok: true }, { args: ['abort', '999999'], ok: false, code: 'NO_SUCH_TXN' }],
    status: [{ args: ['status', ...host], ok: true }, { args: ['status', '--host', DEAD], ok: false, code: 'CONNECT_FAILED' }],
    result: [{ args: ['result', done.txn, ...host], ok: true }, { args: ['result', '999999'], ok: false, code: 'NO_SUCH_TXN' }],
    describe: [{ args: ['describe', ...host], ok: true }, { args: ['describe', '--host', DEAD], ok: false, code: 'CONNECT_FAILED' }],
    ping: [{ args: ['ping', ...host], ok: true }, { args: ['ping', '--host', DEAD], ok: false, code: 'CONNECT_FAILED' }],
    reset: [{ args: ['reset', ...host], ok: true }, { args: ['reset', '--host', DEAD], ok: false, code: 'CONNECT_FAILED' }],
    policy: [{ args: ['policy', ...host], ok: true }, { args: ['policy', '--host', DEAD], ok: false, code: 'CONNECT_FAILED' }],
    peers: [{ args: ['peers', ...host], ok: true }, { args: ['peers', '--host', DEAD], ok: false, code: 'CONNECT_FAILED' }],
    start: [{ args: ['start', '--port', 'notaport'], ok: false, code: 'USAGE' }],
    monitor: [{ args: ['monitor', ...host], ok: false, code: 'USAGE' }], // (stdout is not a terminal)
    trace: [{ args: ['trace', ...host], ok: true }, { args: ['trace', '--host', DEAD], ok: false, code: 'CONNECT_FAILED' }],
    ctl: [{ args: ['ctl', 'time'], ok: true }, { args: ['ctl', 'frobnicate'], ok: false, code: 'CONTROL_ERROR' }],
    repl: [{ args: ['repl', '--host', ''], ok: false, code: 'USAGE' }],
    ci: [{ args: ['ci', 'status', 'r1', ...host], ok: true }, { args: ['ci', 'run', join(area, 'no-such-job.json'), ...host], ok: false, code: 'NO_JOB_FILE' }],
    'area-server': [{ args: ['area-server', area], ok: true }, { args: ['area-server', join(area, 'typo')], ok: false, code: 'UNKNOWN_AREA' }],
    key: [{ args: ['key'], ok: true }, { args: ['key', '--state-dir', writeFile(tempDir(), 'not-a-dir', 'x')], ok: false }],
    trust: [{ args: ['trust', 'list'], ok: true }, { args: ['trust', 'add', 'not-a-key'], ok: false }],
    fleet: [{ args: ['fleet', 'load', fleetFile, '--db', db], ok: true }, { args: ['fleet', 'servers', '--db', join(fleetDir, 'none.db')], ok: false, code: 'NO_FLEET_DB' }],
    completion: [{ args: ['completion', 'bash'], ok: true }, { args: ['completion', 'fish'], ok: false, code: 'USAGE' }]
  }

  const { commands } = await import(join(CLI, '..', '..', 'dist', 'src', 'main.js')) as { commands: Array<{ name: string }> }
  assert.deepEqual(Object.keys(cases).sort(), [...commands.map(c => c.name), 'completion'].sort(), 'every command of the CLI has its cases here')

  for (const [command, list] of Object.entries(cases)) {
    for (const c of list) {
      const what = `evalmesh ${c.args.join(' ')} --json`
      const r = run(c.args)
      const lines = r.stdout.trim().split('\n')
      assert.equal(lines.length, 1, `${what}: one JSON document on stdout, got:\n${r.stdout}\nstderr: ${r.stderr}`)
      const j = JSON.parse(lines[0]!) as { ok: unknown, value?: unknown, error?: { code?: unknown, message?: unknown } }
      assert.equal(j.ok, c.ok, `${what}: ${r.stdout} ${r.stderr}`)
      assert.equal(r.status === 0, c.ok, `${what}: exit status ${String(r.status)} with ok ${String(j.ok)}`)
      if (c.ok) {
        assert.ok('value' in j, `${what}: a value`)
      } else {
        assert.equal(typeof j.error?.code, 'string', `${what}: an error code`)
        assert.equal(typeof j.error?.message, 'string', `${what}: an error message`)
        if (c.code !== undefined) assert.equal(j.error?.code, c.code, `${what}: ${String(j.error?.message)}`)
      }
      assert.ok(command === c.args[0])
    }
  }
})

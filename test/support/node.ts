/**
 * Start real evalmesh nodes as child processes (`evalmesh serve --port 0`) for
 * integration tests, and stop them by pid.
 */
import { spawn, type ChildProcess } from 'node:child_process'
import { copyFileSync, mkdtempSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { Client, type ClientInit } from '@evalmesh/client'
import { createMeshKey } from '@evalmesh/trust'

export const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..', '..')
export const CLI = join(ROOT, 'apps', 'cli', 'bin', 'evalmesh.js')

export interface TestNode {
  proc: ChildProcess
  host: string
  port: number
  stateDir: string
  name: string
  output: () => string
  stop: (signal?: NodeJS.Signals) => Promise<number | null>
}

export function tempDir (prefix = 'evalmesh-test-'): string {
  return mkdtempSync(join(tmpdir(), prefix))
}

/**
 * A new mesh key, and a maker of state dirs that hold it: nodes and clients made
 * from these dirs trust each other, each with its own node key.
 */
export function newMesh (prefix = 'evalmesh-mesh-'): () => string {
  const mesh = tempDir(prefix)
  createMeshKey(mesh)
  return () => {
    const d = tempDir()
    copyFileSync(join(mesh, 'mesh.key'), join(d, 'mesh.key'))
    return d
  }
}

/** Start `evalmesh serve` with extra args; resolves once it prints where it listens. */
/**
 * `fileSizeLimitKiB`: the node runs under that RLIMIT_FSIZE with SIGXFSZ ignored, so a write
 * past it fails with EFBIG as a full disk fails with ENOSPC (the pid is still the node's).
 */
export async function startNode (args: string[] = [], opts: { stateDir?: string, name?: string, nodeFlags?: string[], fileSizeLimitKiB?: number } = {}): Promise<TestNode> {
  const stateDir = opts.stateDir ?? tempDir()
  const name = opts.name ?? 'testnode'
  const argv = [...(opts.nodeFlags ?? ['--no-node-snapshot']), CLI, 'serve', '--port', '0', '--state-dir', stateDir, '--name', name, ...args]
  const proc = opts.fileSizeLimitKiB === undefined
    ? spawn(process.execPath, argv, { stdio: ['ignore', 'pipe', 'pipe'] })
    : spawn('bash', ['-c', `trap '' XFSZ; ulimit -f ${opts.fileSizeLimitKiB}; exec "$0" "$@"`, process.execPath, ...argv], { stdio: ['ignore', 'pipe', 'pipe'] })
  let out = ''
  proc.stdout!.on('data', (c: Buffer) => { out += c.toString() })
  proc.stderr!.on('data', (c: Buffer) => { out += c.toString() })
  const exited = new Promise<number | null>(resolve => proc.once('exit', (code) => resolve(code)))
  const port = await new Promise<number>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`node did not start within 20 s:\n${out}`)), 20_000)
    const check = (): void => {
      const m = /listening on [^\s]+:(\d+)/.exec(out)
      if (m !== null) { clearTimeout(timer); resolve(Number(m[1])) }
    }
    proc.stdout!.on('data', check)
    proc.once('exit', (code) => { clearTimeout(timer); reject(new Error(`node exited with ${code}:\n${out}`)) })
  })
  return {
    proc, port, stateDir, name, host: `127.0.0.1:${port}`,
    output: () => out,
    stop: async (signal = 'SIGTERM') => {
      if (proc.exitCode === null && proc.signalCode === null) proc.kill(signal)
      const timer = setTimeout(() => proc.kill('SIGKILL'), 10_000)
      const code = await exited
      clearTimeout(timer)
      return code
    }
  }
}

export interface CliRun { code: number | null, stdout: string, stderr: string }

/**
 * The evalmesh command exactly as a user runs it, in a child process, with the state dir
 * given through $EVALMESH_STATE_DIR (and $EVALMESH_HOST unset unless `env` sets it: the
 * developer's own must not leak into a test). Rejects if it does not finish in time.
 */
export async function runCli (args: string[], opts: { stateDir: string, env?: Record<string, string>, input?: string, timeoutMs?: number }): Promise<CliRun> {
  return await new Promise((resolve, reject) => {
    const env: NodeJS.ProcessEnv = { ...process.env, EVALMESH_STATE_DIR: opts.stateDir }
    delete env.EVALMESH_HOST
    const child = spawn(process.execPath, ['--no-node-snapshot', CLI, ...args], { stdio: ['pipe', 'pipe', 'pipe'], env: { ...env, ...opts.env } })
    let stdout = ''
    let stderr = ''
    child.stdout.on('data', d => { stdout += d })
    child.stderr.on('data', d => { stderr += d })
    const timer = setTimeout(() => { child.kill('SIGKILL'); reject(new Error(`evalmesh ${args.join(' ')} did not finish\n${stdout}\n${stderr}`)) }, opts.timeoutMs ?? 60_000)
    child.on('close', code => { clearTimeout(timer); resolve({ code, stdout, stderr }) })
    child.stdin.end(opts.input ?? '')
  })
}

/** A client holding the node's own key (the zero-config local case). */
export function localClient (node: TestNode, init: ClientInit = {}): Client {
  return new Client({ stateDir: node.stateDir, ...init })
}

export function writeFile (dir: string, name: string, text: string): string {
  const p = join(dir, name)
  writeFileSync(p, text)
  return p
}

/** Poll `fn` until it returns a truthy value or the deadline passes (no timing assertions). */
export async function eventually<T> (fn: () => Promise<T | undefined | false> | T | undefined | false, what: string, timeoutMs = 15_000): Promise<T> {
  const deadline = Date.now() + timeoutMs
  let last: unknown
  while (Date.now() < deadline) {
    try {
      const v = await fn()
      if (v) return v as T
    } catch (err) { last = err }
    await new Promise(resolve => setTimeout(resolve, 50))
  }
  throw new Error(`timed out waiting for ${what}${last !== undefined ? `: ${String(last)}` : ''}`)
}

/** A form that keeps the evaluator busy for `ms` milliseconds. */
export const busyFor = (ms: number): string => `{ const until = Date.now() + ${ms}; while (Date.now() < until) {} ; 'slept ${ms}' }`

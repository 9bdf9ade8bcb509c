import { mkdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import type { NodeSpec } from './config.js'

/**
 * The run directory: for each node `<name>.pid` (the pid, as text), `<name>.json` (its
 * state: when it started, with which spec, restarts, failed and why) and `<name>.held`
 * (present while an operator has stopped it: the supervisor leaves it down).
 */

export type NodeStatus = 'running' | 'stopped' | 'starting' | 'backoff' | 'failed' | 'waiting'

export interface NodeState {
  name: string
  uuid: string
  status: NodeStatus
  pid: number | null
  /** ms since the epoch, when the running process started. */
  startedAt: number | null
  /** Restarts by the supervisor since it started supervising. */
  restarts: number
  /** Why it failed, stopped or waits. */
  reason: string | null
  /** How its last process ended: "exit 1", "signal SIGKILL". */
  lastExit: string | null
  /** The pid of the supervisor watching it, if one is. */
  supervisor: number | null
  /** The spec it runs with (what reload compares the database with). */
  spec: NodeSpec | null
  /** sha256 of its functions module as it loaded it (reload loads an edited one again). */
  functionsDigest?: string | null
}

export class RunDir {
  constructor (readonly dir: string) {
    mkdirSync(dir, { recursive: true, mode: 0o700 })
  }

  pidFile (name: string): string { return join(this.dir, `${name}.pid`) }
  stateFile (name: string): string { return join(this.dir, `${name}.json`) }
  heldFile (name: string): string { return join(this.dir, `${name}.held`) }

  readPid (name: string): number | undefined {
    try {
      const n = Number(readFileSync(this.pidFile(name), 'utf8').trim())
      return Number.isSafeInteger(n) && n > 0 ? n : undefined
    } catch {
      return undefined
    }
  }

  writePid (name: string, pid: number): void {
    atomicWrite(this.pidFile(name), `${pid}\n`)
  }

  clearPid (name: string): void {
    rmSync(this.pidFile(name), { force: true })
  }

  readState (name: string): NodeState | undefined {
    try {
      return JSON.parse(readFileSync(this.stateFile(name), 'utf8')) as NodeState
    } catch {
      return undefined
    }
  }

  /** Merge `change` into the node's state file (written whole, by rename). */
  updateState (spec: Pick<NodeSpec, 'name' | 'uuid'>, change: Partial<NodeState>): NodeState {
    const old = this.readState(spec.name)
    const state: NodeState = {
      name: spec.name,
      uuid: spec.uuid,
      status: 'stopped',
      pid: null,
      startedAt: null,
      restarts: 0,
      reason: null,
      lastExit: null,
      supervisor: null,
      spec: null,
      ...old,
      ...change
    }
    atomicWrite(this.stateFile(spec.name), JSON.stringify(state, null, 2) + '\n')
    return state
  }

  held (name: string): string | undefined {
    try { return readFileSync(this.heldFile(name), 'utf8').trim() } catch { return undefined }
  }

  hold (name: string, why: string): void { atomicWrite(this.heldFile(name), `${why}\n`) }
  release (name: string): void { rmSync(this.heldFile(name), { force: true }) }
}

function atomicWrite (path: string, text: string): void {
  const tmp = `${path}.${process.pid}.tmp`
  writeFileSync(tmp, text, { mode: 0o600 })
  renameSync(tmp, path)
}

/** What a pid names: a live node of this fleet, nothing, or someone else's process. */
export type PidCheck = { live: true } | { live: false, why: string }

/**
 * Whether `pid` is the node that runs with `stateDir`: alive (not a zombie), ours to
 * signal, and (where /proc says) an `evalmesh serve` of that state dir.
 */
export function checkPid (pid: number, stateDir: string): PidCheck {
  try {
    process.kill(pid, 0)
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code
    if (code === 'EPERM') return { live: false, why: `pid ${pid} belongs to another user` }
    return { live: false, why: `pid ${pid} is gone` }
  }
  let stat: string
  try {
    stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
  } catch {
    return { live: true } // no /proc: alive and ours to signal is all we can know
  }
  const state = stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3)
  if (state === 'Z' || state === 'X') return { live: false, why: `pid ${pid} has exited` }
  let argv: string[]
  try {
    argv = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0')
  } catch {
    return { live: false, why: `pid ${pid} is gone` }
  }
  const at = argv.indexOf('--state-dir')
  if (!argv.includes('serve') || at < 0 || argv[at + 1] !== stateDir) {
    return { live: false, why: `pid ${pid} is another program (${argv.filter(a => a !== '').join(' ').slice(0, 80)})` }
  }
  return { live: true }
}

/** Whether a process exists at all (a zombie counts as gone). */
export function processGone (pid: number): boolean {
  try {
    process.kill(pid, 0)
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'ESRCH'
  }
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
    const state = stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3)
    return state === 'Z' || state === 'X'
  } catch {
    return false
  }
}

import type { ChildProcess } from 'node:child_process'
import { readFileSync, rmSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { dependencyOrder, type NodeSpec } from './config.js'
import type { ConfigDb } from './config-db.js'
import { addressOf, livePid, startNode, stopPid } from './nodes.js'
import { processGone, RunDir } from './run-dir.js'

/** One supervised node, as the supervisor sees it. */
interface Entry {
  spec: NodeSpec
  pid?: number
  /** Our own child (we see its exit code); undefined for a node we adopted from its pid file. */
  child?: ChildProcess
  /** Start times of the restarts within the restart window. */
  recent: number[]
  restarts: number
  nextStartAt: number
  failed?: string
  lastExit?: string
}

export interface SupervisorOptions {
  /** How often it looks at every node (default 200 ms). */
  tickMs?: number
  /** Where it says what it does (default stderr). */
  say?: (line: string) => void
  /** How long a node has to start serving (default 30 s). */
  startTimeoutMs?: number
}

/**
 * procer's job for a fleet: keep every node of the config database running. A node that
 * exits or is killed is started again after an exponential back-off; more than
 * `restart.maxRestarts` restarts within `restart.windowSeconds` and it is marked failed
 * with the reason. Nodes start in dependency order (`after`), a node only once what it
 * needs serves, and stop in reverse order. A node an operator stopped (`fleet stop`,
 * which leaves a `.held` file) stays down; one started by hand is adopted.
 */
export class Supervisor {
  readonly #db: ConfigDb
  readonly #run: RunDir
  readonly #entries = new Map<string, Entry>()
  readonly #tickMs: number
  readonly #startTimeoutMs: number
  readonly #say: (line: string) => void
  #stopping = false
  #stopped: Promise<void> | undefined
  #wake: (() => void) | undefined

  constructor (db: ConfigDb, options: SupervisorOptions = {}) {
    this.#db = db
    this.#run = new RunDir(db.runDir)
    this.#tickMs = options.tickMs ?? 200
    this.#startTimeoutMs = options.startTimeoutMs ?? 30_000
    this.#say = options.say ?? ((line) => process.stderr.write(`${new Date().toISOString()} fleet supervise: ${line}\n`))
  }

  get lockFile (): string { return join(this.#run.dir, 'supervise.pid') }

  /** Supervise until stop(); refuses when another supervisor watches this run directory. */
  async run (): Promise<void> {
    this.#lock()
    try {
      for (const spec of this.#specs()) this.#run.release(spec.name)
      while (!this.#stopping) {
        await this.#tick()
        if (this.#stopping) break
        await new Promise<void>(resolve => {
          const t = setTimeout(resolve, this.#tickMs)
          this.#wake = () => { clearTimeout(t); resolve() }
        })
      }
      await this.#stopAll()
    } finally {
      try { if (readFileSync(this.lockFile, 'utf8').trim() === String(process.pid)) rmSync(this.lockFile, { force: true }) } catch { }
    }
  }

  /** Stop supervising: every node is stopped, in reverse dependency order; run() then resolves. */
  stop (): void {
    this.#stopping = true
    this.#wake?.()
  }

  #lock (): void {
    try {
      const pid = Number(readFileSync(this.lockFile, 'utf8').trim())
      if (Number.isSafeInteger(pid) && pid > 0 && pid !== process.pid && !processGone(pid)) {
        let cmd = ''
        try { cmd = readFileSync(`/proc/${pid}/cmdline`, 'utf8') } catch { cmd = 'supervise' }
        if (cmd.includes('supervise')) throw new Error(`another supervisor (pid ${pid}) watches ${this.#run.dir}`)
      }
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err
    }
    writeFileSync(this.lockFile, `${process.pid}\n`, { mode: 0o600 })
  }

  #specs (): NodeSpec[] {
    return dependencyOrder(this.#db.servers())
  }

  #entry (spec: NodeSpec): Entry {
    let e = this.#entries.get(spec.name)
    if (e === undefined) {
      e = { spec, recent: [], restarts: 0, nextStartAt: 0 }
      this.#entries.set(spec.name, e)
    }
    e.spec = spec
    return e
  }

  #alive (e: Entry): boolean {
    if (e.pid === undefined) return false
    if (e.child !== undefined) return e.child.exitCode === null && e.child.signalCode === null && !processGone(e.pid)
    return !processGone(e.pid)
  }

  async #tick (): Promise<void> {
    for (const spec of this.#specs()) {
      if (this.#stopping) return
      await this.#reconcile(this.#entry(spec))
    }
  }

  async #reconcile (e: Entry): Promise<void> {
    const { spec } = e
    const run = this.#run
    const now = Date.now()
    if (e.pid !== undefined && !this.#alive(e)) {
      // A child seen gone (a zombie, or reaped) may not have told its ChildProcess how yet:
      // wait briefly for that, so that the log says "signal SIGKILL" and not "exit null".
      if (e.child !== undefined && e.child.exitCode === null && e.child.signalCode === null) await exitOf(e.child, 1000)
      const exit = e.child === undefined ? 'exited' : e.child.signalCode !== null ? `signal ${e.child.signalCode}` : `exit ${e.child.exitCode}`
      if (run.readPid(spec.name) === e.pid) run.clearPid(spec.name)
      e.pid = undefined
      e.child = undefined
      e.lastExit = exit
      const held = run.held(spec.name)
      if (held !== undefined) {
        this.#say(`${spec.name} stopped (${exit}; ${held})`)
        run.updateState(spec, { status: 'stopped', pid: null, startedAt: null, lastExit: exit })
      } else {
        this.#exited(e, `${exit}`, now)
      }
    }
    if (e.pid !== undefined) return
    // Started by hand (fleet start, fleet reload) or by a supervisor before us: watch it.
    const adopted = livePid(run, spec, msg => this.#say(msg))
    if (adopted !== undefined) {
      e.pid = adopted
      if (e.failed !== undefined) { e.failed = undefined; e.recent = [] }
      run.updateState(spec, { status: 'running', pid: adopted, supervisor: process.pid, restarts: e.restarts, reason: null })
      this.#say(`${spec.name} running (pid ${adopted}), watching it`)
      return
    }
    if (run.held(spec.name) !== undefined || e.failed !== undefined) return
    const waiting = spec.after.filter(d => !this.#ready(d))
    if (waiting.length > 0) {
      run.updateState(spec, { status: 'waiting', pid: null, reason: `waiting for ${waiting.join(', ')}`, supervisor: process.pid })
      return
    }
    if (now < e.nextStartAt) return
    const restart = e.lastExit !== undefined
    try {
      const { pid, child } = await startNode(spec, run, { supervisor: process.pid, timeoutMs: this.#startTimeoutMs, fleet: this.#db.servers(), restarts: restart ? e.restarts + 1 : e.restarts })
      e.pid = pid
      e.child = child
      if (restart) e.restarts++
      run.updateState(spec, { status: 'running', restarts: e.restarts, lastExit: e.lastExit ?? null })
      this.#say(`${spec.name} ${restart ? `restarted (restart ${e.restarts})` : 'started'}: pid ${pid} on ${addressOf(spec)}`)
    } catch (err) {
      this.#exited(e, `failed to start: ${(err as Error).message.split('\n')[0]!}`, Date.now())
    }
  }

  /** A node went down without being asked: back off, or give up when the budget is spent. */
  #exited (e: Entry, how: string, now: number): void {
    const { spec } = e
    const rule = spec.restart
    e.recent = e.recent.filter(t => now - t < rule.windowSeconds * 1000)
    e.lastExit = how
    if (e.recent.length >= rule.maxRestarts) {
      e.failed = `restart budget exhausted: ${e.recent.length} restart(s) within ${rule.windowSeconds} s (restart.maxRestarts ${rule.maxRestarts}); last: ${how}`
      this.#say(`${spec.name} FAILED: ${e.failed}`)
      this.#run.updateState(spec, { status: 'failed', pid: null, startedAt: null, reason: e.failed, lastExit: how, restarts: e.restarts })
      try { this.#db.log('supervise', [spec.name], `${spec.name} failed: ${e.failed}`) } catch { }
      return
    }
    e.recent.push(now)
    const delay = Math.min(rule.maxBackoffMs, rule.backoffMs * 2 ** (e.recent.length - 1))
    e.nextStartAt = now + delay
    this.#say(`${spec.name} went down (${how}); restarting in ${delay} ms (${e.recent.length} of ${rule.maxRestarts} within ${rule.windowSeconds} s)`)
    this.#run.updateState(spec, { status: 'backoff', pid: null, startedAt: null, reason: `restarting in ${delay} ms after ${how}`, lastExit: how, restarts: e.restarts })
  }

  #ready (name: string): boolean {
    const e = this.#entries.get(name)
    return e !== undefined && this.#alive(e)
  }

  async #stopAll (): Promise<void> {
    this.#stopped ??= (async () => {
      const order = this.#specs().reverse()
      for (const spec of order) {
        const e = this.#entries.get(spec.name)
        if (e?.pid === undefined || !this.#alive(e)) continue
        this.#say(`stopping ${spec.name} (pid ${e.pid})`)
        const how = await stopPid(spec, e.pid)
        if (this.#run.readPid(spec.name) === e.pid) this.#run.clearPid(spec.name)
        this.#run.updateState(spec, { status: 'stopped', pid: null, startedAt: null, reason: 'the supervisor stopped', lastExit: how, supervisor: null })
        this.#say(`${spec.name} ${how}`)
        e.pid = undefined
      }
    })()
    await this.#stopped
  }
}

/** Resolves when `child` has emitted 'exit', or after `ms` if it does not. */
async function exitOf (child: ChildProcess, ms: number): Promise<void> {
  await new Promise<void>(resolve => {
    const timer = setTimeout(resolve, ms)
    child.once('exit', () => { clearTimeout(timer); resolve() })
  })
}

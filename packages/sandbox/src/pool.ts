import { EventEmitter } from 'node:events'
import { EvalMeshError } from '@evalmesh/protocol'
import { wireError } from './errors.js'
import { ChildSandbox } from './sandbox.js'
import { InlineEvaluator } from './inline.js'
import type { Sandbox, SandboxInit, SandboxJob, SandboxResult, SandboxStats } from './index.js'
import { ownerOf } from './session-key.js'

const DEFAULT_PROCESSES = 4
/** Processes beyond `processes` kept for clients whose forms crashed theirs. */
const MAX_DEDICATED = 4
const DEFAULT_MAX_MEMORY_MB = 2048

interface Cell {
  sandbox: ChildSandbox
  clients: Set<string>
  /** Serves one client that crashed a shared process: nobody else is put here. */
  dedicated: boolean
}

/**
 * Several sandbox processes, each serving a share of the clients. A client's
 * sessions all live in one process, so what its forms do to that process (a
 * catastrophic out-of-memory that V8 cannot survive, a wedged isolate) costs
 * only the clients it shares it with; new clients get a process of their own
 * while there are fewer than `processes`. A client whose form brings its process
 * down is moved to a dedicated process, so it cannot do so to others again.
 */
export class SandboxPool extends EventEmitter implements Sandbox {
  readonly #init: SandboxInit
  readonly #processes: number
  readonly #maxMemoryBytes: number
  readonly #cells: Cell[] = []
  readonly #byClient = new Map<string, Cell>()
  readonly #byTxn = new Map<string, Cell>()
  /** A started process no client has yet, so a new client does not wait for a fork. */
  #spare: Cell | undefined
  /** Pure forms (literals and operators) in this process; see inline.ts. */
  readonly #inline = new InlineEvaluator()
  #started = false
  #stopping = false

  constructor (init: SandboxInit) {
    super()
    this.#init = init
    this.#processes = Math.max(1, init.processes ?? DEFAULT_PROCESSES)
    this.#maxMemoryBytes = (init.maxMemoryMb ?? DEFAULT_MAX_MEMORY_MB) * 1024 * 1024
    // Validates limits and grants now, as the constructor of a single process would.
    this.#spare = this.#newCell(false)
  }

  get stats (): SandboxStats {
    let restarts = 0; let sessions = 0; let running = 0; let batched = 0; let heapBytes = 0
    for (const c of this.#cells) {
      const s = c.sandbox.stats
      restarts += s.restarts; sessions += s.sessions; running += s.running; batched += s.batched; heapBytes += s.heapBytes
    }
    return {
      restarts, sessions, running, batched, heapBytes, inline: this.#inline.runs,
      pid: this.#cells[0]?.sandbox.stats.pid,
      processes: this.#cells.map(c => {
        const s = c.sandbox.stats
        return { pid: s.pid, clients: c.clients.size, dedicated: c.dedicated, sessions: s.sessions, running: s.running, heapBytes: s.heapBytes }
      })
    }
  }

  async start (): Promise<void> {
    if (this.#stopping) throw new EvalMeshError('SHUTTING_DOWN', 'sandbox has been stopped')
    this.#started = true
    await this.#spare!.sandbox.start()
  }

  run (job: SandboxJob): Promise<SandboxResult> {
    if (!this.#started || this.#stopping || typeof job?.session !== 'string' || typeof job.form !== 'string') return this.#cells[0]!.sandbox.run(job)
    // The client gets its process on its first run, even a pure one: describe shows whom each serves.
    const cell = this.#cellFor(ownerOf(job.session))
    if (job.transient !== true && !cell.sandbox.hasSession(job.session) && this.#heapBytes() >= this.#maxMemoryBytes) {
      const mib = Math.round(this.#maxMemoryBytes / 1048576)
      return Promise.resolve({
        ok: false,
        error: { ...wireError('QUOTA', `node sandbox memory quota: sessions hold ${Math.round(this.#heapBytes() / 1048576)} MiB of the node's ${mib} MiB; no new session can start until some are reset or expire`, 'EvalMeshError'), data: { quota: 'sandboxMemoryMb' } },
        output: '', outputTruncated: false, seconds: 0
      })
    }
    if (this.#inline.available && !cell.sandbox.holdsState(job.session)) {
      // A session with nothing in its sandbox process: a pure form's outcome is the same here, sooner.
      const done = this.#inline.run(job)
      if (done !== undefined) return Promise.resolve(done)
    }
    this.#byTxn.set(job.txn, cell)
    const running = cell.sandbox.run(job)
    void running.then(() => { if (this.#byTxn.get(job.txn) === cell) this.#byTxn.delete(job.txn) })
    return running
  }

  abort (txn: string): boolean {
    return this.#byTxn.get(txn)?.sandbox.abort(txn) ?? false
  }

  async resetSession (session: string): Promise<void> {
    const cell = this.#byClient.get(ownerOf(session))
    if (cell !== undefined) await cell.sandbox.resetSession(session)
  }

  setGrants (grants: string[]): void {
    for (const c of this.#cells) c.sandbox.setGrants(grants)
    this.#init.grants = [...grants]
  }

  async stop (): Promise<void> {
    this.#stopping = true
    this.#inline.dispose()
    await Promise.all(this.#cells.map(async c => await c.sandbox.stop()))
  }

  #heapBytes (): number {
    let n = 0
    for (const c of this.#cells) n += c.sandbox.stats.heapBytes
    return n
  }

  /** The process serving this client, chosen on its first run. */
  #cellFor (client: string): Cell {
    let cell = this.#byClient.get(client)
    if (cell !== undefined) return cell
    if (this.#spare !== undefined) {
      cell = this.#spare
      this.#spare = undefined
    } else {
      // All shared processes are taken: join the one serving the fewest clients.
      cell = this.#cells.filter(c => !c.dedicated).reduce((a, b) => (b.clients.size < a.clients.size ? b : a))
    }
    cell.clients.add(client)
    this.#byClient.set(client, cell)
    if (this.#spare === undefined && this.#cells.filter(c => !c.dedicated).length < this.#processes) this.#warmSpare()
    return cell
  }

  #warmSpare (): void {
    const cell = this.#newCell(false)
    this.#spare = cell
    cell.sandbox.start().catch(() => { /* reported through 'restart' */ })
  }

  #newCell (dedicated: boolean): Cell {
    const sandbox = new ChildSandbox(this.#init)
    const cell: Cell = { sandbox, clients: new Set(), dedicated }
    sandbox.on('restart', (info: { reason: string, culpritSession?: string }) => {
      this.emit('restart', info)
      if (info.culpritSession !== undefined) this.#quarantine(ownerOf(info.culpritSession), cell)
    })
    this.#cells.push(cell)
    return cell
  }

  /** Move a client that crashed a shared process to one of its own. */
  #quarantine (client: string, from: Cell): void {
    if (this.#stopping || from.dedicated || from.clients.size <= 1) {
      if (from.clients.size <= 1) from.dedicated = true // alone already: keep it there, take no one else
      return
    }
    from.clients.delete(client)
    const dedicatedCount = this.#cells.filter(c => c.dedicated).length
    let cell: Cell
    if (dedicatedCount < MAX_DEDICATED) {
      cell = this.#newCell(true)
      cell.sandbox.start().catch(() => { /* reported through 'restart' */ })
    } else {
      // Past the cap, quarantined clients share the quarantine processes.
      cell = this.#cells.filter(c => c.dedicated).reduce((a, b) => (b.clients.size < a.clients.size ? b : a))
    }
    cell.clients.add(client)
    this.#byClient.set(client, cell)
  }
}

import { closeSync, mkdirSync, openSync, readFileSync, rmSync, statSync, writeFileSync, appendFileSync } from 'node:fs'
import { join } from 'node:path'

/** Where a transaction this user started went. */
export interface BookEntry {
  txn: string
  /** host:port of the node that holds it (for a broadcast, the node that claimed it). */
  host: string
  /** When the client learned it (ms since the epoch). */
  at: number
}

/** The sequence counter and the record of where each transaction went, in the state dir. */
export const SEQ_FILE = 'client-seq'
export const BOOK_FILE = 'client-txns'
const KEEP = 1000

/**
 * A person's handle on their transactions across processes: sequence numbers come from a
 * counter persisted in the state dir (so `…:17` is this user's 17th transaction, never
 * another `…:1`), and every transaction is recorded with the node that holds it, so
 * `abort 17` and `result 17` find it without --host.
 */
export class TxnBook {
  readonly #dir: string

  constructor (stateDir: string) {
    this.#dir = stateDir
  }

  /** The next sequence number, unique among the processes sharing this state dir. */
  nextSeq (): number {
    return this.#locked(() => {
      const file = join(this.#dir, SEQ_FILE)
      let n = 0
      try { n = Number.parseInt(readFileSync(file, 'utf8'), 10) } catch { /* first use */ }
      if (!Number.isSafeInteger(n) || n < 0) n = 0
      writeFileSync(file, `${n + 1}\n`, { mode: 0o600 })
      return n + 1
    })
  }

  /** Remember that `txn` is held by the node at `host`. */
  record (txn: string, host: string): void {
    try {
      const file = join(this.#dir, BOOK_FILE)
      appendFileSync(file, JSON.stringify({ txn, host, at: Date.now() }) + '\n', { mode: 0o600 })
      // Bounded: past twice the kept count, keep the newest KEEP.
      if (statSync(file).size > KEEP * 2 * 200) {
        this.#locked(() => { writeFileSync(file, this.#read().slice(-KEEP).map(e => JSON.stringify(e) + '\n').join(''), { mode: 0o600 }) })
      }
    } catch { /* a read-only state dir: the transaction still runs; only the lookup is lost */ }
  }

  /** The newest entry for a full txn id, or for a bare sequence number (`17`). */
  find (id: string | number): BookEntry | undefined {
    const text = String(id)
    const bare = /^\d+$/.test(text)
    const entries = this.#read()
    for (let i = entries.length - 1; i >= 0; i--) {
      const e = entries[i]!
      if (bare ? e.txn.endsWith(`:${text}`) : e.txn === text) return e
    }
    return undefined
  }

  #read (): BookEntry[] {
    let text: string
    try { text = readFileSync(join(this.#dir, BOOK_FILE), 'utf8') } catch { return [] }
    const out: BookEntry[] = []
    for (const line of text.split('\n')) {
      if (line === '') continue
      try {
        const e = JSON.parse(line) as BookEntry
        if (typeof e.txn === 'string' && typeof e.host === 'string') out.push(e)
      } catch { /* a torn line from a crash: skip it */ }
    }
    return out
  }

  /** Run `fn` holding `<dir>/client-seq.lock` (waits at most ~2 s; a lock older than 5 s is stale). */
  #locked<T> (fn: () => T): T {
    mkdirSync(this.#dir, { recursive: true, mode: 0o700 })
    const lock = join(this.#dir, `${SEQ_FILE}.lock`)
    const sleeper = new Int32Array(new SharedArrayBuffer(4))
    for (let attempt = 0; attempt < 400; attempt++) {
      let fd: number
      try {
        fd = openSync(lock, 'wx', 0o600)
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err
        try { if (Date.now() - statSync(lock).mtimeMs > 5000) rmSync(lock, { force: true }) } catch { /* gone meanwhile */ }
        Atomics.wait(sleeper, 0, 0, 5)
        continue
      }
      try {
        return fn()
      } finally {
        closeSync(fd)
        rmSync(lock, { force: true })
      }
    }
    throw new Error(`${lock} stayed locked for 2 s: remove it if no evalmesh command is running`)
  }
}

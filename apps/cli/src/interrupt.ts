import type { Client } from '@evalmesh/client'
import { printable } from '@evalmesh/protocol'
import { CommandError } from './args.js'

/** The exit status of a command stopped by Ctrl-C, as shells report SIGINT (128 + 2). */
export const INTERRUPTED_EXIT = 130

const REASON = 'interrupted at the evalmesh command line (Ctrl-C)'

/**
 * Ctrl-C while a command waits on remote work: the first aborts the transactions it waits
 * for (as the REPL does), says so with their ids, and ends the command with exit 130; a
 * second leaves at once without waiting for the abort. A transaction is tracked from the
 * moment its id and node are known; a Ctrl-C before that aborts it as soon as it is.
 */
export class InterruptGuard {
  readonly #client: Pick<Client, 'remoteAbort'>
  readonly #say: (line: string) => void
  readonly #tracked = new Map<string, string>()
  #count = 0
  #fail!: (err: CommandError) => void
  readonly #interrupted: Promise<never>
  readonly #onSigint = (): void => { this.#interrupt() }
  readonly #tracks: boolean

  /** With `tracks: false` (work on many nodes, e.g. eval --all) the first Ctrl-C leaves at once. */
  constructor (client: Pick<Client, 'remoteAbort'>, say: (line: string) => void = line => console.error(line), options: { tracks?: boolean } = {}) {
    this.#client = client
    this.#say = say
    this.#tracks = options.tracks !== false
    this.#interrupted = new Promise<never>((_resolve, reject) => { this.#fail = reject })
    this.#interrupted.catch(() => {})
    process.on('SIGINT', this.#onSigint)
  }

  /** Wait for `work`, or end with an INTERRUPTED error when Ctrl-C is pressed. */
  async run<T> (work: Promise<T>): Promise<T> {
    work.catch(() => {}) // interrupted first: nobody takes its rejection
    try {
      return await Promise.race([work, this.#interrupted])
    } catch (err) {
      // The work failing because we aborted it (ABORTED) is the interruption, reported as one.
      if (this.#count > 0) await this.#interrupted
      throw err
    }
  }

  /** The command now waits for `txn` on `host`: a Ctrl-C aborts it. */
  track (txn: string, host: string): void {
    this.#tracked.set(txn, host)
    if (this.#count === 1) void this.#abort([[txn, host]])
  }

  done (txn: string): void { this.#tracked.delete(txn) }

  dispose (): void { process.off('SIGINT', this.#onSigint) }

  #interrupt (): void {
    this.#count++
    const ids = [...this.#tracked].map(([txn, host]) => `${printable(txn, 120)} on ${printable(host, 200)}`).join(', ')
    if (!this.#tracks) {
      this.#say('(interrupted: the nodes that took it may still run it; `evalmesh status --host H` shows it there)')
      this.#fail(this.#error('interrupted', false))
      return
    }
    if (this.#count >= 2) {
      this.#say(ids === '' ? '(interrupted again: leaving)' : `(interrupted again: leaving without waiting; ${ids} may still run)`)
      this.#fail(this.#error('left without waiting for the abort', false))
      return
    }
    if (this.#tracked.size === 0) {
      // Not acknowledged yet: aborted the moment its id is known (track), unless a second Ctrl-C leaves first.
      this.#say('(interrupted: aborting the request once the node acknowledges it; Ctrl-C again leaves it)')
      return
    }
    void this.#abort([...this.#tracked])
  }

  async #abort (entries: Array<[string, string]>): Promise<void> {
    this.#say(`(interrupted: aborting ${entries.map(([txn, host]) => `${printable(txn, 120)} on ${printable(host, 200)}`).join(', ')}; Ctrl-C again leaves without waiting)`)
    const results = await Promise.all(entries.map(async ([txn, host]) => {
      try {
        const r = await this.#client.remoteAbort(txn, host, { reason: REASON })
        return r.aborted ? `aborted ${printable(txn, 120)}` : `${printable(txn, 120)} not aborted (${printable(r.reason, 300)})`
      } catch (err) {
        return `abort of ${printable(txn, 120)} failed: ${printable((err as Error).message, 500)}`
      }
    }))
    for (const line of results) this.#say(`(${line})`)
    this.#fail(this.#error('interrupted; the remote work was aborted', true))
  }

  #error (message: string, aborted: boolean): CommandError {
    const txns = [...this.#tracked].map(([txn, host]) => ({ txn, host }))
    return new CommandError('INTERRUPTED', message, { txns, aborted }, INTERRUPTED_EXIT)
  }
}

/**
 * The console output of runs still going, for whoever follows them as they run: the eval
 * that asked for `stream`, a `result` that waits with `stream`, a retransmit that does
 * (PROTOCOL.md §3.2, §3.7). The sandbox hands output over as the form writes it; a
 * follower that arrives late first gets what was written so far, then the rest live.
 *
 * What is kept per run is bounded by the run's `outputBytes` (the sandbox stops writing
 * there) and lives only until the run ends: the outcome's `output` is the record after.
 */
type Follower = (text: string) => void

interface Run { text: string[], followers: Set<Follower> }

export class LiveOutput {
  readonly #runs = new Map<string, Run>()

  /** The run wrote `text`: keep it for late followers and pass it to the present ones. */
  append (txn: string, text: string): void {
    let run = this.#runs.get(txn)
    if (run === undefined) {
      run = { text: [], followers: new Set() }
      this.#runs.set(txn, run)
    }
    run.text.push(text)
    for (const follower of run.followers) follower(text)
  }

  /**
   * Follow a run that has not ended (queued or running): `follower` gets the output so far
   * at once, as one text, then each piece as it is written, until end(). Returns the
   * unfollow function.
   */
  follow (txn: string, follower: Follower): () => void {
    let run = this.#runs.get(txn)
    if (run === undefined) {
      run = { text: [], followers: new Set() }
      this.#runs.set(txn, run)
    }
    if (run.text.length > 0) follower(run.text.join(''))
    run.followers.add(follower)
    const following = run
    return () => { following.followers.delete(follower) }
  }

  /** The run ended (its last output came before its outcome): forget it and its followers. */
  end (txn: string): void {
    this.#runs.delete(txn)
  }

  /** Runs with output or followers, for describe's and the tests' view of what is held. */
  get size (): number { return this.#runs.size }
}

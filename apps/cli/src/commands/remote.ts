import { RemoteEvalError, printable, printableList, type EvalAck, type EvalOutcome, type StatusWhich, type TxnRecord } from '@evalmesh/protocol'
import { join } from 'node:path'
import { BOOK_FILE, formatHost, type Client, type EvalOptions, type EvalResult, type FetchOptions } from '@evalmesh/client'
import { waitNotice } from '@evalmesh/repl'
import { CommandError, UsageError, int, list, str, type Command, type Parsed } from '../args.js'
import { bookOf, broadcastConfigFor, canBroadcast, clientFor, givenHost, localNodeOf, natsFrom, natsOptions, stateDirOf, targetOf } from '../context.js'
import { InterruptGuard } from '../interrupt.js'
import { jsonOk, outputShown, recordRows, show, showOutput, table } from '../output.js'

const hostOption = { host: { type: 'string', short: 'H' }, lan: { type: 'string' }, ...natsOptions } as const

/** Run `fn` with a client and close it afterwards. */
async function withClient<T> (p: Parsed, fn: (c: Client) => Promise<T>): Promise<T> {
  const client = clientFor(p)
  try {
    return await fn(client)
  } finally {
    client.close()
  }
}

/**
 * Where an eval or apply with no --host goes: broadcast, when this user's broadcast
 * reaches anything (a local node, the peers file, a LAN); else the configured default
 * host, directed; else an error saying how to name a node.
 */
function submitTarget (p: Parsed): string | undefined {
  const given = givenHost(p)
  if (given !== undefined) return given
  if (canBroadcast(broadcastConfigFor(p)) || natsFrom(p) !== undefined) return undefined
  return localNodeOf(p) // $EVALMESH_HOST or client.json, or the error naming the fix
}

/**
 * A transaction a person named: a full id, or a bare sequence number; with no --host, the
 * node that holds it as recorded in the state dir when this user's client learned it.
 */
function locate (p: Parsed, id: string): { txn: string | number, host: string } {
  const given = givenHost(p)
  const entry = bookOf(p).find(id)
  if (entry !== undefined) return { txn: entry.txn, host: given ?? entry.host }
  if (/^\d+$/.test(id)) {
    if (given !== undefined) return { txn: Number(id), host: given }
    throw new CommandError('NO_SUCH_TXN', `no transaction ${id} is recorded in ${join(stateDirOf(p), BOOK_FILE)} (this state dir's own transactions): give its full id, with --host for another client's`, { txn: id })
  }
  return { txn: id, host: given ?? localNodeOf(p) }
}

function evalOptions (p: Parsed): EvalOptions {
  const o: EvalOptions = { wait: p.values.wait !== false }
  const t = int(p, 'timeout'); if (t !== undefined) o.timeoutMs = t
  const s = str(p, 'session'); if (s !== undefined) o.session = s
  return o
}

/** The sequence number of a txn id (what `abort N` and `result N` take). */
function seqOf (txn: string): string {
  return txn.slice(txn.lastIndexOf(':') + 1)
}

/**
 * Print an outcome (or, with --no-wait, an acknowledgement) of a transaction held at
 * `where`. This is the one place eval, apply and result print a result, so that they
 * print alike.
 */
function printOutcome (p: Parsed, r: EvalOutcome | EvalAck, where: string, live?: LiveOutput): number {
  if (p.values.json === true) {
    console.log('value' in r ? jsonOk(r.value, { ...r }) : jsonOk(r.txn, { ...r, host: where }))
    return 0
  }
  if (!('value' in r)) {
    console.log(printable(r.txn, 120))
    const seq = seqOf(r.txn)
    console.error(`(${r.state === 'input' ? 'queued' : printable(r.state, 20)} on ${printable(r.node, 63)} at ${printable(where, 200)}; \`evalmesh result ${seq} --wait\` fetches it, \`evalmesh abort ${seq}\` stops it)`)
    return 0
  }
  if (r.contextLost !== undefined) console.error(`(the session's context was lost before this ran: ${printable(r.contextLost, 300)}; it started afresh)`)
  // Output already printed as it happened is not printed again; if some was skipped, all of it follows.
  if (r.output !== '' && live?.printedAll(r.output) !== true) {
    if (live?.printed === true) console.error('(some output was skipped while it streamed; all of it:)')
    const out = showOutput(r.output)
    process.stderr.write(out.endsWith('\n') ? out : out + '\n')
  } else if (live?.printed === true && !live.endsWithNewline) process.stderr.write('\n')
  if (r.outputTruncated) console.error('(output truncated at the node\'s limit)')
  console.log(show(r.value, undefined, p.values.raw === true))
  return 0
}

/** Console output printed to stderr as it streams in, so that the outcome does not print it twice. */
class LiveOutput {
  #text = ''
  #dropped = 0
  get printed (): boolean { return this.#text !== '' || this.#dropped > 0 }
  get endsWithNewline (): boolean { return this.#text === '' || this.#text.endsWith('\n') }
  print (text: string, dropped: number): void {
    this.#dropped += dropped
    this.#text += text
    process.stderr.write(showOutput(text))
  }

  /** Whether everything in `output` was printed as it came. */
  printedAll (output: string): boolean { return this.#dropped === 0 && this.#text === output }
}

/**
 * Wait for the outcome of `txn` at `where`: once it has waited a second, stderr says once
 * what it is waiting for, as the node's status of that txn tells it ("waiting: session
 * default, held by ...:7 (running 3.2 s)", "running for 1.0 s..."); Ctrl-C aborts it.
 */
async function waitAndPrint (p: Parsed, c: Client, guard: InterruptGuard, txn: string, where: string, extra: { host?: string } = {}): Promise<number> {
  guard.track(txn, where)
  const stop = waitNotice(c, where, txn, line => console.error(`(${line})`))
  try {
    // The form's console output streams to stderr as it happens (not with --json: one document).
    const live = p.values.json === true ? undefined : new LiveOutput()
    const options: FetchOptions = { wait: true }
    if (live !== undefined) options.onOutput = (text, dropped) => live.print(text, dropped)
    let r: EvalOutcome
    try {
      r = await guard.run(c.fetchResult(txn, where, options))
    } catch (err) {
      if (err instanceof RemoteEvalError && live?.printedAll(err.output) === true) outputShown.add(err)
      throw err
    }
    guard.done(txn)
    return printOutcome(p, { ...r, ...extra }, where, live)
  } finally {
    stop()
  }
}

/**
 * Submit an eval or apply and print its outcome. Waiting for the result, it is submitted
 * without waiting (so its txn and node are known at once) and fetched by txn, so that
 * Ctrl-C can abort it.
 */
async function submitAndPrint (p: Parsed, c: Client, host: string | undefined, o: EvalOptions, submit: (o: EvalOptions) => Promise<EvalResult>): Promise<number> {
  const guard = new InterruptGuard(c)
  try {
    if (o.wait === false) { const ack = await guard.run(submit(o)); return printOutcome(p, ack, ack.host ?? host!) }
    const ack = await guard.run(submit({ ...o, wait: false }))
    // A broadcast was claimed by the node at ack.host; a directed request went to `host`.
    const where = ack.host ?? host!
    if ('value' in ack) return printOutcome(p, ack, where)
    return await waitAndPrint(p, c, guard, ack.txn, where, ack.host !== undefined ? { host: ack.host } : {})
  } finally {
    guard.dispose()
  }
}

export const evalCmd: Command = {
  name: 'eval',
  summary: 'evaluate a JavaScript form on a node (REMOTEVAL)',
  usage: `evalmesh eval FORM [--host H | --all] [--no-wait] [--timeout MS] [--session S] [--raw] [--json]

  FORM           JavaScript source; its completion value is the result ('-' reads stdin)
  --host H       host:port or a peer name. Without it the form is broadcast: at most one
                 willing node runs it (the local node and the peers file are asked; on a
                 LAN, every node on it)
  --all          run it on every willing node and print each node's outcome
  --deadline MS  with --all: how long to wait for the nodes (default 5000)
  --lan ADDR     broadcast from this LAN interface address (default: the local node's)
  --nats URLS    also reach nodes on this NATS backbone: H by name, broadcasts and --all
                 there too (--nats-creds FILE, --nats-mesh NAME: as for serve)
  --no-wait      print the txn id as soon as the node acknowledges, not the result
  --timeout MS   evaluation wall-time limit (tightens the node's own limit)
  --session S    named persistent context on the node (default "default")
  --raw          print a string result as it is (default: quoted, as the REPL shows it)
  --json         print {"ok":true,"value":...,"output":...,"txn":...} for scripts

  Console output of the form goes to stderr as it happens; the value to stdout. Ctrl-C aborts the
  transaction (exit 130); a second Ctrl-C leaves without waiting for the abort.`,
  options: { ...hostOption, wait: { type: 'boolean' }, timeout: { type: 'string' }, session: { type: 'string' }, all: { type: 'boolean' }, deadline: { type: 'string' }, raw: { type: 'boolean' } },
  run: async (p) => {
    let form = p.positionals[0]
    if (form === undefined) throw new UsageError('FORM is required')
    if (form === '-') form = await readStdin()
    const o = evalOptions(p)
    if (o.timeoutMs !== undefined) o.limits = { timeoutMs: o.timeoutMs }
    delete o.timeoutMs
    if (p.values.all === true) {
      if (givenHost(p) !== undefined) throw new UsageError('--all asks every willing node; it takes no --host')
      return await withClient(p, async c => await printFanOut(p, c, form, o))
    }
    const host = submitTarget(p)
    return await withClient(p, async c => await submitAndPrint(p, c, host, o, async x => await c.evalDetailed(form, host, x)))
  }
}

async function printFanOut (p: Parsed, c: Client, form: string, o: EvalOptions): Promise<number> {
  const json = p.values.json === true
  const opts: Parameters<Client['remoteEvalAll']>[1] = {
    timeout: int(p, 'deadline') ?? 5000,
    onResult: (r) => {
      if (json) return
      const what = r.status === 'ok' ? show(r.value, undefined, p.values.raw === true) : r.status === 'refused' ? `refused: ${printable(r.rule ?? r.error?.message ?? '', 2000)}` : `${r.status}: ${printable(r.error?.message ?? '', 2000)}`
      console.log(`${printable(r.node, 63).padEnd(16)} ${printable(r.status, 20).padEnd(8)} ${what}`)
    }
  }
  if (o.session !== undefined) opts.session = o.session
  if (o.limits !== undefined) opts.limits = o.limits
  // The outcomes come from many nodes: Ctrl-C leaves them (their txn is printed to abort them by).
  const guard = new InterruptGuard(c, undefined, { tracks: false })
  let r: Awaited<ReturnType<Client['remoteEvalAll']>>
  try {
    r = await guard.run(c.remoteEvalAll(form, opts))
  } finally {
    guard.dispose()
  }
  const outcomes = r.outcomes.map(x => ({ ...x, error: x.error === undefined ? undefined : { code: x.error.code, message: x.error.message } }))
  // Success when at least one node ran it; --json says so exactly when the exit status is 0.
  if (r.outcomes.some(x => x.status === 'ok')) {
    if (json) console.log(jsonOk({ txn: r.txn, outcomes }))
    return 0
  }
  if (r.outcomes.length === 0) throw new CommandError('NO_WILLING_SERVER', 'no willing node answered', { txn: r.txn, outcomes })
  throw new CommandError('NONE_OK', `no node ran it successfully (${r.outcomes.length} answered)`, { txn: r.txn, outcomes })
}

export const peersCmd: Command = {
  name: 'peers',
  summary: 'list the nodes a node knows: discovered by mDNS, from its peers file, and seen on NATS',
  usage: `evalmesh peers [--host H] [--json]`,
  options: { ...hostOption },
  run: async (p) => await withClient(p, async c => {
    const peers = await c.request(targetOf(p), { kind: 'peers' })
    if (p.values.json === true) { console.log(jsonOk(peers)); return 0 }
    if (peers.length === 0) { console.log('(no peers known)'); return 0 }
    console.log(table(['NAME', 'ADDRESS', 'ID', 'VERSION', 'SOURCE', 'LAST SEEN'], peers.map(x => [
      // A node seen on NATS has no address here: it is reached through the backbone.
      x.name, x.source === 'nats' ? '(via nats)' : formatHost(x.address, x.port), x.id, String(x.version), x.source, `${((Date.now() - x.lastSeen) / 1000).toFixed(1)} s ago`
    ])))
    return 0
  })
}

export const applyCmd: Command = {
  name: 'apply',
  summary: 'call a function the node registered, with JSON arguments (REMOTEAPPLY)',
  usage: `evalmesh apply FN [ARG_JSON...] [--host H] [--no-wait] [--raw] [--json]

  Without --host the call is broadcast, as for eval. Ctrl-C aborts it, as for eval.
  FN            a registered function (see \`evalmesh describe\`), e.g. evalserver.status
  ARG_JSON      each argument as JSON: 42, '"text"', '{"a":1}'`,
  options: { ...hostOption, wait: { type: 'boolean' }, timeout: { type: 'string' }, raw: { type: 'boolean' } },
  run: async (p) => {
    const [fn, ...rawArgs] = p.positionals
    if (fn === undefined) throw new UsageError('FN is required')
    const args = rawArgs.map((a, i) => {
      try { return JSON.parse(a) as unknown } catch { throw new UsageError(`argument ${i + 1} is not JSON: ${a} (quote strings: '"text"')`) }
    })
    const o = evalOptions(p)
    if (o.timeoutMs !== undefined) o.limits = { timeoutMs: o.timeoutMs }
    delete o.timeoutMs
    const host = submitTarget(p)
    return await withClient(p, async c => await submitAndPrint(p, c, host, o, async x => await c.applyDetailed(fn, args, host, x)))
  }
}

export const abortCmd: Command = {
  name: 'abort',
  summary: 'abort a queued or running transaction (REMOTEABORT)',
  usage: `evalmesh abort TXN [--host H] [--reason TEXT] [--must-exist] [--json]

  TXN           a transaction id (client:seq), or the bare sequence number of one of yours
  --host H      the node that holds it (default: where this state dir's client sent it,
                else the local node)
  Exits 1 when nothing was aborted (no such transaction, or already done).`,
  options: { ...hostOption, reason: { type: 'string' }, 'must-exist': { type: 'boolean' } },
  run: async (p) => {
    const id = p.positionals[0]
    if (id === undefined) throw new UsageError('TXN is required')
    const { txn, host } = locate(p, id)
    const opts: { reason?: string, mustExist?: boolean } = {}
    const reason = str(p, 'reason'); if (reason !== undefined) opts.reason = reason
    if (p.values['must-exist'] === true) opts.mustExist = true
    return await withClient(p, async c => {
      const r = await c.remoteAbort(txn, host, opts)
      if (!r.aborted) {
        const code = r.state === 'none' ? 'NO_SUCH_TXN' : 'NOT_ABORTED'
        throw new CommandError(code, `${printable(String(r.txn ?? txn), 120)} not aborted on ${printable(host, 200)} (${printable(r.reason, 2000)})`, { txn: r.txn ?? txn, host, state: r.state, reason: r.reason })
      }
      console.log(p.values.json === true ? jsonOk({ ...r, host }) : `aborted ${printable(String(r.txn), 120)}: ${printable(r.reason, 2000)}`)
      return 0
    })
  }
}

export const statusCmd: Command = {
  name: 'status',
  summary: 'list a node\'s input (queued), running and done transactions (EVALSERVER.STATUS)',
  usage: `evalmesh status [--which input|running|done|all] [--id TXN] [--host H] [--json]

  --id TXN      one transaction: a full id, or the bare sequence number of one of yours
                (then --host defaults to the node that holds it)`,
  options: { ...hostOption, which: { type: 'string' }, id: { type: 'string' } },
  run: async (p) => {
    const which = str(p, 'which') ?? 'all'
    if (!['input', 'running', 'done', 'all'].includes(which)) throw new UsageError('--which must be input, running, done or all')
    const opts: { which: StatusWhich, id?: string | number } = { which: which as StatusWhich }
    const id = str(p, 'id')
    let host: string | undefined
    if (id !== undefined) { const at = locate(p, id); opts.id = at.txn; host = at.host }
    return await withClient(p, async c => {
      const records: TxnRecord[] = await c.status(host ?? targetOf(p), opts)
      console.log(p.values.json === true ? jsonOk(records) : recordRows(records))
      return 0
    })
  }
}

export const resultCmd: Command = {
  name: 'result',
  summary: 'fetch the kept result of a transaction by id',
  usage: `evalmesh result TXN [--host H] [--wait] [--raw] [--json]

  TXN           a transaction id, or the bare sequence number of one of yours
  --host H      the node that holds it (default: where this state dir's client sent it)
  --wait        if the transaction is still queued or running, wait for it (Ctrl-C aborts it)`,
  options: { ...hostOption, wait: { type: 'boolean' }, raw: { type: 'boolean' } },
  run: async (p) => {
    const id = p.positionals[0]
    if (id === undefined) throw new UsageError('TXN is required')
    const { txn, host } = locate(p, id)
    return await withClient(p, async c => {
      if (p.values.wait !== true) return printOutcome(p, await c.fetchResult(String(txn), host, { wait: false }), host)
      const guard = new InterruptGuard(c)
      try {
        return await waitAndPrint(p, c, guard, String(txn), host)
      } finally {
        guard.dispose()
      }
    })
  }
}

export const describeCmd: Command = {
  name: 'describe',
  summary: 'show a node\'s version, capabilities, limits, functions and policy',
  usage: 'evalmesh describe [--host H] [--json]',
  options: { ...hostOption },
  run: async (p) => await withClient(p, async c => {
    const d = await c.describe(targetOf(p))
    if (p.values.json === true) { console.log(jsonOk(d)); return 0 }
    const rows = Object.entries(d).map(([k, v]) => [k, typeof v === 'object' ? JSON.stringify(v) : String(v)])
    console.log(table(['FIELD', 'VALUE'], rows))
    return 0
  })
}

export const pingCmd: Command = {
  name: 'ping',
  summary: 'check that a node answers, and how fast',
  usage: 'evalmesh ping [--host H] [--json]',
  options: { ...hostOption },
  run: async (p) => await withClient(p, async c => {
    const host = targetOf(p)
    const started = process.hrtime.bigint()
    const r = await c.ping(host)
    const ms = Number(process.hrtime.bigint() - started) / 1e6
    console.log(p.values.json === true ? jsonOk({ ...r, host, ms }) : `${printable(r.name, 63)} (${printable(r.id, 40)}) at ${printable(host, 200)} answered in ${ms.toFixed(2)} ms (including connect and handshake)`)
    return 0
  })
}

export const resetCmd: Command = {
  name: 'reset',
  summary: 'forget your persistent context on a node',
  usage: 'evalmesh reset [--host H] [--session S] [--json]',
  options: { ...hostOption, session: { type: 'string' } },
  run: async (p) => await withClient(p, async c => {
    const host = targetOf(p)
    const session = str(p, 'session')
    await c.reset(host, session)
    console.log(p.values.json === true ? jsonOk({ reset: true, host, session: session ?? 'default' }) : 'context reset')
    return 0
  })
}

export const policyCmd: Command = {
  name: 'policy',
  summary: 'show or change a node\'s admission policy (hosts and gags), live',
  usage: `evalmesh policy [--host H] [--hosts LIST] [--gags LIST] [--gag X]... [--ungag X]... [--json]

  --host H      the node (default: the local node, the one most recently started from
                this state dir)
  --hosts LIST  replace hosts: directed, broadcast and/or peer names (empty = both modes)
  --gags LIST   replace gags: peer names, broadcast, self
  --gag X       add a gag;  --ungag X  remove one
  With no change, prints the policy. Changes apply to the next request.`,
  options: { ...hostOption, hosts: { type: 'string', multiple: true }, gags: { type: 'string', multiple: true }, gag: { type: 'string', multiple: true }, ungag: { type: 'string', multiple: true } },
  run: async (p) => await withClient(p, async c => {
    const change: Record<string, string[]> = {}
    for (const k of ['hosts', 'gags', 'gag', 'ungag']) { const v = list(p, k); if (v !== undefined) change[k] = v }
    const state = await c.policy(targetOf(p), change)
    console.log(p.values.json === true ? jsonOk(state) : `hosts: ${printableList(state.hosts, 63).join(', ') || '(none)'}\ngags:  ${printableList(state.gags, 63).join(', ') || '(none)'}`)
    return 0
  })
}

async function readStdin (): Promise<string> {
  const chunks: Buffer[] = []
  for await (const c of process.stdin) chunks.push(c as Buffer)
  return Buffer.concat(chunks).toString('utf8')
}

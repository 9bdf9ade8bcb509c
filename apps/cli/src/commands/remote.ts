import { printable, printableList, type EvalAck, type EvalOutcome, type StatusWhich, type TxnRecord } from '@evalmesh/protocol'
import type { Client, EvalOptions, EvalResult } from '@evalmesh/client'
import { waitNotice } from '@evalmesh/repl'
import { UsageError, int, list, str, type Command, type Parsed } from '../args.js'
import { clientFor, localNodeOf } from '../context.js'
import { recordRows, show, showOutput, table, toJson } from '../output.js'

const hostOption = { host: { type: 'string', short: 'H' }, lan: { type: 'string' } } as const

/** Run `fn` with a client and close it afterwards. */
async function withClient<T> (p: Parsed, fn: (c: Client) => Promise<T>): Promise<T> {
  const client = clientFor(p)
  try {
    return await fn(client)
  } finally {
    client.close()
  }
}

function hostOf (p: Parsed, required = false): string {
  const h = str(p, 'host')
  if (h === undefined && required) throw new UsageError('--host H is required (host:port or a peer name)')
  return h ?? localNodeOf(p)
}

function evalOptions (p: Parsed): EvalOptions {
  const o: EvalOptions = { wait: p.values.wait !== false }
  const t = int(p, 'timeout'); if (t !== undefined) o.timeoutMs = t
  const s = str(p, 'session'); if (s !== undefined) o.session = s
  return o
}

function printOutcome (p: Parsed, r: EvalOutcome | EvalAck): number {
  if (p.values.json === true) {
    console.log(toJson({ ok: true, ...r }))
    return 0
  }
  if (!('value' in r)) {
    console.log(printable(r.txn, 120))
    console.error(`(${r.state === 'input' ? 'queued' : printable(r.state, 20)} on ${printable(r.node, 63)}; fetch the result with: evalmesh result ${printable(r.txn, 120)} --host ...)`)
    return 0
  }
  if (r.contextLost !== undefined) console.error(`(the session's context was lost before this ran: ${printable(r.contextLost, 300)}; it started afresh)`)
  if (r.output !== '') { const out = showOutput(r.output); process.stderr.write(out.endsWith('\n') ? out : out + '\n') }
  if (r.outputTruncated) console.error('(output truncated at the node\'s limit)')
  console.log(show(r.value))
  return 0
}

/**
 * Submit an eval or apply and print its outcome. Waiting for the result, it is submitted
 * without waiting (so its txn and node are known at once) and fetched by txn; once it has
 * waited a second, stderr says once what it is waiting for, as the node's status of that
 * txn tells it ("waiting: session default, held by ...:7 (running 3.2 s)", "running for
 * 1.0 s...").
 */
async function submitAndPrint (p: Parsed, c: Client, host: string | undefined, o: EvalOptions, submit: (o: EvalOptions) => Promise<EvalResult>): Promise<number> {
  if (o.wait === false) return printOutcome(p, await submit(o))
  const ack = await submit({ ...o, wait: false })
  if ('value' in ack) return printOutcome(p, ack)
  // A broadcast was claimed by the node at ack.host; a directed request went to `host`.
  const where = ack.host ?? host ?? localNodeOf(p)
  const stop = waitNotice(c, where, ack.txn, line => console.error(`(${line})`))
  try {
    const r = await c.fetchResult(ack.txn, where, { wait: true })
    return printOutcome(p, ack.host !== undefined ? { ...r, host: ack.host } as EvalOutcome : r)
  } finally {
    stop()
  }
}

export const evalCmd: Command = {
  name: 'eval',
  summary: 'evaluate a JavaScript form on a node (REMOTEVAL)',
  usage: `evalmesh eval FORM [--host H | --all] [--no-wait] [--timeout MS] [--session S] [--json]

  FORM           JavaScript source; its completion value is the result ('-' reads stdin)
  --host H       host:port or a peer name. Without it the form is broadcast: at most one
                 willing node runs it (the local node and the peers file are asked; on a
                 LAN, every node on it)
  --all          run it on every willing node and print each node's outcome
  --deadline MS  with --all: how long to wait for the nodes (default 5000)
  --lan ADDR     broadcast from this LAN interface address (default: the local node's)
  --no-wait      print the txn id as soon as the node acknowledges, not the result
  --timeout MS   evaluation wall-time limit (tightens the node's own limit)
  --session S    named persistent context on the node (default "default")
  --json         print {"ok":true,"value":...,"output":...,"txn":...} for scripts

  Console output of the form goes to stderr; the value to stdout.`,
  options: { ...hostOption, wait: { type: 'boolean' }, timeout: { type: 'string' }, session: { type: 'string' }, all: { type: 'boolean' }, deadline: { type: 'string' } },
  run: async (p) => {
    let form = p.positionals[0]
    if (form === undefined) throw new UsageError('FORM is required')
    if (form === '-') form = await readStdin()
    const o = evalOptions(p)
    if (o.timeoutMs !== undefined) o.limits = { timeoutMs: o.timeoutMs }
    delete o.timeoutMs
    if (p.values.all === true) {
      if (str(p, 'host') !== undefined) throw new UsageError('--all asks every willing node; it takes no --host')
      return await withClient(p, async c => await printFanOut(p, c, form, o))
    }
    const host = str(p, 'host')
    return await withClient(p, async c => await submitAndPrint(p, c, host, o, async x => await c.evalDetailed(form, host, x)))
  }
}

async function printFanOut (p: Parsed, c: Client, form: string, o: EvalOptions): Promise<number> {
  const json = p.values.json === true
  const opts: Parameters<Client['remoteEvalAll']>[1] = {
    timeout: int(p, 'deadline') ?? 5000,
    onResult: (r) => {
      if (json) return
      const what = r.status === 'ok' ? show(r.value) : r.status === 'refused' ? `refused: ${printable(r.rule ?? r.error?.message ?? '', 2000)}` : `${r.status}: ${printable(r.error?.message ?? '', 2000)}`
      console.log(`${printable(r.node, 63).padEnd(16)} ${printable(r.status, 20).padEnd(8)} ${what}`)
    }
  }
  if (o.session !== undefined) opts.session = o.session
  if (o.limits !== undefined) opts.limits = o.limits
  const r = await c.remoteEvalAll(form, opts)
  if (json) console.log(toJson({ ok: true, txn: r.txn, outcomes: r.outcomes.map(x => ({ ...x, error: x.error === undefined ? undefined : { code: x.error.code, message: x.error.message } })) }))
  else if (r.outcomes.length === 0) console.error('no willing node answered')
  return r.outcomes.some(x => x.status === 'ok') ? 0 : 1
}

export const peersCmd: Command = {
  name: 'peers',
  summary: 'list the nodes a node knows: discovered by mDNS and from its peers file',
  usage: `evalmesh peers [--host H] [--json]`,
  options: { ...hostOption },
  run: async (p) => await withClient(p, async c => {
    const peers = await c.request(hostOf(p), { kind: 'peers' })
    if (p.values.json === true) { console.log(toJson(peers)); return 0 }
    if (peers.length === 0) { console.log('(no peers known)'); return 0 }
    console.log(table(['NAME', 'ADDRESS', 'ID', 'VERSION', 'SOURCE', 'LAST SEEN'], peers.map(x => [
      x.name, `${x.address}:${x.port}`, x.id, String(x.version), x.source, `${((Date.now() - x.lastSeen) / 1000).toFixed(1)} s ago`
    ])))
    return 0
  })
}

export const applyCmd: Command = {
  name: 'apply',
  summary: 'call a function the node registered, with JSON arguments (REMOTEAPPLY)',
  usage: `evalmesh apply FN [ARG_JSON...] [--host H] [--no-wait] [--json]

  Without --host the call is broadcast, as for eval.
  FN            a registered function (see \`evalmesh describe\`), e.g. evalserver.status
  ARG_JSON      each argument as JSON: 42, '"text"', '{"a":1}'`,
  options: { ...hostOption, wait: { type: 'boolean' }, timeout: { type: 'string' } },
  run: async (p) => {
    const [fn, ...rawArgs] = p.positionals
    if (fn === undefined) throw new UsageError('FN is required')
    const args = rawArgs.map((a, i) => {
      try { return JSON.parse(a) as unknown } catch { throw new UsageError(`argument ${i + 1} is not JSON: ${a} (quote strings: '"text"')`) }
    })
    const o = evalOptions(p)
    if (o.timeoutMs !== undefined) o.limits = { timeoutMs: o.timeoutMs }
    delete o.timeoutMs
    const host = str(p, 'host')
    return await withClient(p, async c => await submitAndPrint(p, c, host, o, async x => await c.applyDetailed(fn, args, host, x)))
  }
}

export const abortCmd: Command = {
  name: 'abort',
  summary: 'abort a queued or running transaction (REMOTEABORT)',
  usage: `evalmesh abort TXN --host H [--reason TEXT] [--must-exist] [--json]

  TXN           a transaction id (client:seq), or a bare sequence number`,
  options: { ...hostOption, reason: { type: 'string' }, 'must-exist': { type: 'boolean' } },
  run: async (p) => {
    const id = p.positionals[0]
    if (id === undefined) throw new UsageError('TXN is required')
    const txn = /^\d+$/.test(id) ? Number(id) : id
    const opts: { reason?: string, mustExist?: boolean } = {}
    const reason = str(p, 'reason'); if (reason !== undefined) opts.reason = reason
    if (p.values['must-exist'] === true) opts.mustExist = true
    return await withClient(p, async c => {
      const r = await c.remoteAbort(txn, hostOf(p, true), opts)
      console.log(p.values.json === true ? toJson(r) : r.aborted ? `aborted ${printable(String(r.txn), 120)}: ${printable(r.reason, 2000)}` : `not aborted (${printable(r.reason, 2000)})`)
      return r.aborted ? 0 : 1
    })
  }
}

export const statusCmd: Command = {
  name: 'status',
  summary: 'list a node\'s input (queued), running and done transactions (EVALSERVER.STATUS)',
  usage: `evalmesh status [--which input|running|done|all] [--id TXN] [--host H] [--json]`,
  options: { ...hostOption, which: { type: 'string' }, id: { type: 'string' } },
  run: async (p) => {
    const which = str(p, 'which') ?? 'all'
    if (!['input', 'running', 'done', 'all'].includes(which)) throw new UsageError('--which must be input, running, done or all')
    const opts: { which: StatusWhich, id?: string | number } = { which: which as StatusWhich }
    const id = str(p, 'id'); if (id !== undefined) opts.id = /^\d+$/.test(id) ? Number(id) : id
    return await withClient(p, async c => {
      const records: TxnRecord[] = await c.status(hostOf(p), opts)
      console.log(p.values.json === true ? toJson(records) : recordRows(records))
      return 0
    })
  }
}

export const resultCmd: Command = {
  name: 'result',
  summary: 'fetch the kept result of a transaction by id',
  usage: `evalmesh result TXN --host H [--wait] [--json]

  --wait        if the transaction is still queued or running, wait for it`,
  options: { ...hostOption, wait: { type: 'boolean' } },
  run: async (p) => {
    const txn = p.positionals[0]
    if (txn === undefined) throw new UsageError('TXN is required')
    const host = hostOf(p, true)
    const wait = p.values.wait === true
    return await withClient(p, async c => {
      // Waiting, it says once after a second what the transaction is doing, as eval does.
      const stop = wait ? waitNotice(c, host, txn, line => console.error(`(${line})`)) : () => {}
      try {
        return printOutcome(p, await c.fetchResult(txn, host, { wait }))
      } finally {
        stop()
      }
    })
  }
}

export const describeCmd: Command = {
  name: 'describe',
  summary: 'show a node\'s version, capabilities, limits, functions and policy',
  usage: 'evalmesh describe --host H [--json]',
  options: { ...hostOption },
  run: async (p) => await withClient(p, async c => {
    const d = await c.describe(hostOf(p))
    if (p.values.json === true) { console.log(toJson(d)); return 0 }
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
    const started = process.hrtime.bigint()
    const r = await c.ping(hostOf(p))
    const ms = Number(process.hrtime.bigint() - started) / 1e6
    console.log(p.values.json === true ? toJson({ ...r, ms }) : `${printable(r.name, 63)} (${printable(r.id, 40)}) answered in ${ms.toFixed(2)} ms (including connect and handshake)`)
    return 0
  })
}

export const resetCmd: Command = {
  name: 'reset',
  summary: 'forget your persistent context on a node',
  usage: 'evalmesh reset [--host H] [--session S]',
  options: { ...hostOption, session: { type: 'string' } },
  run: async (p) => await withClient(p, async c => {
    await c.reset(hostOf(p), str(p, 'session'))
    console.log('context reset')
    return 0
  })
}

export const policyCmd: Command = {
  name: 'policy',
  summary: 'show or change a node\'s admission policy (hosts and gags), live',
  usage: `evalmesh policy [--host H] [--hosts LIST] [--gags LIST] [--gag X]... [--ungag X]... [--json]

  --hosts LIST  replace hosts: directed, broadcast and/or peer names (empty = both modes)
  --gags LIST   replace gags: peer names, broadcast, self
  --gag X       add a gag;  --ungag X  remove one
  With no change, prints the policy. Changes apply to the next request.`,
  options: { ...hostOption, hosts: { type: 'string', multiple: true }, gags: { type: 'string', multiple: true }, gag: { type: 'string', multiple: true }, ungag: { type: 'string', multiple: true } },
  run: async (p) => await withClient(p, async c => {
    const change: Record<string, string[]> = {}
    for (const k of ['hosts', 'gags', 'gag', 'ungag']) { const v = list(p, k); if (v !== undefined) change[k] = v }
    const state = await c.policy(hostOf(p), change)
    console.log(p.values.json === true ? toJson(state) : `hosts: ${printableList(state.hosts, 63).join(', ') || '(none)'}\ngags:  ${printableList(state.gags, 63).join(', ') || '(none)'}`)
    return 0
  })
}

async function readStdin (): Promise<string> {
  const chunks: Buffer[] = []
  for await (const c of process.stdin) chunks.push(c as Buffer)
  return Buffer.concat(chunks).toString('utf8')
}

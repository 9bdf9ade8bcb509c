import repl, { type REPLServer } from 'node:repl'
import { Script } from 'node:vm'
import { inspect } from 'node:util'
import type { Client } from '@evalmesh/client'
import { EvalMeshError, RemoteEvalError, printable, type EvalOutcome } from '@evalmesh/protocol'
import { readableErrors, stackFrames, terminalText, waitNotice } from './present.js'

export interface ReplOptions {
  client: Client
  /**
   * The node the helpers (remoteEval, status, ...) use when called without a host: an
   * address, or a function asked at each call (the CLI's local-node rule). Without it,
   * a helper called with no host is an error asking for one.
   */
  defaultHost?: string | (() => string)
  /**
   * Evaluate plain input on this node from the start (as `.host NAME` would). It is
   * checked before any input is read, and a node that does not answer rejects
   * `startRepl`: a script piped in for a node never runs here instead.
   */
  target?: string
  /** Peer names, for `.hosts`, `peers()` and tab completion after `.host `. */
  peers?: () => Promise<string[]> | string[]
  input?: NodeJS.ReadableStream
  output?: NodeJS.WritableStream
  /** Whether the streams are a terminal (line editing, Ctrl-C); default: output.isTTY. */
  terminal?: boolean
  /** Where to keep the input history (e.g. <state-dir>/repl_history). */
  historyFile?: string
}

export interface Repl {
  readonly server: REPLServer
  /** The node plain input is evaluated on, or undefined for local evaluation. */
  readonly target: string | undefined
  /** Resolves when the REPL is closed (.exit, Ctrl-D, Ctrl-C twice). */
  readonly closed: Promise<void>
  /** `.host NAME` from code: check the node answers, then send plain input there. */
  setTarget: (name: string | undefined) => Promise<void>
}

const ABORT_REASON = 'interrupted at the REPL (Ctrl-C)'

/**
 * A Node REPL with remoteEval, remoteApply, remoteAbort, remoteEvalAll, status and
 * peers in scope (awaitable at top level). `.host NAME` sends plain input to a node;
 * Ctrl-C while waiting on a node aborts the remote transaction and keeps the REPL.
 */
export async function startRepl (options: ReplOptions): Promise<Repl> {
  const { client } = options
  const defaultHost = (): string => {
    const d = options.defaultHost
    if (d === undefined) throw new EvalMeshError('UNKNOWN_HOST', 'no default node: pass a host (host:port or a peer name)')
    return typeof d === 'string' ? d : d()
  }
  const output = options.output ?? process.stdout
  const terminal = options.terminal ?? (output as NodeJS.WriteStream).isTTY === true
  let target: string | undefined
  // The first node is asked before the REPL reads a line: input already waiting (a script
  // piped in) must go where it was sent, not be evaluated here while the ping is out.
  const first = options.target === undefined ? undefined : await reach(client, options.target)
  /** Remote waits in progress: txn -> host. Ctrl-C aborts them. */
  const pending = new Map<string, string>()
  /**
   * Every helper call not yet settled. Input that ends (a script piped in, Ctrl-D) closes
   * the REPL only once these have: `evalmesh repl < script` must not cut off its own
   * remote work and report it LOST.
   */
  const inflight = new Set<Promise<unknown>>()

  const promptFor = (t: string | undefined): string => t === undefined ? 'evalmesh> ' : `evalmesh@${t}> `
  const server = repl.start({
    prompt: promptFor(undefined),
    input: options.input ?? process.stdin,
    output,
    terminal,
    useColors: terminal,
    ignoreUndefined: false,
    preview: false,
    // Values from a node may hold text a peer chose: shown with inspect's escapes, and
    // what inspect leaves (bidi overrides, separators) as visible escapes too.
    writer: (value: unknown) => terminalText(inspect(value, { colors: terminal, showProxy: true }), { keepColours: true }),
    // Lets Ctrl-C through while a top-level await is pending (Node pauses input otherwise).
    breakEvalOnSigint: true
  })
  const write = (text: string): void => { output.write(text.endsWith('\n') ? text : text + '\n') }

  /** Submit without waiting, so the txn id is known, then wait for the result. */
  async function evalAndWait (host: string, submit: () => Promise<{ txn: string }>): Promise<EvalOutcome> {
    const ack = await submit()
    pending.set(ack.txn, host)
    // After a second without the outcome, say once what it waits for (the node's status of it).
    const stopNotice = waitNotice(client, host, ack.txn, line => write(`(${line})`))
    // The form's console output is printed as it happens, above the prompt-to-be.
    let streamed = ''
    let dropped = 0
    const onOutput = (text: string, skipped: number): void => {
      streamed += text
      dropped += skipped
      output.write(terminalText(text))
    }
    try {
      const o = await client.fetchResult(ack.txn, host, { wait: true, onOutput })
      readableErrors(o.value)
      if (dropped === 0 && streamed !== '' && streamed === o.output) outputShown.add(o)
      return o
    } catch (err) {
      if (err instanceof RemoteEvalError && dropped === 0 && streamed !== '' && streamed === err.output) outputShown.add(err)
      throw err
    } finally {
      stopNotice()
      pending.delete(ack.txn)
    }
  }

  function showOutput (o: EvalOutcome): void {
    if (o.output !== '' && !outputShown.has(o)) write(terminalText(o.output))
    if (o.outputTruncated) write('(output truncated at the node\'s limit)')
  }

  // Helpers for code typed at the prompt: errors print as the remote error, with its stack.
  const handled = <T>(p: Promise<T>): Promise<T> => {
    const q = p.catch(err => { throw readable(err) })
    inflight.add(q)
    q.catch(() => { /* an await interrupted by Ctrl-C leaves nobody to take the rejection */ }).finally(() => inflight.delete(q))
    return q
  }
  const context = server.context as Record<string, unknown>
  const helpers: Record<string, unknown> = {
    client,
    remoteEval: (form: string, host?: string, opts: { wait?: boolean, session?: string } = {}) => handled((async () => {
      const h = host ?? defaultHost()
      if (opts.wait === false) return await client.remoteEval(form, h, opts)
      const o = await evalAndWait(h, async () => await client.evalDetailed(form, h, { ...opts, wait: false }))
      showOutput(o)
      return o.value
    })()),
    remoteApply: (fn: string, args: unknown[] = [], host?: string, opts: { wait?: boolean } = {}) => handled((async () => {
      const h = host ?? defaultHost()
      if (opts.wait === false) return await client.remoteApply(fn, args, h, opts)
      const o = await evalAndWait(h, async () => await client.applyDetailed(fn, args, h, { ...opts, wait: false }))
      return o.value
    })()),
    // A txn this user's client recorded is aborted where it went.
    remoteAbort: (txn: string | number, host?: string, opts: { reason?: string } = {}) => handled((async () => await client.remoteAbort(txn, host ?? client.book?.find(txn)?.host ?? defaultHost(), opts))()),
    status: (host?: string, opts: Parameters<Client['status']>[1] = {}) => handled((async () => await client.status(host ?? defaultHost(), opts))()),
    peers: () => handled(Promise.resolve(options.peers?.() ?? []))
  }
  helpers.remoteEvalAll = (...args: Parameters<Client['remoteEvalAll']>) => handled(client.remoteEvalAll(...args))
  const install = (): void => {
    for (const [name, value] of Object.entries(helpers)) {
      Object.defineProperty(context, name, { value, writable: true, configurable: true, enumerable: true })
    }
  }
  install()
  server.on('reset', install) // .clear makes a fresh context

  // ---- plain input on a remote node -------------------------------------------

  const localEval = server.eval
  const remoteEval: REPLServer['eval'] = function (code, ctx, file, callback) {
    if (target === undefined) { localEval.call(server, code, ctx, file, callback); return }
    const incomplete = incompleteInput(code)
    if (incomplete !== undefined) { callback(new repl.Recoverable(incomplete), undefined); return }
    if (code.trim() === '') { callback(null, undefined); return }
    const host = target
    // While we wait on the node, Ctrl-C belongs to us: it aborts the txn, the REPL stays.
    const replSigint = server.listeners('SIGINT')
    server.removeAllListeners('SIGINT')
    server.on('SIGINT', onSigint)
    // Plain input names the default session, so lines typed ahead run in order in it, as at
    // a listener (a request naming no session would run in a transient context while the
    // session is busy, and not see what the line before it defined).
    evalAndWait(host, async () => await client.evalDetailed(code, host, { wait: false, session: 'default' })).then(
      o => { showOutput(o); done(null, o.value) },
      err => done(readable(err), undefined)
    )
    function done (err: Error | null, value: unknown): void {
      server.removeListener('SIGINT', onSigint)
      for (const l of replSigint) server.on('SIGINT', l as () => void)
      callback(err, value)
    }
  }
  ;(server as { eval: REPLServer['eval'] }).eval = remoteEval

  function onSigint (): void {
    if (pending.size === 0) return
    for (const [txn, host] of pending) {
      write(`\n(aborting ${txn} on ${host})`)
      client.remoteAbort(txn, host, { reason: ABORT_REASON }).catch(err => write(`(abort failed: ${printable((err as Error).message)})`))
    }
  }
  // Also for helpers awaited at top level: Node's REPL interrupts the await; we stop the remote work.
  server.prependListener('SIGINT', onSigint)

  async function setTarget (name: string | undefined): Promise<void> {
    if (name === undefined || name.trim() === '') {
      target = undefined
      server.setPrompt(promptFor(undefined))
      return
    }
    use(await reach(client, name))
  }

  function use (node: { host: string, name: string }): void {
    target = node.host
    server.setPrompt(promptFor(node.host))
    write(`plain input now evaluates on ${printable(node.name, 63)} (${printable(node.host, 200)}); ".host" alone returns to local evaluation`)
  }
  if (first !== undefined) use(first)

  server.defineCommand('host', {
    help: 'Evaluate plain input on node NAME (host:port or a peer name); ".host" alone evaluates locally',
    action (name: string) {
      this.clearBufferedCommand()
      setTarget(name).then(
        () => { if (name.trim() === '') write('plain input now evaluates locally') },
        err => write(`cannot use ${printable(name.trim(), 200)}: ${printable((err as Error).message)}`)
      ).finally(() => this.displayPrompt())
    }
  })
  server.defineCommand('hosts', {
    help: 'List the peers this REPL knows (names usable with .host and the helpers)',
    action () {
      this.clearBufferedCommand()
      Promise.resolve(options.peers?.() ?? []).then(
        names => write(names.length === 0 ? '(no peers known: add "name host:port" lines to the peers file, or enable discovery)' : names.map(n => printable(n, 63)).join('\n')),
        err => write(`cannot list peers: ${printable((err as Error).message)}`)
      ).finally(() => this.displayPrompt())
    }
  })

  // Tab completion: peer names after ".host ", JavaScript otherwise.
  const jsComplete = server.completer as (line: string, cb: (err: Error | null, result?: [string[], string]) => void) => void
  ;(server as unknown as { completer: unknown }).completer = (line: string, cb: (err: Error | null, result?: [string[], string]) => void): void => {
    const m = /^\s*\.host\s+(\S*)$/.exec(line)
    if (m === null) { jsComplete.call(server, line, cb); return }
    const partial = m[1]!
    Promise.resolve(options.peers?.() ?? []).then(
      names => cb(null, [names.filter(n => n.startsWith(partial)), partial]),
      () => cb(null, [[], partial])
    )
  }

  if (options.historyFile !== undefined && terminal) {
    await new Promise<void>(resolve => server.setupHistory(options.historyFile!, () => resolve()))
  }
  const closed = new Promise<void>(resolve => server.once('exit', () => {
    const settle = async (): Promise<void> => { while (inflight.size > 0) await Promise.allSettled([...inflight]) }
    void settle().then(resolve)
  }))
  return { server, get target () { return target }, closed, setTarget }
}

/** Check that `name` (host:port or a peer name) answers; resolves with it and the node's own name. */
async function reach (client: Client, name: string): Promise<{ host: string, name: string }> {
  const host = name.trim()
  return { host, name: (await client.ping(host)).name }
}

/** A SyntaxError that more input could fix (an open brace, a half template...), or undefined. */
function incompleteInput (code: string): SyntaxError | undefined {
  try {
    // Only "needs more input" errors matter here; anything else (a top-level await, a real
    // mistake) goes to the node, which runs the form and reports its own errors.
    new Script(code)
    return undefined
  } catch (err) {
    if (err instanceof SyntaxError && /Unexpected end of input|Unterminated template|missing \) after/.test(err.message)) return err
    return undefined // a real syntax error: the node reports it
  }
}

/** Make an error print as the remote error: its node, code, name, message and remote stack. */
/** Outcomes and errors whose console output was printed in full as it streamed: not printed again. */
const outputShown = new WeakSet<object>()

function readable (err: unknown): Error {
  if (!(err instanceof Error)) return new Error(String(err))
  let text: string
  if (err instanceof RemoteEvalError) {
    // Everything here but the code came from the node: escaped, so it cannot act on the terminal.
    const where = err.node !== undefined ? ` on ${printable(err.node, 63)}` : ''
    const txn = err.txn !== undefined ? ` (txn ${printable(err.txn, 120)})` : ''
    const message = printable(err.message, 8192)
    const head = err.code === 'EVAL_ERROR' ? `${printable(err.remoteName, 200)}: ${message}` : `${err.code}: ${message}`
    // The remote stack's first line repeats name and message (already in the head); only
    // its frames follow. (Node's REPL prefixes the first line that looks like an error
    // with "Uncaught", so a repeated "TypeError: ..." line would read as a second error.)
    const frames = stackFrames(err.remoteStack, err.remoteName, err.message)
    text = `Remote error${where}${txn}: ${head}` + (frames !== '' ? `\n--- remote stack ---\n${frames}` : '')
    if (err.output !== '' && !outputShown.has(err)) text = `${terminalText(err.output.replace(/\n$/, ''))}\n${text}`
  } else if (err instanceof EvalMeshError) {
    text = `${err.code}: ${printable(err.message, 8192)}`
  } else {
    return err
  }
  Object.defineProperty(err, inspect.custom, { value: () => text, enumerable: false, configurable: true })
  return err
}

import { existsSync, readFileSync, writeFileSync, chmodSync } from 'node:fs'
import { join } from 'node:path'
import { createInterface } from 'node:readline'
import { Client, ControlSession, formatHost } from '@evalmesh/client'
import { readSeedsFile } from '@evalmesh/discovery'
import { createMonitor, traceLine } from '@evalmesh/monitor'
import { CONTROL_SOCKET, printable, type TraceEvent } from '@evalmesh/protocol'
import { startRepl } from '@evalmesh/repl'
import type { EvalServer } from '@evalmesh/server'
import { CommandError, UsageError, int, str, type Command } from '../args.js'
import { bookOf, clientFor, givenHost, localNodeOf, stateDirOf, targetOf } from '../context.js'
import { jsonOk, safeJson } from '../output.js'
import { runNode, serveOptions } from './serve.js'

const hostOption = { host: { type: 'string', short: 'H' } } as const

// ---- monitor ------------------------------------------------------------------

export const monitorCmd: Command = {
  name: 'monitor',
  summary: 'the live status window: running, queued and done work, policy, peers, trace',
  usage: `evalmesh monitor [--host H] [--mesh] [--refresh MS]

  --host H       the node to watch: host:port or a peer name (default: the local node,
                 the one most recently started from the state dir; see README)
  --mesh         the whole mesh: a nodes pane with every node known (the peers file,
                 and the watched node's discovery), each up or down with its lists,
                 load and policy; Enter on a node watches it
  --refresh MS   poll interval (default 500)

  Keys: Tab moves between panes, Enter shows a transaction's detail (form, client,
  timings, result or error, console output, trace), / filters the lists, s sorts them,
  d/Delete aborts the selected running or queued transaction (after y/n), t toggles
  tracing, c clears the trace pane, g edits gags, ? shows help, q quits.`,
  options: { ...hostOption, refresh: { type: 'string' }, mesh: { type: 'boolean' } },
  run: async (p) => {
    if (process.stdout.isTTY !== true || process.stdin.isTTY !== true) {
      throw new UsageError('the monitor needs a terminal; for scripts use `evalmesh status`, `evalmesh trace --follow` or `evalmesh ctl`')
    }
    const client = clientFor(p)
    try {
      const opts: Parameters<typeof createMonitor>[0] = { client, host: targetOf(p) }
      // A host that names no node is an error here, before the window covers the terminal.
      await client.locate(opts.host)
      const refreshMs = int(p, 'refresh'); if (refreshMs !== undefined) opts.refreshMs = refreshMs
      if (p.values.mesh === true) {
        opts.mesh = true
        // The peers file is read at each pass, so nodes added to it appear.
        const peersFile = join(stateDirOf(p), 'peers')
        opts.nodes = () => {
          try {
            return existsSync(peersFile) ? readSeedsFile(peersFile).map(s => ({ name: s.name, host: formatHost(s.address, s.port), source: 'peers file' })) : []
          } catch {
            return []
          }
        }
      }
      await createMonitor(opts).closed
      return 0
    } finally {
      client.close()
    }
  }
}

// ---- trace --------------------------------------------------------------------

export const traceCmd: Command = {
  name: 'trace',
  summary: 'show a node\'s trace: admission decisions, queue, start, finish, abort, errors',
  usage: `evalmesh trace [--host H] [--on | --off] [--clear] [--follow] [--interval MS] [--json]

  --host H       the node (default: the local node; see README)
  --on / --off   turn tracing on or off on the node first (it is off by default)
  --clear        empty the node's trace ring first
  --follow, -f   keep printing new events until Ctrl-C (survives the node restarting;
                 with --on, tracing is turned on again on the restarted node)
  --json         {"ok":true,"value":{"on","lastSeq","events"}}; with --follow, one
                 {"ok":true,"value":EVENT} line per event (seq, time, kind, txn, peer, detail)

  Columns: time, kind, txn (its tail), peer, detail.`,
  options: { ...hostOption, on: { type: 'boolean' }, off: { type: 'boolean' }, clear: { type: 'boolean' }, follow: { type: 'boolean', short: 'f' }, interval: { type: 'string' } },
  run: async (p) => {
    if (p.values.on === true && p.values.off === true) throw new UsageError('give --on or --off, not both')
    // With no --host the local node is looked up again after a loss: restarted, it may listen elsewhere.
    const given = givenHost(p)
    let host = given ?? localNodeOf(p)
    const json = p.values.json === true
    const follow = p.values.follow === true
    const intervalMs = Math.max(50, int(p, 'interval') ?? 500)
    const print = (e: TraceEvent): void => { console.log(json ? jsonOk(e) : traceLine(e)) }
    const client = clientFor(p)
    try {
      const first: Parameters<Client['trace']>[1] = { since: 0 }
      if (p.values.on === true) first.on = true
      if (p.values.off === true) first.on = false
      if (p.values.clear === true) first.clear = true
      const r = await client.trace(host, first)
      if (json && !follow) console.log(jsonOk({ on: r.on, lastSeq: r.lastSeq, events: r.events }))
      else for (const e of r.events) print(e)
      let since = r.events.at(-1)?.seq ?? r.lastSeq
      if (!json) {
        if (p.values.on === true || p.values.off === true) console.error(`(tracing is now ${r.on ? 'on' : 'off'} at ${printable(host, 200)})`)
        else if (!r.on) console.error(`(tracing is off at ${printable(host, 200)}; --on turns it on)`)
      }
      if (!follow) return 0

      let stop!: () => void
      const stopped = new Promise<void>(resolve => { stop = resolve })
      const onSigint = (): void => stop()
      process.once('SIGINT', onSigint)
      process.once('SIGTERM', onSigint)
      let lost = false
      try {
        while (true) {
          const tick = new Promise<'tick'>(resolve => { const t = setTimeout(() => resolve('tick'), intervalMs); stopped.then(() => clearTimeout(t), () => {}) })
          if (await Promise.race([tick, stopped.then(() => 'stop' as const)]) === 'stop') break
          try {
            if (lost && given === undefined) host = localNodeOf(p)
            let next = await client.request(host, { kind: 'trace', since }, 5000)
            if (lost) { console.error(`(reconnected to ${printable(host, 200)})`); lost = false }
            if (next.lastSeq < since) { console.error(`(${printable(host, 200)} restarted; its trace starts again)`); since = 0 }
            // A restarted node starts with tracing off: --on asked for it on, so it is turned on again.
            if (p.values.on === true && !next.on) {
              next = await client.request(host, { kind: 'trace', since, on: true }, 5000)
              console.error(`(tracing was off at ${printable(host, 200)}, restarted; turned it on again)`)
            }
            for (const e of next.events) { if (e.seq > since) { print(e); since = e.seq } }
          } catch (err) {
            if (!lost) console.error(`(lost ${printable(host, 200)}: ${printable((err as Error).message, 2000)}; retrying...)`)
            lost = true
          }
        }
      } finally {
        process.off('SIGINT', onSigint)
        process.off('SIGTERM', onSigint)
      }
      return 0
    } finally {
      client.close()
    }
  }
}

// ---- ctl ----------------------------------------------------------------------

function loadHistory (file: string): string[] {
  if (!existsSync(file)) return []
  return readFileSync(file, 'utf8').split('\n').filter(l => l.trim() !== '').reverse().slice(0, 500)
}

function saveHistory (file: string, newestFirst: string[]): void {
  try {
    writeFileSync(file, [...newestFirst].reverse().join('\n') + '\n', { mode: 0o600 })
    chmodSync(file, 0o600)
  } catch { /* history is a convenience; a read-only state dir must not stop the prompt */ }
}

export const ctlCmd: Command = {
  name: 'ctl',
  summary: 'talk to the local node\'s control port (Unix socket in its state dir)',
  usage: `evalmesh ctl [--state-dir D] [--socket PATH] [COMMAND...]

  With a COMMAND, sends it and prints the JSON reply (exit 1 if the reply is not ok).
  Without one, an interactive prompt with history (<state-dir>/ctl_history).

  Commands: status tasks | status done | status net | status policy | time | kill ID |
            abort TXN [REASON] | gag NAME... | ungag NAME... | hosts NAME... |
            trace on|off|clear | control stop | help`,
  options: { socket: { type: 'string' } },
  run: async (p) => {
    const stateDir = stateDirOf(p)
    const path = str(p, 'socket') ?? join(stateDir, CONTROL_SOCKET)
    const session = await ControlSession.open(path)
    try {
      if (p.positionals.length > 0) {
        const words = [...p.positionals]
        // A bare number is one of this user's transactions, by the state dir's record: the
        // control port would take it as any client's, and abort an unrelated one.
        if (words[0] === 'abort' && words[1] !== undefined && /^\d+$/.test(words[1])) {
          const entry = bookOf(p).find(words[1])
          if (entry === undefined) throw new CommandError('NO_SUCH_TXN', `no transaction ${words[1]} is recorded in this state dir: give the full id (status tasks lists them)`, { txn: words[1] })
          words[1] = entry.txn
        }
        let reply = await session.send(words.join(' '))
        // An abort that aborted nothing did not do what was asked: an error, as `evalmesh abort` says.
        if (words[0] === 'abort' && reply.ok === true && reply.aborted === false) {
          const { ok: _ok, ...rest } = reply
          reply = { ok: false, error: { code: rest.state === 'none' ? 'NO_SUCH_TXN' : 'NOT_ABORTED', message: `${String(words[1])} not aborted (${String(rest.reason)})` }, ...rest }
        }
        // One command prints --json's one shape: the control port's reply fields as the
        // value, and its text errors with a code. (The prompt shows the replies as they come.)
        if (reply.ok === true) {
          const { ok: _ok, ...value } = reply
          console.log(jsonOk(value))
          return 0
        }
        const error = typeof reply.error === 'string' ? { code: reply.needsRestart === true ? 'NEEDS_RESTART' : 'CONTROL_ERROR', message: reply.error } : reply.error
        console.log(safeJson(JSON.stringify({ ...reply, error })))
        return 1
      }
      return await interactive(session, path, join(stateDir, 'ctl_history'))
    } finally {
      session.close()
    }
  }
}

async function interactive (session: ControlSession, path: string, historyFile: string): Promise<number> {
  const tty = process.stdin.isTTY === true
  const history = loadHistory(historyFile)
  const rl = createInterface({ input: process.stdin, output: process.stdout, terminal: tty, history: [...history], historySize: 500, prompt: 'ctl> ' })
  if (tty) console.log(`connected to ${path}; "help" lists commands, Ctrl-D quits`)
  rl.prompt()
  for await (const line of rl) {
    const text = line.trim()
    if (text === 'quit' || text === 'exit') break
    if (text !== '') {
      // Kept by hand: readline only records history on a terminal, and piped sessions count too.
      if (history[0] !== text) history.unshift(text)
      saveHistory(historyFile, history.slice(0, 500))
      try {
        const reply = await session.send(text)
        // The replies quote peers (names, forms, reasons): JSON, with what a terminal acts on as \u escapes.
        console.log(safeJson(tty ? JSON.stringify(reply, null, 2) : JSON.stringify(reply)))
        if (reply.stopped === true) { console.error('(control port stopped)'); break }
      } catch (err) {
        console.error(`error: ${printable((err as Error).message, 2000)}`)
        if (session.closed) break
      }
    }
    rl.prompt()
  }
  rl.close()
  return 0
}

// ---- start --------------------------------------------------------------------

export const startCmd: Command = {
  name: 'start',
  summary: 'run a node and, on a terminal, open the status window on it (npm start)',
  usage: `evalmesh start [serve options] [--no-monitor]

  Starts a node as \`evalmesh serve\` does (same options). When stdin and stdout are a
  terminal, the status window opens on it, with a line saying how to reach the node;
  quitting the window (q) stops the node, after asking while it has work running or
  queued.
  Otherwise (or with --no-monitor) it runs like \`evalmesh serve\`.`,
  options: { ...serveOptions, monitor: { type: 'boolean' } },
  run: async (p) => {
    const wantMonitor = p.values.monitor !== false && process.stdout.isTTY === true && process.stdin.isTTY === true
    if (!wantMonitor) return await runNode(p)
    return await runNode(p, async (server: EvalServer) => {
      const { host, port } = server.address
      const connectTo = host === '0.0.0.0' || host === '::' ? '127.0.0.1' : host
      const client = new Client({ stateDir: server.stateDir, identity: server.identity, trust: server.trust })
      const where = formatHost(connectTo, port)
      // The window covers the terminal, so it carries the banner `serve` prints: how to reach the node.
      const banner = `node "${server.name}" on ${formatHost(host, port)}   try: evalmesh eval '1 + 1' --host ${where}` +
        (server.controlPort !== undefined ? `   control: evalmesh ctl --state-dir ${server.stateDir}` : '')
      const monitor = createMonitor({ client, host: where, banner, quitStops: `node "${server.name}"` })
      // The node stopping (a signal, --minutes) closes the window; closing the window stops the node.
      void server.whenStopped.then(() => monitor.quit())
      await monitor.closed
      client.close()
      void server.stop('the status window was closed')
    })
  }
}

// ---- repl ---------------------------------------------------------------------

export const replCmd: Command = {
  name: 'repl',
  summary: 'a Node REPL with remoteEval, remoteApply, remoteAbort, status and peers at hand',
  usage: `evalmesh repl [--host H]

  --host H     evaluate plain input on node H from the start, and make it the default
               node of the helpers (default: plain input is local; the helpers use the
               local node, the one most recently started from the state dir; see README)

  In scope (awaitable): remoteEval(form, host?), remoteApply(fn, args, host?),
  remoteAbort(txn, host?), remoteEvalAll(...) when the client has it, status(host?),
  peers(), client.
  .host NAME   evaluate plain input on NAME (Tab completes peer names); .host alone: local
  .hosts       list known peers
  Ctrl-C while waiting on a node aborts that transaction; the REPL stays.
  History is kept in <state-dir>/repl_history.`,
  options: { ...hostOption },
  run: async (p) => {
    const stateDir = stateDirOf(p)
    const client = clientFor(p)
    const host = str(p, 'host')
    if (host !== undefined && host.trim() === '') throw new UsageError('--host is empty: give host:port or a peer name')
    // Looked up at each call: a node started after the REPL is found, by the same rule as every command.
    const defaultHost = host ?? ((): string => localNodeOf(p))
    const peersFile = join(stateDir, 'peers')
    const peers = async (): Promise<string[]> => {
      const names = new Set<string>()
      if (existsSync(peersFile)) for (const s of readSeedsFile(peersFile)) names.add(s.name)
      try {
        for (const peer of await client.request(typeof defaultHost === 'string' ? defaultHost : defaultHost(), { kind: 'peers' }, 3000)) names.add(peer.name)
      } catch { /* no discovery on the node, or no node: the peers file is what we know */ }
      return [...names].sort()
    }
    try {
      const opts: Parameters<typeof startRepl>[0] = { client, defaultHost, peers, historyFile: join(stateDir, 'repl_history') }
      if (host !== undefined) opts.target = host
      const r = await startRepl(opts)
      await r.closed
      return 0
    } finally {
      client.close()
    }
  }
}

/** The operator surfaces, for the `commands` array in main.ts. */
export const operatorCommands: Command[] = [startCmd, monitorCmd, traceCmd, ctlCmd, replCmd]

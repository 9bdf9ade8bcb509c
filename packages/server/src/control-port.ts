import { chmodSync, lstatSync, unlinkSync } from 'node:fs'
import { createConnection, createServer, type Server, type Socket } from 'node:net'
import { join } from 'node:path'
import { CONTROL_SOCKET, EvalMeshError, type AbortResult, type NodeLimits, type NodeQuotas, type PolicyRequest, type PolicyState, type StatusWhich, type TxnRecord } from '@evalmesh/protocol'
import type { ServerConnection } from '@evalmesh/transport'
import type { AbortOptions } from './access.js'
import { LIVE_QUOTAS, NeedsRestartError, type DrainOptions, type LiveLimits } from './live-settings.js'
import type { Trace } from './trace.js'

/**
 * The node's operator API as the control port uses it (everything a local operator may
 * do). EvalServer is one; the control port needs nothing else of it.
 */
export interface ControlTarget {
  readonly stateDir: string
  readonly connections: ServerConnection[]
  readonly policy: { readonly state: PolicyState }
  readonly trace: Trace
  status (which?: StatusWhich): TxnRecord[]
  abort (id: string | number, options?: AbortOptions): Promise<AbortResult>
  setPolicy (change: Omit<PolicyRequest, 'kind' | 'id'>, by?: string): PolicyState
  readonly limits: NodeLimits
  readonly quotas: NodeQuotas
  setLimits (change: LiveLimits, by?: string): unknown
  setQuotas (change: Partial<NodeQuotas>, by?: string): unknown
  loadFunctions (path?: string | null, by?: string): Promise<string[]>
  functionNames (): string[]
  drain (options: DrainOptions | null, by?: string): DrainOptions | null
  readonly draining: DrainOptions | null
  once (event: 'stopped', listener: () => void): unknown
  off (event: 'stopped', listener: () => void): unknown
}

/** Longest command line accepted; anything longer is answered with an error and dropped. */
const MAX_LINE = 64 * 1024

/** One JSON object per reply line: `ok` tells success, `error` names the problem. */
export type ControlReply = ({ ok: true } & Record<string, unknown>) | { ok: false, error: string, needsRestart?: true }

export interface ControlPort {
  readonly path: string
  /** Whether `control stop` or close() has shut the port. */
  readonly closed: boolean
  /** Answer one command line as the socket would (also what tests and in-process callers use). */
  run: (line: string) => Promise<ControlReply>
  close: () => Promise<void>
}

const HELP: ReadonlyArray<[string, string]> = [
  ['status tasks', 'running and queued transactions'],
  ['status done', 'done transactions, newest first'],
  ['status net', 'open connections: id, peer, address, age in seconds, requests'],
  ['status policy', 'the admission policy (hosts, gags) and whether tracing is on'],
  ['status drain', 'whether the node drains, and where it sends new work'],
  ['time', 'the node\'s clock, in unix seconds and milliseconds'],
  ['kill ID', 'force-close connection ID (from status net)'],
  ['abort TXN [REASON]', 'abort a queued or running transaction (a txn id or a bare sequence number)'],
  ['gag NAME...', 'add gags: peer names or ids, broadcast, self'],
  ['ungag NAME...', 'remove gags'],
  ['hosts NAME...', 'replace hosts: directed, broadcast and/or peer names ("hosts default" = both modes)'],
  ['trace on|off|clear', 'turn the node\'s trace on or off, or empty its ring'],
  ['limits [NAME=N...]', 'show or change limits live: timeoutMs, memoryMb, concurrency, queue, purgeSeconds'],
  ['quota NAME=N...', `change quotas live: ${LIVE_QUOTAS.join(', ')} (the sandbox's need a restart)`],
  ['functions [load [PATH] | none]', 'list operator functions, load the functions module again (or PATH), or drop it'],
  ['drain [retry=HOST:PORT] [after=MS] [elsewhere=NAME@HOST:PORT,...] [REASON] | drain off', 'refuse new work with DRAINING, saying where to retry; running and queued work goes on'],
  ['control stop', 'close this control port (the node keeps running)'],
  ['help', 'this list']
]

class ControlError extends Error {}

const tooLong: ControlReply = { ok: false, error: `command line longer than ${MAX_LINE} bytes; ignored` }

/**
 * The control port (after Mongrel2's): a Unix socket in the node's state directory,
 * owner-only, speaking one command per line and answering one JSON object per line.
 * Refuses to start when another live process answers on the socket; removes a stale one.
 * Closes itself when the node stops.
 */
export async function startControlPort (server: ControlTarget, path: string = join(server.stateDir, CONTROL_SOCKET)): Promise<ControlPort> {
  await claimSocketPath(path)
  const sockets = new Set<Socket>()
  const net: Server = createServer({ allowHalfOpen: false }, socket => serveSocket(socket))
  let closed = false
  let closing: Promise<void> | undefined

  // The umask covers the moment between bind and chmod; the chmod covers platforms
  // where the umask does not apply to socket files.
  const oldMask = process.umask(0o177)
  try {
    await new Promise<void>((resolve, reject) => {
      net.once('error', reject)
      net.listen(path, () => { net.off('error', reject); resolve() })
    })
  } finally {
    process.umask(oldMask)
  }
  chmodSync(path, 0o600)
  net.on('error', () => { /* a listening Unix socket has no further errors worth a crash */ })

  const onStopped = (): void => { void close() }
  server.once('stopped', onStopped)

  async function close (): Promise<void> {
    closing ??= (async () => {
      closed = true
      server.off('stopped', onStopped)
      for (const s of sockets) s.end()
      await new Promise<void>(resolve => net.close(() => resolve()))
      for (const s of sockets) s.destroy()
      // net.close() unlinks the socket file; an already-gone file is fine.
      try { unlinkSync(path) } catch { }
    })()
    return await closing
  }

  function serveSocket (socket: Socket): void {
    sockets.add(socket)
    socket.setEncoding('utf8')
    socket.on('close', () => sockets.delete(socket))
    socket.on('error', () => { /* the peer went away; 'close' follows */ })
    let buffer = ''
    let discarding = false
    let chain = Promise.resolve()
    socket.on('data', (chunk: string) => {
      buffer += chunk
      let nl: number
      while ((nl = buffer.indexOf('\n')) >= 0) {
        const line = buffer.slice(0, nl)
        buffer = buffer.slice(nl + 1)
        if (discarding) { discarding = false; continue }
        // Answer in order even when a command (abort) takes a while.
        if (line.length > MAX_LINE) chain = chain.then(() => send(socket, tooLong))
        else chain = chain.then(async () => await answer(socket, line))
      }
      if (buffer.length > MAX_LINE) {
        buffer = ''
        if (!discarding) chain = chain.then(() => send(socket, tooLong))
        discarding = true
      }
    })
  }

  async function answer (socket: Socket, line: string): Promise<void> {
    if (line.trim() === '') return
    const reply = await run(line)
    send(socket, reply)
    if (reply.ok && reply.stopped === true) void close()
  }

  function send (socket: Socket, reply: ControlReply): void {
    if (!socket.destroyed && socket.writable) socket.write(JSON.stringify(reply) + '\n')
  }

  async function run (line: string): Promise<ControlReply> {
    try {
      if (closed) throw new ControlError('the control port is closed')
      return { ok: true, ...await execute(server, line.replace(/\r$/, '')) }
    } catch (err) {
      if (err instanceof NeedsRestartError) return { ok: false, error: err.message, needsRestart: true }
      if (err instanceof ControlError || err instanceof EvalMeshError) return { ok: false, error: err.message }
      return { ok: false, error: `internal error: ${(err as Error).message ?? String(err)}` }
    }
  }

  return {
    path,
    get closed () { return closed },
    run,
    close
  }
}

async function execute (server: ControlTarget, line: string): Promise<Record<string, unknown>> {
  const words = line.trim().split(/\s+/)
  const [cmd = '', ...args] = words
  const need = (n: number, usage: string): void => {
    if (args.length < n) throw new ControlError(`"${cmd}" needs ${usage}`)
  }
  const noMore = (n: number, usage: string): void => {
    if (args.length > n) throw new ControlError(`"${cmd}" takes ${usage}; unexpected "${args.slice(n).join(' ')}"`)
  }
  switch (cmd.toLowerCase()) {
    case 'help':
      return { commands: HELP.map(([usage, what]) => ({ usage, what })) }
    case 'time': {
      noMore(0, 'no arguments')
      const ms = Date.now()
      return { time: Math.floor(ms / 1000), ms }
    }
    case 'status': {
      need(1, 'what: tasks, done, net or policy')
      noMore(1, 'one word: tasks, done, net or policy')
      switch (args[0]!.toLowerCase()) {
        case 'tasks': {
          const running = server.status('running')
          const input = server.status('input')
          return { total: running.length + input.length, running, input }
        }
        case 'done': {
          const done = server.status('done')
          return { total: done.length, done }
        }
        case 'net': {
          const now = Date.now()
          const connections = server.connections.map(c => ({
            id: c.id, peer: c.peer.name, peerId: c.peer.id, address: c.peer.address, port: c.peer.port,
            trustedBy: c.peer.trustedBy, self: c.peer.self, tls: c.peer.tls, integrity: c.peer.integrity, seconds: Math.round((now - c.openedAt) / 100) / 10, requests: c.requests
          }))
          return { total: connections.length, connections }
        }
        case 'policy':
          return { ...server.policy.state, trace: server.trace.enabled }
        case 'drain':
          return { draining: server.draining }
        default:
          throw new ControlError(`unknown status "${args[0]}": want tasks, done, net or policy`)
      }
    }
    case 'kill': {
      need(1, 'a connection ID (see status net)')
      noMore(1, 'one connection ID')
      const id = Number(args[0])
      if (!Number.isInteger(id)) throw new ControlError(`"${args[0]}" is not a connection id (a number from status net)`)
      const conn = server.connections.find(c => c.id === id)
      if (conn === undefined) throw new ControlError(`no connection ${id} (status net lists the open ones)`)
      conn.close()
      return { killed: id, peer: conn.peer.name }
    }
    case 'abort': {
      need(1, 'a transaction id and optionally a reason')
      const raw = args[0]!
      const id: string | number = /^\d+$/.test(raw) ? Number(raw) : raw
      const reason = args.slice(1).join(' ')
      const r = await server.abort(id, reason === '' ? { reason: 'aborted via the control port' } : { reason })
      return { ...r }
    }
    case 'gag': case 'ungag': {
      need(1, 'one or more names (peer names or ids, broadcast, self)')
      const policy = server.setPolicy(cmd === 'gag' ? { gag: args } : { ungag: args }, 'control port')
      return { ...policy }
    }
    case 'hosts': {
      need(1, 'one or more of directed, broadcast, peer names (or "default")')
      const hosts = args.length === 1 && args[0]!.toLowerCase() === 'default' ? [] : args
      return { ...server.setPolicy({ hosts }, 'control port') }
    }
    case 'trace': {
      need(1, 'on, off or clear')
      noMore(1, 'one word: on, off or clear')
      const what = args[0]!.toLowerCase()
      if (what === 'on' || what === 'off') server.trace.setEnabled(what === 'on', 'control port')
      else if (what === 'clear') server.trace.clear('control port')
      else throw new ControlError(`trace takes on, off or clear, not "${args[0]}"`)
      return { trace: server.trace.enabled, lastSeq: server.trace.lastSeq }
    }
    case 'limits': {
      if (args.length === 0) return { limits: server.limits, quotas: server.quotas }
      const change: LiveLimits = {}
      for (const [k, v] of assignments(args, LIMIT_NAMES)) change[LIMIT_NAMES[k]!] = v
      return { limits: server.setLimits(change, 'control port') }
    }
    case 'quota': case 'quotas': {
      need(1, `NAME=N: ${Object.keys(server.quotas).join(', ')}`)
      const names = Object.fromEntries(Object.keys(server.quotas).map(k => [k.toLowerCase(), k])) as Record<string, keyof NodeQuotas>
      const change: Partial<NodeQuotas> = {}
      for (const [k, v] of assignments(args, names)) change[names[k]!] = v
      return { quotas: server.setQuotas(change, 'control port') }
    }
    case 'functions': {
      if (args.length === 0) return { functions: server.functionNames() }
      const what = args[0]!.toLowerCase()
      if (what === 'none') { noMore(1, '"none" alone'); return { module: null, loaded: await server.loadFunctions(null, 'control port') } }
      if (what !== 'load') throw new ControlError(`functions takes load [PATH] or none, not "${args[0]}"`)
      // The rest of the line is the path (it may hold spaces; runs of them become one).
      const path = args.length > 1 ? args.slice(1).join(' ') : undefined
      const loaded = await server.loadFunctions(path, 'control port').catch((err: Error) => { throw new ControlError(`functions not loaded (the old ones stay): ${err.message}`) })
      return { loaded, functions: server.functionNames() }
    }
    case 'drain': {
      if (args.length === 1 && args[0]!.toLowerCase() === 'off') return { draining: server.drain(null, 'control port') }
      const options: DrainOptions = {}
      const reason: string[] = []
      for (const a of args) {
        const eq = a.indexOf('=')
        const key = eq < 0 ? '' : a.slice(0, eq).toLowerCase()
        const value = a.slice(eq + 1)
        if (key === 'retry' && ADDRESS.test(value)) options.retryAt = value
        else if (key === 'elsewhere') options.elsewhere = value.split(',').filter(e => e !== '')
        else if (key === 'after' && /^\d+$/.test(value)) options.retryAfterMs = Number(value)
        else if (key === 'retry' || key === 'after') throw new ControlError(`drain: "${a}" is not ${key === 'retry' ? 'retry=HOST:PORT' : 'after=MS'}`)
        else reason.push(a)
      }
      if (reason.length > 0) options.reason = reason.join(' ')
      return { draining: server.drain(options, 'control port') }
    }
    case 'control': {
      need(1, '"stop"')
      if (args[0]!.toLowerCase() !== 'stop' || args.length > 1) throw new ControlError(`unknown control command "${args.join(' ')}": only "control stop"`)
      return { stopped: true }
    }
    default:
      throw new ControlError(`unknown command "${cmd.slice(0, 40)}"; try help`)
  }
}

/** The limits `limits NAME=N` sets, by their lower-case names. */
const LIMIT_NAMES: Record<string, keyof LiveLimits> = { timeoutms: 'timeoutMs', memorymb: 'memoryMb', concurrency: 'concurrency', queue: 'queueLength', queuelength: 'queueLength', purgeseconds: 'purgeSeconds' }

/** `host:port`, `[v6]:port`. */
const ADDRESS = /^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+):\d{1,5}$/

/** `NAME=N` words, names matched case-insensitively against `names`; anything else is an error naming it. */
function assignments (args: string[], names: Record<string, unknown>): Array<[string, number]> {
  return args.map(a => {
    const m = /^([A-Za-z]+)=(\d+)$/.exec(a)
    if (m === null) throw new ControlError(`"${a}" is not NAME=N (a whole number)`)
    const k = m[1]!.toLowerCase()
    if (!(k in names)) throw new ControlError(`unknown name "${m[1]}": want ${Object.values(names).filter((v, i, all) => all.indexOf(v) === i).join(', ')}`)
    return [k, Number(m[2])]
  })
}

/**
 * Make `path` free for a new socket: refuse a path held by a live listener or by
 * anything that is not a socket; unlink a socket nobody answers on (a crashed node's).
 */
async function claimSocketPath (path: string): Promise<void> {
  let isSocket: boolean
  try {
    isSocket = lstatSync(path).isSocket()
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return
    throw err
  }
  if (!isSocket) throw new Error(`control port: ${path} exists and is not a socket; not replacing it`)
  const live = await new Promise<boolean>(resolve => {
    const probe = createConnection(path)
    probe.once('connect', () => { probe.destroy(); resolve(true) })
    probe.once('error', () => resolve(false))
  })
  if (live) throw new Error(`control port: ${path} is in use by a running node (stop it, or give this node another --state-dir)`)
  unlinkSync(path)
}

import { existsSync, readFileSync } from 'node:fs'
import { join, resolve } from 'node:path'
import { parseArgs } from 'node:util'
import { defaultStateDir } from '@evalmesh/trust'
import { ConfigError, dependencyOrder, parseConfig, planReload, type NodeSpec } from './config.js'
import { ConfigDb } from './config-db.js'
import { addressOf, applyTrust, controlCommand, describeNode, functionsDigest, livePid, startNode, stopPid, type NodeLoad, type StopOptions } from './nodes.js'
import { RunDir } from './run-dir.js'
import { Supervisor } from './supervisor.js'

export const FLEET_USAGE = `evalmesh fleet <command> [options]       (docs/fleet.md)

  load FILE                 read a fleet config file (JSON) into the config database
  config                    show the database: where it came from and every node's settings
  servers                   list the nodes: name, uuid, address, state dir, dependencies
  log [--limit N]           the deployment log: every fleet command, who ran it, where, when
  commit -m MSG             add a message to the deployment log
  start   -name N | -uuid U | -every     start nodes (in dependency order)
  stop    -name N | -uuid U | -every     stop nodes: drain (new work refused, running work done), SIGTERM
          [-murder] [--grace S]          -murder: SIGKILL at once; --grace: SIGKILL after S s
  reload  -name N | -uuid U | -every     apply the database to running nodes: policy, limits,
                                         quotas, functions live over the control port; port,
                                         listen and the rest by drain and restart
  running [-name N | -uuid U | -every]   pid, uptime, restarts, address and load (default -every)
  supervise                 keep every node running (restarts with back-off, a restart budget);
                            SIGTERM stops the nodes in reverse dependency order

  --db FILE        the config database (default <state-dir>/fleet.db)
  --state-dir D    (default $EVALMESH_STATE_DIR or ~/.evalmesh)
  --json           machine-readable output
  -name, -uuid, -every, -murder, -grace, -db are also spelled --name, --uuid, ...`

class FleetUsageError extends Error {}

/** The fleet's options (m2sh's, each also with two dashes), for its own parser and the CLI's. */
export const FLEET_OPTIONS = {
  name: { type: 'string', multiple: true },
  uuid: { type: 'string', multiple: true },
  every: { type: 'boolean' },
  murder: { type: 'boolean' },
  grace: { type: 'string' },
  message: { type: 'string', short: 'm' },
  db: { type: 'string' },
  'state-dir': { type: 'string' },
  json: { type: 'boolean' },
  limit: { type: 'string' },
  timeout: { type: 'string' },
  help: { type: 'boolean', short: 'h' }
} as const

/** m2sh spells long options with one dash (-name, -every): accept both. */
export function normalizeArgs (argv: readonly string[]): string[] {
  const out: string[] = []
  let rest = false
  for (const a of argv) {
    if (rest || a === '--') { rest = true; out.push(a); continue }
    out.push(/^-[a-z][a-z-]+(=.*)?$/.test(a) ? `-${a}` : a)
  }
  return out
}

export interface FleetIo {
  out: (text: string) => void
  err: (text: string) => void
}

const stdio: FleetIo = {
  out: (t) => process.stdout.write(t.endsWith('\n') ? t : t + '\n'),
  err: (t) => process.stderr.write(t.endsWith('\n') ? t : t + '\n')
}

/** `evalmesh fleet ARGS`: resolves with the exit code (0 ok, 1 a node or command failed, 2 usage). */
export async function fleetMain (argv: readonly string[], io: FleetIo = stdio): Promise<number> {
  let parsed
  try {
    parsed = parseArgs({ args: normalizeArgs(argv), options: FLEET_OPTIONS, allowPositionals: true, strict: true })
  } catch (err) {
    io.err(`evalmesh fleet: ${(err as Error).message}\n\n${FLEET_USAGE}`)
    return 2
  }
  const { values: v, positionals } = parsed
  const [command, ...rest] = positionals
  if (v.help === true || command === undefined || command === 'help') {
    io.out(FLEET_USAGE)
    return command === undefined && v.help !== true ? 2 : 0
  }
  const stateDir = v['state-dir'] ?? defaultStateDir()
  const dbPath = resolve(v.db ?? join(stateDir, 'fleet.db'))
  const create = command === 'load' || command === 'commit'
  const json = v.json === true
  if (!create && !existsSync(dbPath)) {
    const message = `no fleet database at ${dbPath} (evalmesh fleet load FILE makes one; --db names another)`
    if (json) io.out(jsonError('NO_FLEET_DB', message))
    io.err(`evalmesh fleet ${command}: ${message}`)
    return 1
  }
  let db: ConfigDb | undefined
  try {
    db = new ConfigDb(dbPath, { create })
    const ctx: Ctx = { db, io, json, values: v, rest, command }
    const handler = HANDLERS[command]
    if (handler === undefined) throw new FleetUsageError(`unknown command "${command}"`)
    const entry = db.log(command, [...argv])
    ctx.logId = entry
    return await handler(ctx)
  } catch (err) {
    if (err instanceof FleetUsageError) {
      if (json) io.out(jsonError('USAGE', err.message))
      io.err(`evalmesh fleet ${command}: ${err.message}\n\n${FLEET_USAGE}`)
      return 2
    }
    if (json) io.out(jsonError('FLEET_ERROR', (err as Error).message))
    io.err(`evalmesh fleet ${command}: ${(err as Error).message}`)
    return 1
  } finally {
    db?.close()
  }
}

/**
 * --json's one shape, as every evalmesh command prints it (README "Output for scripts"):
 * {ok: true, value} on success, {ok: false, error: {code, message, ...}} on failure,
 * and the exit status is 0 exactly when ok is true.
 */
function jsonOk (value: unknown): string {
  return JSON.stringify({ ok: true, value })
}

function jsonError (code: string, message: string, extra: Record<string, unknown> = {}): string {
  return JSON.stringify({ ok: false, error: { code, message, ...extra } })
}

/** Per-node results of start, stop or reload: an error if any node failed, naming them, with every result. */
function jsonResults (results: Array<Record<string, unknown>>, failed: number): string {
  if (failed === 0) return jsonOk(results)
  const names = results.filter(r => r.error !== undefined).map(r => String(r.name))
  return jsonError('NODES_FAILED', `${failed} of ${results.length} node(s) failed: ${names.join(', ')}`, { results })
}

interface Ctx {
  db: ConfigDb
  io: FleetIo
  json: boolean
  values: { name?: string[], uuid?: string[], every?: boolean, murder?: boolean, grace?: string, message?: string, limit?: string, timeout?: string }
  rest: string[]
  command: string
  logId?: number
}

function number (v: string | undefined, what: string): number | undefined {
  if (v === undefined) return undefined
  const n = Number(v)
  if (!Number.isFinite(n) || n < 0) throw new FleetUsageError(`${what} wants a non-negative number, not "${v}"`)
  return n
}

/** The nodes -name/-uuid/-every pick, in dependency order. */
function select (ctx: Ctx, defaultEvery = false): NodeSpec[] {
  const all = ctx.db.servers()
  if (all.length === 0) throw new Error('the database has no nodes (evalmesh fleet load FILE)')
  const names = ctx.values.name ?? []
  const uuids = ctx.values.uuid ?? []
  if (ctx.values.every === true || (defaultEvery && names.length === 0 && uuids.length === 0)) return dependencyOrder(all)
  if (names.length === 0 && uuids.length === 0) throw new FleetUsageError(`${ctx.command} needs -name N, -uuid U or -every`)
  const picked = new Set<string>()
  for (const n of names) {
    if (!all.some(s => s.name === n)) throw new Error(`no node named "${n}" (evalmesh fleet servers lists them)`)
    picked.add(n)
  }
  for (const u of uuids) {
    const s = all.find(x => x.uuid === u)
    if (s === undefined) throw new Error(`no node with uuid "${u}" (evalmesh fleet servers lists them)`)
    picked.add(s.name)
  }
  return dependencyOrder(all).filter(s => picked.has(s.name))
}

function runDirOf (ctx: Ctx): RunDir {
  return new RunDir(ctx.db.runDir)
}

function who (): string {
  return `${process.env.USER ?? 'someone'} (pid ${process.pid}) at ${new Date().toISOString()}`
}

type Handler = (ctx: Ctx) => Promise<number>

const HANDLERS: Record<string, Handler> = {
  async load (ctx) {
    const file = ctx.rest[0]
    if (file === undefined || ctx.rest.length > 1) throw new FleetUsageError('load takes one FILE')
    const path = resolve(file)
    let text: string
    try { text = readFileSync(path, 'utf8') } catch (err) { throw new Error(`cannot read ${path}: ${(err as Error).message}`) }
    const config = parseConfig(text, path, ctx.db.uuids())
    ctx.db.load(config, path)
    void new RunDir(config.runDir)
    ctx.db.note(ctx.logId!, `loaded ${config.nodes.length} node(s) from ${path}`)
    if (ctx.json) ctx.io.out(jsonOk({ db: ctx.db.path, file: path, nodes: config.nodes.map(n => ({ name: n.name, uuid: n.uuid })) }))
    else ctx.io.out(`loaded ${config.nodes.length} node(s) from ${path} into ${ctx.db.path}: ${config.nodes.map(n => n.name).join(', ')}`)
    return 0
  },

  async config (ctx) {
    const meta = ctx.db.metaAll()
    const servers = ctx.db.servers()
    if (ctx.json) { ctx.io.out(jsonOk({ db: ctx.db.path, ...meta, servers })); return 0 }
    const lines = [`database: ${ctx.db.path}`, ...Object.entries(meta).map(([k, val]) => `${k}: ${val}`), '']
    for (const s of servers) {
      lines.push(`[${s.name}]`)
      for (const [k, val] of Object.entries(s)) if (k !== 'name') lines.push(`  ${k.padEnd(10)} ${typeof val === 'string' ? val : JSON.stringify(val)}`)
    }
    ctx.io.out(lines.join('\n'))
    return 0
  },

  async servers (ctx) {
    const servers = ctx.db.servers()
    if (ctx.json) { ctx.io.out(jsonOk(servers.map(s => ({ name: s.name, uuid: s.uuid, address: addressOf(s), stateDir: s.stateDir, after: s.after })))); return 0 }
    ctx.io.out(table(['NAME', 'UUID', 'ADDRESS', 'AFTER', 'STATE-DIR'], servers.map(s => [s.name, s.uuid, addressOf(s), s.after.join(',') || '-', s.stateDir])))
    return 0
  },

  async log (ctx) {
    const entries = ctx.db.entries(number(ctx.values.limit, '--limit'))
    if (ctx.json) { ctx.io.out(jsonOk(entries)); return 0 }
    ctx.io.out(entries.map(e => `${String(e.id).padStart(4)} ${e.at} ${e.user}@${e.host} fleet ${e.args.map(quote).join(' ')}${e.message !== null ? `  # ${e.message}` : ''}`).join('\n'))
    return 0
  },

  async commit (ctx) {
    const message = ctx.values.message ?? (ctx.rest.length > 0 ? ctx.rest.join(' ') : undefined)
    if (message === undefined || message.trim() === '') throw new FleetUsageError('commit needs -m MESSAGE')
    ctx.db.note(ctx.logId!, message)
    if (ctx.json) ctx.io.out(jsonOk({ id: ctx.logId }))
    else ctx.io.out(`committed #${ctx.logId}: ${message}`)
    return 0
  },

  async start (ctx) {
    const run = runDirOf(ctx)
    const timeoutMs = (number(ctx.values.timeout, '--timeout') ?? 30) * 1000
    const results: Array<Record<string, unknown>> = []
    let failed = 0
    for (const spec of select(ctx)) {
      const pid = livePid(run, spec, msg => ctx.io.err(msg))
      if (pid !== undefined) {
        run.release(spec.name)
        results.push({ name: spec.name, pid, already: true })
        if (!ctx.json) ctx.io.out(`${spec.name}: already running (pid ${pid})`)
        continue
      }
      // Held while it starts, so that a supervisor adopts it rather than starting a second one.
      run.hold(spec.name, `starting: fleet start by ${who()}`)
      try {
        const started = await startNode(spec, run, { timeoutMs, fleet: ctx.db.servers() })
        started.child.unref()
        results.push({ name: spec.name, pid: started.pid, address: addressOf(spec) })
        if (!ctx.json) ctx.io.out(`${spec.name}: started, pid ${started.pid} on ${addressOf(spec)} (log ${spec.log})`)
      } catch (err) {
        failed++
        results.push({ name: spec.name, error: (err as Error).message })
        ctx.io.err(`${spec.name}: ${(err as Error).message}`)
      } finally {
        run.release(spec.name)
      }
    }
    if (ctx.json) ctx.io.out(jsonResults(results, failed))
    ctx.db.note(ctx.logId!, results.map(r => `${String(r.name)} ${r.error !== undefined ? 'failed' : `pid ${String(r.pid)}`}`).join(', '))
    return failed > 0 ? 1 : 0
  },

  async stop (ctx) {
    const run = runDirOf(ctx)
    const grace = number(ctx.values.grace, '--grace')
    const results: Array<Record<string, unknown>> = []
    const selected = select(ctx).reverse()
    const stopping = new Set(selected.map(n => n.name))
    for (const spec of selected) {
      run.hold(spec.name, `stopped by fleet stop, ${who()}`)
      const pid = livePid(run, spec, msg => ctx.io.err(msg))
      if (pid === undefined) {
        run.updateState(spec, { status: 'stopped', pid: null, startedAt: null })
        results.push({ name: spec.name, running: false })
        if (!ctx.json) ctx.io.out(`${spec.name}: not running`)
        continue
      }
      const opts: StopOptions = { drain: { reason: 'stopping (fleet stop)', elsewhere: othersRunning(ctx, run, stopping) } }
      if (ctx.values.murder === true) opts.murder = true
      if (grace !== undefined) opts.graceSeconds = grace
      const how = await stopPid(spec, pid, opts)
      run.clearPid(spec.name)
      run.updateState(spec, { status: 'stopped', pid: null, startedAt: null, reason: 'fleet stop', lastExit: how })
      results.push({ name: spec.name, pid, how })
      if (!ctx.json) ctx.io.out(`${spec.name}: ${how} (pid ${pid})`)
    }
    if (ctx.json) ctx.io.out(jsonOk(results))
    ctx.db.note(ctx.logId!, results.map(r => `${String(r.name)} ${String(r.how ?? 'not running')}`).join(', '))
    return 0
  },

  async reload (ctx) {
    const run = runDirOf(ctx)
    const grace = number(ctx.values.grace, '--grace')
    const results: Array<Record<string, unknown>> = []
    let failed = 0
    for (const wanted of select(ctx)) {
      const pid = livePid(run, wanted, msg => ctx.io.err(msg))
      if (pid === undefined) {
        results.push({ name: wanted.name, running: false })
        if (!ctx.json) ctx.io.out(`${wanted.name}: not running (fleet start starts it)`)
        continue
      }
      const state = run.readState(wanted.name)
      const digest = functionsDigest(wanted.functions)
      const plan = state?.spec != null ? planReload(state.spec, wanted, digest !== (state.functionsDigest ?? null)) : { restart: ['(unknown running config)'], live: [] }
      try {
        // Live first; a change the node answers needsRestart for goes through the restart.
        let restartFor = plan.restart
        if (restartFor.length === 0) {
          for (const line of plan.live) {
            try {
              await controlCommand(wanted.stateDir, line)
            } catch (err) {
              if ((err as { needsRestart?: boolean }).needsRestart !== true) throw err
              restartFor = [`${line.split(' ')[0]!} (${(err as Error).message.replace(/^control port: /, '')})`]
              break
            }
          }
        }
        if (restartFor.length > 0) {
          plan.restart = restartFor
          run.hold(wanted.name, `reloading: fleet reload by ${who()}`)
          try {
            const address = addressOf(wanted)
            const drain = { retryAt: address, retryAfterMs: RESTART_ESTIMATE_MS, elsewhere: othersRunning(ctx, run, new Set([wanted.name])), reason: `restarting on ${address}` }
            const how = await stopPid(wanted, pid, grace !== undefined ? { graceSeconds: grace, drain } : { drain })
            run.clearPid(wanted.name)
            const started = await startNode(wanted, run, { fleet: ctx.db.servers() })
            started.child.unref()
            results.push({ name: wanted.name, restarted: true, changed: plan.restart, pid: started.pid, old: { pid, how } })
            if (!ctx.json) ctx.io.out(`${wanted.name}: ${plan.restart.join(', ')} changed: drained and restarted (old pid ${pid} ${how}; new pid ${started.pid} on ${addressOf(wanted)})`)
          } finally {
            run.release(wanted.name)
          }
        } else {
          const trusted = applyTrust(wanted, ctx.db.servers())
          if (trusted > 0) plan.live.push(`trust: ${trusted} key(s) added or updated`)
          run.updateState(wanted, { spec: wanted, functionsDigest: digest })
          results.push({ name: wanted.name, restarted: false, live: plan.live, pid })
          if (!ctx.json) ctx.io.out(plan.live.length === 0 ? `${wanted.name}: unchanged` : `${wanted.name}: applied live (no connection dropped): ${plan.live.join('; ')}`)
        }
      } catch (err) {
        failed++
        results.push({ name: wanted.name, error: (err as Error).message })
        ctx.io.err(`${wanted.name}: ${(err as Error).message}`)
      }
    }
    if (ctx.json) ctx.io.out(jsonResults(results, failed))
    ctx.db.note(ctx.logId!, results.map(r => `${String(r.name)} ${r.error !== undefined ? 'failed' : r.restarted === true ? 'restarted' : r.running === false ? 'not running' : 'live'}`).join(', '))
    return failed > 0 ? 1 : 0
  },

  async running (ctx) {
    const run = runDirOf(ctx)
    const rows: Array<{ name: string, uuid: string, status: string, pid: number | null, uptimeSeconds: number | null, restarts: number, address: string, load: NodeLoad | null, reason: string | null, error?: string }> = []
    for (const spec of select(ctx, true)) {
      const pid = livePid(run, spec, msg => ctx.io.err(msg)) ?? null
      const state = run.readState(spec.name)
      let load: NodeLoad | null = null
      let error: string | undefined
      if (pid !== null) {
        try { load = await describeNode(spec) } catch (err) { error = (err as Error).message }
      }
      const status = pid !== null ? 'running' : state?.status === 'running' || state?.status === 'starting' ? 'stopped' : state?.status ?? 'stopped'
      const row: typeof rows[number] = {
        name: spec.name,
        uuid: spec.uuid,
        status,
        pid,
        uptimeSeconds: load?.uptimeSeconds ?? (pid !== null && state?.startedAt != null ? Math.round((Date.now() - state.startedAt) / 1000) : null),
        restarts: load?.restarts ?? state?.restarts ?? 0,
        address: addressOf(spec),
        load,
        reason: status === 'running' ? null : state?.reason ?? null
      }
      if (error !== undefined) row.error = error
      rows.push(row)
    }
    if (ctx.json) { ctx.io.out(jsonOk(rows)); return 0 }
    ctx.io.out(table(['NAME', 'STATUS', 'PID', 'UPTIME', 'RESTARTS', 'ADDRESS', 'LOAD'], rows.map(r => [
      r.name, r.status, r.pid === null ? '-' : String(r.pid), r.uptimeSeconds === null ? '-' : duration(r.uptimeSeconds), String(r.restarts), r.address,
      r.load !== null ? `running ${r.load.running}, queued ${r.load.input}, done ${r.load.done}` : r.error ?? r.reason ?? '-'
    ])))
    return 0
  },

  async supervise (ctx) {
    const supervisor = new Supervisor(ctx.db)
    const onSignal = (): void => supervisor.stop()
    process.on('SIGTERM', onSignal)
    process.on('SIGINT', onSignal)
    try {
      await supervisor.run()
    } finally {
      process.off('SIGTERM', onSignal)
      process.off('SIGINT', onSignal)
    }
    return 0
  }
}

/**
 * About how long a restarted node takes to serve again (what DRAINING's retryAfterMs says):
 * a node starts in about a second; the drain before it is over by the time a client retries.
 */
const RESTART_ESTIMATE_MS = 2000

/** The nodes of the fleet that are running, but for `except`, as `name@host:port`: where a draining node's clients may go. */
function othersRunning (ctx: Ctx, run: RunDir, except: ReadonlySet<string>): string[] {
  return ctx.db.servers().filter(n => !except.has(n.name) && livePid(run, n) !== undefined).map(n => `${n.name}@${addressOf(n)}`)
}

function duration (seconds: number): string {
  const s = Math.floor(seconds)
  if (s < 60) return `${s}s`
  if (s < 3600) return `${Math.floor(s / 60)}m${String(s % 60).padStart(2, '0')}s`
  return `${Math.floor(s / 3600)}h${String(Math.floor(s / 60) % 60).padStart(2, '0')}m`
}

/** An argument as a shell would need it. */
function quote (a: string): string {
  return /^[\w@%+=:,./-]+$/.test(a) ? a : `'${a.replace(/'/g, "'\\''")}'`
}

function table (head: string[], rows: string[][]): string {
  const w = head.map((h, i) => Math.max(h.length, ...rows.map(r => (r[i] ?? '').length)))
  return [head, ...rows].map(r => r.map((c, i) => i === r.length - 1 ? c : c.padEnd(w[i]!)).join('  ')).join('\n')
}

export { ConfigError }

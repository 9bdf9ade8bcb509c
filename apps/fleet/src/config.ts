import { randomUUID } from 'node:crypto'
import { basename, dirname, isAbsolute, resolve } from 'node:path'
import { formatHost } from '@evalmesh/client'
import { parseTrustedKeys } from '@evalmesh/trust'

/**
 * The fleet config file (JSON, docs/fleet.md): the nodes of a deployment, read by
 * `fleet load` into the config database. Paths are relative to the file's directory.
 */

/** When a supervised node that exits is started again, and when the supervisor gives up. */
export interface RestartRule {
  /** Restarts allowed within `windowSeconds`; one more and the node is marked failed. */
  maxRestarts: number
  windowSeconds: number
  /** The first back-off; each further restart within the window doubles it. */
  backoffMs: number
  maxBackoffMs: number
  /** Seconds a stopping node may take to finish its running work before SIGKILL. */
  graceSeconds: number
}

export const DEFAULT_RESTART: Readonly<RestartRule> = Object.freeze({
  maxRestarts: 5, windowSeconds: 60, backoffMs: 250, maxBackoffMs: 30_000, graceSeconds: 30
})

/** Limits a node is started with (serve's flags of the same names). */
export interface NodeLimits {
  timeoutMs?: number
  memoryMb?: number
  concurrency?: number
  queue?: number
  purgeSeconds?: number
}

/** One node as the config database holds it: every path absolute, every default filled in. */
export interface NodeSpec {
  name: string
  uuid: string
  listen: string
  port: number
  stateDir: string
  /** Megatest areas: NAME=DIR, DIR absolute. */
  areas: string[]
  /** Run keys of a new area (serve --keys). */
  keys: string[]
  readOnly: boolean
  /** An ES module of operator functions (serve --functions). */
  functions: string | null
  /** The admission policy: applied live by `fleet reload`. */
  hosts: string[]
  gags: string[]
  limits: NodeLimits
  /** serve --quota NAME=N. */
  quotas: Record<string, number>
  /** Where the node's stdout and stderr go (its log, unless args give --log-file). */
  log: string
  /** serve --log-level (debug, info, warn, error) and --log-format (text, json), when set. */
  logLevel: string | null
  logFormat: string | null
  restart: RestartRule
  /** Nodes that must be up before this one starts (and that stop after it). */
  after: string[]
  /** Further serve flags, passed as they are. */
  args: string[]
  /** Keys this node trusts: `"<base64 public key> [label]"` lines (what `evalmesh key` prints). */
  trust: TrustEntry[]
  /** Trust every other node of the fleet, labelled with its name. */
  trustFleet: boolean
}

export interface TrustEntry {
  key: string
  operator: boolean
}

export interface FleetConfig {
  /** Pid files, state files and (by default) logs. */
  runDir: string
  nodes: NodeSpec[]
}

export class ConfigError extends Error {
  override name = 'ConfigError'
}

const NODE_KEYS = new Set(['name', 'uuid', 'listen', 'port', 'stateDir', 'areas', 'keys', 'readOnly', 'functions', 'hosts', 'gags', 'limits', 'quotas', 'log', 'restart', 'after', 'args', 'trust', 'trustFleet', 'logLevel', 'logFormat'])
const LIMIT_KEYS = new Set(['timeoutMs', 'memoryMb', 'concurrency', 'queue', 'purgeSeconds'])
const RESTART_KEYS = new Set(Object.keys(DEFAULT_RESTART))
const QUOTA_NAMES = new Set(['runningPerClient', 'queuedPerClient', 'maxQueueWaitMs', 'sessionsPerClient', 'memoryPerClientMb', 'sandboxMemoryMb', 'sandboxProcesses'])
const NAME = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$/

type Obj = Record<string, unknown>

function isObj (v: unknown): v is Obj {
  return typeof v === 'object' && v !== null && !Array.isArray(v)
}

function strings (v: unknown, what: string): string[] {
  if (v === undefined) return []
  if (!Array.isArray(v) || !v.every(x => typeof x === 'string')) throw new ConfigError(`${what}: want an array of strings`)
  return v
}

function whole (v: unknown, what: string, min = 0): number {
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < min) throw new ConfigError(`${what}: want a whole number >= ${min}, got ${JSON.stringify(v)}`)
  return v
}

function checkKeys (o: Obj, allowed: Set<string>, what: string): void {
  for (const k of Object.keys(o)) if (!allowed.has(k)) throw new ConfigError(`${what}: unknown field "${k}" (known: ${[...allowed].join(', ')})`)
}

/**
 * Parse and check a config file's text. `known` maps node names to the uuids the
 * database already gave them, so a node without a uuid in the file keeps its uuid.
 */
export function parseConfig (text: string, file: string, known: ReadonlyMap<string, string> = new Map()): FleetConfig {
  let raw: unknown
  try {
    raw = JSON.parse(text)
  } catch (err) {
    throw new ConfigError(`${file}: not JSON: ${(err as Error).message}`)
  }
  if (!isObj(raw)) throw new ConfigError(`${file}: want an object with "nodes"`)
  checkKeys(raw, new Set(['runDir', 'defaults', 'nodes']), file)
  const base = dirname(resolve(file))
  const path = (p: string): string => isAbsolute(p) ? p : resolve(base, p)
  const runDir = path(typeof raw.runDir === 'string' ? raw.runDir : 'run')
  const defaults = raw.defaults ?? {}
  if (!isObj(defaults)) throw new ConfigError(`${file}: "defaults" must be an object`)
  checkKeys(defaults, NODE_KEYS, `${file}: defaults`)
  if (!Array.isArray(raw.nodes) || raw.nodes.length === 0) throw new ConfigError(`${file}: "nodes" must be a non-empty array`)

  const nodes: NodeSpec[] = raw.nodes.map((n: unknown, i: number) => {
    if (!isObj(n)) throw new ConfigError(`${file}: nodes[${i}] is not an object`)
    const o: Obj = { ...defaults, ...n }
    checkKeys(o, NODE_KEYS, `${file}: nodes[${i}]`)
    if (typeof o.name !== 'string' || !NAME.test(o.name)) throw new ConfigError(`${file}: nodes[${i}].name: want a name of letters, digits, . _ - (got ${JSON.stringify(o.name)})`)
    const name = o.name
    const what = `node ${name}`
    if (typeof o.port !== 'number') throw new ConfigError(`${what}: "port" is required (a TCP port)`)
    const port = whole(o.port, `${what}: port`, 1)
    if (port > 65535) throw new ConfigError(`${what}: port ${port} is not a TCP port`)
    const uuid = typeof o.uuid === 'string' && o.uuid !== '' ? o.uuid : known.get(name) ?? randomUUID()
    const limitsIn = o.limits ?? {}
    if (!isObj(limitsIn)) throw new ConfigError(`${what}: limits must be an object`)
    checkKeys(limitsIn, LIMIT_KEYS, `${what}: limits`)
    const limits: NodeLimits = {}
    for (const [k, v] of Object.entries(limitsIn)) limits[k as keyof NodeLimits] = whole(v, `${what}: limits.${k}`, 1)
    const quotasIn = o.quotas ?? {}
    if (!isObj(quotasIn)) throw new ConfigError(`${what}: quotas must be an object`)
    checkKeys(quotasIn, QUOTA_NAMES, `${what}: quotas`)
    const quotas: Record<string, number> = {}
    for (const [k, v] of Object.entries(quotasIn)) quotas[k] = whole(v, `${what}: quotas.${k}`, 1)
    const restartIn = o.restart ?? {}
    if (!isObj(restartIn)) throw new ConfigError(`${what}: restart must be an object`)
    checkKeys(restartIn, RESTART_KEYS, `${what}: restart`)
    const restart: RestartRule = { ...DEFAULT_RESTART }
    for (const [k, v] of Object.entries(restartIn)) restart[k as keyof RestartRule] = whole(v, `${what}: restart.${k}`)
    const areas = strings(o.areas, `${what}: areas`).map(a => {
      const eq = a.indexOf('=')
      const dir = path(eq < 0 ? a : a.slice(eq + 1))
      return `${eq < 0 ? basename(dir) : a.slice(0, eq)}=${dir}`
    })
    if (o.listen !== undefined && typeof o.listen !== 'string') throw new ConfigError(`${what}: listen must be an address`)
    for (const k of ['stateDir', 'functions', 'log'] as const) {
      if (o[k] !== undefined && o[k] !== null && typeof o[k] !== 'string') throw new ConfigError(`${what}: ${k} must be a path`)
    }
    if (o.readOnly !== undefined && typeof o.readOnly !== 'boolean') throw new ConfigError(`${what}: readOnly must be true or false`)
    if (o.logLevel !== undefined && !['debug', 'info', 'warn', 'error'].includes(o.logLevel as string)) throw new ConfigError(`${what}: logLevel must be debug, info, warn or error`)
    if (o.logFormat !== undefined && !['text', 'json'].includes(o.logFormat as string)) throw new ConfigError(`${what}: logFormat must be text or json`)
    if (o.trustFleet !== undefined && typeof o.trustFleet !== 'boolean') throw new ConfigError(`${what}: trustFleet must be true or false`)
    if (o.trust !== undefined && !Array.isArray(o.trust)) throw new ConfigError(`${what}: trust must be an array`)
    const trust: TrustEntry[] = ((o.trust ?? []) as unknown[]).map((t, j) => {
      const entry = typeof t === 'string' ? { key: t, operator: false } : isObj(t) && typeof t.key === 'string' ? { key: t.key, operator: t.operator === true } : undefined
      if (entry === undefined) throw new ConfigError(`${what}: trust[${j}]: want "<base64 public key> [label]" or { "key": ..., "operator": true }`)
      try {
        if (parseTrustedKeys(entry.key, `${what}: trust[${j}]`).size !== 1) throw new Error('want exactly one key')
      } catch (err) {
        throw new ConfigError(`${what}: trust[${j}]: ${(err as Error).message}`)
      }
      return entry
    })
    return {
      name,
      uuid,
      listen: (o.listen as string | undefined) ?? '127.0.0.1',
      port,
      stateDir: path((o.stateDir as string | undefined) ?? `nodes/${name}`),
      areas,
      keys: strings(o.keys, `${what}: keys`),
      readOnly: o.readOnly === true,
      functions: typeof o.functions === 'string' ? path(o.functions) : null,
      hosts: strings(o.hosts, `${what}: hosts`),
      gags: strings(o.gags, `${what}: gags`),
      limits,
      quotas,
      log: typeof o.log === 'string' ? path(o.log) : resolve(runDir, `${name}.log`),
      logLevel: (o.logLevel as string | undefined) ?? null,
      logFormat: (o.logFormat as string | undefined) ?? null,
      restart,
      after: strings(o.after, `${what}: after`),
      args: strings(o.args, `${what}: args`),
      trust,
      trustFleet: o.trustFleet === true
    }
  })
  checkFleet(nodes)
  return { runDir, nodes }
}

function checkFleet (nodes: NodeSpec[]): void {
  const seen = new Map<string, string>()
  for (const n of nodes) {
    for (const [k, v] of [['name', n.name], ['uuid', n.uuid], ['state dir', n.stateDir], ['address', formatHost(n.listen, n.port)]] as const) {
      const key = `${k} ${v}`
      if (seen.has(key)) throw new ConfigError(`nodes ${seen.get(key)} and ${n.name} have the same ${k} (${v})`)
      seen.set(key, n.name)
    }
  }
  const names = new Set(nodes.map(n => n.name))
  for (const n of nodes) {
    for (const d of n.after) if (!names.has(d)) throw new ConfigError(`node ${n.name}: after "${d}": no such node`)
  }
  dependencyOrder(nodes)
}

/** The nodes, each after the ones it needs (file order otherwise); a cycle is an error. */
export function dependencyOrder<T extends { name: string, after: string[] }> (nodes: readonly T[]): T[] {
  const byName = new Map(nodes.map(n => [n.name, n]))
  const out: T[] = []
  const state = new Map<string, 'visiting' | 'done'>()
  const visit = (n: T, path: string[]): void => {
    const s = state.get(n.name)
    if (s === 'done') return
    if (s === 'visiting') throw new ConfigError(`dependency cycle: ${[...path, n.name].join(' -> ')}`)
    state.set(n.name, 'visiting')
    for (const d of n.after) {
      const dep = byName.get(d)
      if (dep !== undefined) visit(dep, [...path, n.name])
    }
    state.set(n.name, 'done')
    out.push(n)
  }
  for (const n of nodes) visit(n, [])
  return out
}

/** The `evalmesh serve` arguments that run this node. */
export function serveArgs (n: NodeSpec): string[] {
  const a = ['serve', '--name', n.name, '--state-dir', n.stateDir, '--listen', n.listen, '--port', String(n.port)]
  if (n.hosts.length > 0) a.push('--hosts', n.hosts.join(','))
  if (n.gags.length > 0) a.push('--gags', n.gags.join(','))
  if (n.functions !== null) a.push('--functions', n.functions)
  const flags: Record<keyof NodeLimits, string> = { timeoutMs: '--timeout', memoryMb: '--memory', concurrency: '--concurrency', queue: '--queue', purgeSeconds: '--purge-seconds' }
  for (const [k, v] of Object.entries(n.limits)) a.push(flags[k as keyof NodeLimits], String(v))
  for (const [k, v] of Object.entries(n.quotas)) a.push('--quota', `${k}=${v}`)
  for (const area of n.areas) a.push('--area', area)
  if (n.keys.length > 0) a.push('--keys', n.keys.join(','))
  if (n.readOnly) a.push('--read-only')
  if (n.logLevel !== null) a.push('--log-level', n.logLevel)
  if (n.logFormat !== null) a.push('--log-format', n.logFormat)
  a.push(...n.args)
  return a
}

/** What `fleet reload` must do to bring a node started with `running` to `wanted`. */
export interface ReloadPlan {
  /** Fields that need a restart (drain and start again). */
  restart: string[]
  /**
   * Control-port commands that apply the rest live: policy, limits, quotas, functions. A
   * command the node answers with needsRestart (a quota of its sandbox, a limit above what
   * its sandbox was started for) sends the node through a restart after all.
   */
  live: string[]
}

/** What reload applies without a restart, or what only the fleet reads. */
const LIVE_OR_FLEET = new Set<keyof NodeSpec>(['hosts', 'gags', 'trust', 'trustFleet', 'restart', 'after', 'uuid', 'limits', 'quotas', 'functions'])

/**
 * `functionsChanged`: the functions module's file changed since the node loaded it (the
 * caller compares digests), so it is loaded again even under the same path.
 */
export function planReload (running: NodeSpec, wanted: NodeSpec, functionsChanged = false): ReloadPlan {
  const restart: string[] = []
  for (const k of Object.keys(wanted) as Array<keyof NodeSpec>) {
    if (LIVE_OR_FLEET.has(k)) continue
    if (JSON.stringify(running[k]) !== JSON.stringify(wanted[k])) restart.push(k)
  }
  const live: string[] = []
  if (JSON.stringify(running.hosts) !== JSON.stringify(wanted.hosts)) live.push(wanted.hosts.length === 0 ? 'hosts default' : `hosts ${wanted.hosts.join(' ')}`)
  const removed = running.gags.filter(g => !wanted.gags.includes(g))
  const added = wanted.gags.filter(g => !running.gags.includes(g))
  if (removed.length > 0) live.push(`ungag ${removed.join(' ')}`)
  if (added.length > 0) live.push(`gag ${added.join(' ')}`)
  // A limit or quota taken out of the config goes back to the node's default, which only
  // a fresh start computes (concurrency's depends on the machine): that one restarts.
  for (const [field, command] of [['limits', 'limits'], ['quotas', 'quota']] as const) {
    const was = running[field] as Record<string, number | undefined>
    const now = wanted[field] as Record<string, number | undefined>
    if (Object.keys(was).some(k => now[k] === undefined)) { restart.push(field); continue }
    const changed = Object.entries(now).filter(([k, v]) => was[k] !== v).map(([k, v]) => `${k}=${String(v)}`)
    if (changed.length > 0) live.push(`${command} ${changed.join(' ')}`)
  }
  if (wanted.functions !== running.functions || (functionsChanged && wanted.functions !== null)) {
    live.push(wanted.functions === null ? 'functions none' : `functions load ${wanted.functions}`)
  }
  return { restart, live }
}

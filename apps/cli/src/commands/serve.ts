import { networkInterfaces } from 'node:os'
import { existsSync, readFileSync } from 'node:fs'
import { basename, join, resolve } from 'node:path'
import { Writable } from 'node:stream'
import { CONFIG_FILE, createMegatestService, registerServer, startHeartbeat, unregisterServer, type AreaInit, type MegatestService, type ServerRegistration } from '@evalmesh/megatest'
import { DEFAULT_BUSY_POLL_MICROS, MAX_BUSY_POLL_MICROS, busyPollMicrosFrom, formatHost, setBusyPoll } from '@evalmesh/client'
import { isLinkLocalV6 } from '@evalmesh/discovery'
import { DEFAULT_PORT, printable } from '@evalmesh/protocol'
import { createNodeLogger, isLogFormat, isLogLevel, startServer, tierUpEarly, LOG_LEVELS, type EvalServer, type NodeLogger, type NodeLoggerOptions, type NodeQuotas, type ServerInit } from '@evalmesh/server'
import { UsageError, int, list, str, type Command, type Parsed } from '../args.js'
import { natsFrom, natsOptions, stateDirOf } from '../context.js'

const LOOPBACK = new Set(['127.0.0.1', '::1', 'localhost'])

/**
 * What `--lan` joins when no address is given: the first non-internal IPv4 address, or on
 * an IPv6-only network the first global IPv6 one (a link-local fe80:: address cannot be
 * advertised: it means nothing without its interface).
 */
function firstLanAddress (): string {
  const all = Object.values(networkInterfaces()).flatMap(addrs => addrs ?? []).filter(a => !a.internal)
  const v4 = all.find(a => a.family === 'IPv4')
  if (v4 !== undefined) return v4.address
  const v6 = all.find(a => a.family === 'IPv6' && !isLinkLocalV6(a.address))
  if (v6 !== undefined) return v6.address
  throw new UsageError('--lan: this machine has no non-loopback IPv4 or global IPv6 address; give one with --listen ADDR')
}

export function serverInitFrom (p: Parsed): ServerInit {
  const listen = str(p, 'listen')
  const init: ServerInit = {
    stateDir: stateDirOf(p),
    host: listen ?? '127.0.0.1',
    port: int(p, 'port') ?? DEFAULT_PORT
  }
  // Joining a LAN is explicit: --listen on a LAN address, or --lan.
  if (listen !== undefined && !LOOPBACK.has(listen) && listen !== '0.0.0.0' && listen !== '::') init.lan = listen
  else if (p.values.lan === true) {
    init.lan = firstLanAddress()
    if (listen === undefined) init.host = init.lan
  }
  const ttl = int(p, 'discovery-ttl'); if (ttl !== undefined) init.discoveryTtl = ttl

  const name = str(p, 'name'); if (name !== undefined) init.name = name
  const tempName = str(p, 'temp-name')
  if (tempName !== undefined) {
    if (name !== undefined) throw new UsageError('give --name (remembered) or --temp-name (this run only), not both')
    init.name = tempName
    init.rememberName = false
  }
  const minutes = int(p, 'minutes'); if (minutes !== undefined) init.minutes = minutes
  const fns = str(p, 'functions'); if (fns !== undefined) init.functionsModule = fns
  const purge = int(p, 'purge-seconds'); if (purge !== undefined) init.purgeSeconds = purge
  const hosts = list(p, 'hosts'); if (hosts !== undefined) init.hosts = hosts
  const gags = list(p, 'gags'); if (gags !== undefined) init.gags = gags
  const conc = int(p, 'concurrency'); if (conc !== undefined) init.concurrency = conc
  const queue = int(p, 'queue'); if (queue !== undefined) init.queueLength = queue
  const timeoutMs = int(p, 'timeout'); if (timeoutMs !== undefined) init.limits = { ...init.limits, timeoutMs }
  const memoryMb = int(p, 'memory'); if (memoryMb !== undefined) init.limits = { ...init.limits, memoryMb }
  const quotas = quotasFrom(list(p, 'quota') ?? []); if (quotas !== undefined) init.quotas = quotas
  if (p.values['in-memory'] === true) init.durable = false
  const integrity = str(p, 'integrity')
  if (integrity !== undefined && integrity !== 'auto' && integrity !== 'always') throw new UsageError(`--integrity must be auto or always, not "${integrity}"`)
  if (integrity !== undefined) init.integrity = integrity
  const tls = tlsFrom(p); if (tls !== undefined) init.tls = tls
  const nats = natsFrom(p); if (nats !== undefined) init.nats = nats
  return init
}

/** --busy-poll US: how long this process keeps polling after a write (a process-wide setting). */
function busyPollFrom (p: Parsed): void {
  const text = str(p, 'busy-poll')
  if (text === undefined) return
  const us = busyPollMicrosFrom(text)
  if (us === undefined) throw new UsageError(`--busy-poll must be a whole number of µs from 0 to ${MAX_BUSY_POLL_MICROS}, got "${text}"`)
  setBusyPoll(us)
}

/** --tls (a certificate over the node's key), or --tls-cert FILE --tls-key FILE [--tls-ca FILE]. */
function tlsFrom (p: Parsed): ServerInit['tls'] {
  const cert = str(p, 'tls-cert')
  const key = str(p, 'tls-key')
  const ca = str(p, 'tls-ca')
  if (cert === undefined && key === undefined) {
    if (ca !== undefined) throw new UsageError('--tls-ca goes with --tls-cert and --tls-key')
    return p.values.tls === true ? 'self' : undefined
  }
  if (cert === undefined || key === undefined) throw new UsageError('--tls-cert and --tls-key go together')
  const read = (flag: string, file: string): Buffer => {
    try { return readFileSync(file) } catch (err) { throw new UsageError(`${flag} ${file}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`) }
  }
  // The CA file's certificates go out after the node's own, so clients can build the chain.
  const chain = ca === undefined ? read('--tls-cert', cert) : Buffer.concat([read('--tls-cert', cert), Buffer.from('\n'), read('--tls-ca', ca)])
  return { cert: chain, key: read('--tls-key', key) }
}

const QUOTA_NAMES: ReadonlyArray<keyof NodeQuotas> = [
  'runningPerClient', 'queuedPerClient', 'maxQueueWaitMs', 'sessionsPerClient', 'memoryPerClientMb', 'sandboxMemoryMb', 'sandboxProcesses'
]

/** --quota NAME=N (repeatable, or NAME=N,NAME=N): per-client quotas and the node's bounds, as describe shows them. */
function quotasFrom (specs: string[]): Partial<NodeQuotas> | undefined {
  if (specs.length === 0) return undefined
  const out: Partial<NodeQuotas> = {}
  for (const spec of specs) {
    const [name, value] = spec.split('=')
    if (!(QUOTA_NAMES as readonly string[]).includes(name ?? '')) throw new UsageError(`--quota: unknown quota "${name ?? ''}"; the quotas are ${QUOTA_NAMES.join(', ')}`)
    const n = Number(value)
    if (!Number.isSafeInteger(n) || n <= 0) throw new UsageError(`--quota ${name ?? ''}: give a positive whole number, not "${value ?? ''}"`)
    out[name as keyof NodeQuotas] = n
  }
  return out
}

/** --area NAME=DIR or --area DIR (named after the directory), with --read-only and --keys. */
function areasFrom (p: Parsed): AreaInit[] {
  const specs = list(p, 'area') ?? []
  const keys = list(p, 'keys')
  return specs.map(spec => {
    const eq = spec.indexOf('=')
    const dir = resolve(eq < 0 ? spec : spec.slice(eq + 1))
    // A mistyped path must not quietly become a new, empty area: a new one is asked for with its keys.
    if (keys === undefined && !existsSync(dir)) throw new UsageError(`--area ${spec}: no such directory ${dir} (give --keys K1,K2 to start a new area there)`)
    const area: AreaInit = { name: eq < 0 ? basename(dir) : spec.slice(0, eq), dir }
    if (p.values['read-only'] === true) area.readOnly = true
    // A new area needs its run keys; Megatest's usual single key is TARGET.
    area.keys = keys ?? (existsSync(join(dir, CONFIG_FILE)) ? undefined : ['TARGET'])
    if (area.keys === undefined) delete area.keys
    return area
  })
}

/**
 * Megatest's server lifecycle for the areas a node serves: a registration record in
 * each area's .servinfo (touched every 5 s, removed on stop), one primary server per
 * area (a node that finds an earlier, live server registered stops serving the area,
 * as Megatest's second server exits), kill-server stops serving that one area (never
 * the node: docs/SECURITY.md), and --idle-timeout stops the node when no area has been
 * used for that long. Returns what to do when an area is killed.
 *
 * A --read-only node neither registers nor takes part in the election: it never writes,
 * so it may sit beside the primary, and Megatest's clients, which find their server
 * through .servinfo, must find the one that can write.
 */
function manageAreas (server: EvalServer, megatest: MegatestService, idleSeconds: number | undefined): (area: string) => void {
  const { host, port } = server.address
  const beats: Array<{ area: string, file: string, beat: { stop: () => void } }> = []
  const stopServing = (area: string): void => {
    for (const b of beats.filter(x => x.area === area)) { b.beat.stop(); unregisterServer(b.file) }
  }
  for (const a of megatest.areas().filter(x => !x.readOnly)) {
    const reg = registerServer(a.dir, { host, port, node: `${server.name} ${server.id}` })
    const onNotPrimary = (primary: ServerRegistration | undefined): void => {
      stopServing(a.name)
      megatest.removeArea(a.name)
      const who = primary === undefined ? 'another server' : `${primary.node !== '' ? primary.node : `pid ${primary.pid}`} at ${formatHost(primary.host, primary.port)}`
      server.emit('warning', `Megatest area ${a.name}: ${who} started earlier and is its primary server; no longer serving it here (the node carries on)`)
    }
    beats.push({ area: a.name, file: reg.file, beat: startHeartbeat(reg.file, undefined, undefined, { areaDir: a.dir, onNotPrimary }) })
  }
  let idleTimer: NodeJS.Timeout | undefined
  if (idleSeconds !== undefined) {
    idleTimer = setInterval(() => {
      if (megatest.idleSeconds() >= idleSeconds && server.table.running.size === 0 && server.table.input.length === 0) {
        void server.stop(`idle for ${idleSeconds} s`)
      }
    }, Math.min(5000, Math.max(250, idleSeconds * 250)))
  }
  server.once('stopped', () => {
    if (idleTimer !== undefined) clearInterval(idleTimer)
    for (const b of beats) { b.beat.stop(); unregisterServer(b.file) }
    megatest.close()
  })
  return stopServing
}

export const serveOptions: Command['options'] = {
  name: { type: 'string' },
  'temp-name': { type: 'string' },
  listen: { type: 'string' },
  lan: { type: 'boolean' },
  'discovery-ttl': { type: 'string' },
  port: { type: 'string' },
  minutes: { type: 'string' },
  functions: { type: 'string' },
  'purge-seconds': { type: 'string' },
  hosts: { type: 'string', multiple: true },
  gags: { type: 'string', multiple: true },
  concurrency: { type: 'string' },
  'busy-poll': { type: 'string' },
  queue: { type: 'string' },
  timeout: { type: 'string' },
  memory: { type: 'string' },
  quota: { type: 'string', multiple: true },
  'in-memory': { type: 'boolean' },
  area: { type: 'string', multiple: true },
  'read-only': { type: 'boolean' },
  keys: { type: 'string' },
  'idle-timeout': { type: 'string' },
  'megatest-load-limit': { type: 'string' },
  'log-level': { type: 'string' },
  'log-format': { type: 'string' },
  'log-file': { type: 'string' },
  integrity: { type: 'string' },
  tls: { type: 'boolean' },
  'tls-cert': { type: 'string' },
  'tls-key': { type: 'string' },
  'tls-ca': { type: 'string' },
  ...natsOptions
}

/** --log-level, --log-format, --log-file, checked before anything starts. */
export function loggerOptionsFrom (p: Parsed): NodeLoggerOptions {
  const level = str(p, 'log-level') ?? 'info'
  if (!isLogLevel(level)) throw new UsageError(`--log-level must be one of ${LOG_LEVELS.join(', ')}, not "${level}"`)
  const format = str(p, 'log-format') ?? 'text'
  if (!isLogFormat(format)) throw new UsageError(`--log-format must be text or json, not "${format}"`)
  const opts: NodeLoggerOptions = { level, format }
  const file = str(p, 'log-file')
  if (file !== undefined) {
    if (file === '') throw new UsageError('--log-file needs a path')
    opts.file = resolve(file)
  }
  return opts
}

/**
 * stderr, held while the status window owns the terminal (a line written under a blessed
 * screen garbles it): lines wait here, the newest 1000 of them, and come out when the
 * window closes.
 */
class HeldStderr extends Writable {
  #held: string[] | undefined = []
  #dropped = 0

  override _write (chunk: Buffer | string, _enc: BufferEncoding, done: (err?: Error | null) => void): void {
    const text = chunk.toString()
    if (this.#held === undefined) {
      process.stderr.write(text)
    } else {
      this.#held.push(text)
      if (this.#held.length > 1000) { this.#held.shift(); this.#dropped++ }
    }
    done()
  }

  release (): void {
    const held = this.#held ?? []
    this.#held = undefined
    const dropped = this.#dropped
    this.#dropped = 0
    if (dropped > 0) process.stderr.write(`(${dropped} earlier log lines were dropped while the status window was open)\n`)
    for (const line of held) process.stderr.write(line)
  }
}

/** Run a node until it stops (signal, --minutes). Prints how to reach it. */
export async function runNode (p: Parsed, onStarted?: (server: Awaited<ReturnType<typeof startServer>>) => Promise<void>): Promise<number> {
  const init = serverInitFrom(p)
  busyPollFrom(p)
  // This process is a node from here on: reach steady speed in hundreds of requests, not thousands.
  tierUpEarly()
  const areas = areasFrom(p)
  const logOptions = loggerOptionsFrom(p)
  // With the status window on the terminal, stderr lines wait until it closes (unless they go to a file).
  const held = onStarted !== undefined && logOptions.file === undefined && process.stderr.isTTY === true ? new HeldStderr() : undefined
  if (held !== undefined) logOptions.stream = held
  const logger: NodeLogger = createNodeLogger(logOptions)
  try {
    return await serveWith(p, init, areas, { logger, toFile: logOptions.file !== undefined, held }, onStarted)
  } finally {
    held?.release()
    logger.close()
  }
}

interface Logging { logger: NodeLogger, toFile: boolean, held: HeldStderr | undefined }

async function serveWith (p: Parsed, init: ServerInit, areas: AreaInit[], { logger, toFile, held }: Logging, onStarted: ((server: EvalServer) => Promise<void>) | undefined): Promise<number> {
  let server: EvalServer | undefined
  let megatest: MegatestService | undefined
  let areaKilled: ((area: string) => void) | undefined
  if (areas.length > 0) {
    // kill-server stops serving that area (the service does it after the reply); the node carries on.
    const opts: Parameters<typeof createMegatestService>[0] = {
      areas,
      onKillServer: (area) => {
        areaKilled?.(area)
        server?.emit('warning', `Megatest area ${area}: kill-server received; no longer serving it (the node carries on)`)
      }
    }
    const limit = int(p, 'megatest-load-limit'); if (limit !== undefined) opts.loadLimit = limit
    megatest = createMegatestService(opts)
    init.megatest = megatest
  }
  server = await startServer(init)
  // Warnings may quote what peers sent (names, reasons): escaped before they reach a terminal or a log.
  // They go to stderr as they always have, and into the log file too when there is one.
  server.on('warning', (message: string) => {
    const text = printable(String(message), 2000)
    ;(held ?? process.stderr).write(`warning: ${text}\n`)
    if (toFile) logger.log('warn', 'node', String(message))
  })
  if (megatest !== undefined) areaKilled = manageAreas(server, megatest, int(p, 'idle-timeout'))
  else if (int(p, 'idle-timeout') !== undefined) throw new UsageError('--idle-timeout applies to nodes serving Megatest areas (--area)')
  const { host, port } = server.address
  const where = formatHost(host, port)
  const scope = init.lan === undefined ? ' (loopback only; --lan or --listen ADDR joins a LAN)' : ` (LAN ${init.lan}: broadcast and mDNS on)`
  const stop = (signal: string): void => { void server.stop(`signal ${signal}`) }
  process.once('SIGINT', () => stop('SIGINT'))
  process.once('SIGTERM', () => stop('SIGTERM'))
  if (onStarted !== undefined) {
    await onStarted(server)
    held?.release()
  } else {
    const lines = [
      `evalmesh node "${server.name}" (id ${server.id}) listening on ${where}${scope}`,
      `  state dir: ${server.stateDir}`,
      `  policy:    hosts [${server.policy.state.hosts.join(', ')}], gags [${server.policy.state.gags.join(', ')}]`,
      ...(init.nats === undefined ? [] : [`  nats:      mesh ${init.nats.mesh ?? 'default'} on ${server.nats?.carrier.server ?? init.nats.servers.join(',')} (servers ${init.nats.servers.join(', ')})`]),
      ...(megatest === undefined ? [] : [`  megatest:  ${megatest.areas().map(a => `${a.name} (${a.dir}${a.readOnly ? ', read-only' : ''})`).join(', ')}`]),
      `  try:       evalmesh eval '1 + 1' --host ${where}`,
      server.controlPort !== undefined ? `  control:   evalmesh ctl --state-dir ${server.stateDir}` : `  control:   none (${server.controlPortError ?? 'disabled'})`,
      init.minutes !== undefined ? `  stops after ${init.minutes} minute(s); Ctrl-C stops it now` : '  stop with Ctrl-C'
    ]
    console.log(lines.join('\n'))
  }
  await server.whenStopped
  console.error(`evalmesh node "${server.name}" stopped`)
  return 0
}

export const serve: Command = {
  name: 'serve',
  summary: 'run a node: an EvalServer on TCP (default 127.0.0.1:6680)',
  usage: `evalmesh serve [--name N] [--listen ADDR | --lan] [--port P] [--state-dir D] [--minutes M]
                [--functions MODULE] [--purge-seconds S] [--hosts directed,broadcast,NAME...]
                [--gags NAME,broadcast,self...] [--concurrency N] [--queue N] [--timeout MS] [--memory MB]
                [--busy-poll US]
                [--log-level debug|info|warn|error] [--log-format text|json] [--log-file PATH]
                [--nats URL[,URL...] [--nats-creds FILE] [--nats-mesh NAME]]

  --name N           node name (default: the host name; remembered in the state dir)
  --temp-name N      a node name for this run only: the state dir's name is left alone
  --listen ADDR      address to listen on (default 127.0.0.1: loopback only). A LAN
                     address joins that LAN: broadcasts, mDNS advertise and browse
  --lan              join the LAN of the first non-loopback interface (or of --listen)
  --discovery-ttl S  mDNS record TTL: peers forget a vanished node after S (default 120)
  --port P           TCP port (default ${DEFAULT_PORT}; 0 picks a free port)
  --state-dir D      key and trust files (default ~/.evalmesh or $EVALMESH_STATE_DIR)
  --minutes M        serve for M minutes, then stop cleanly
  --functions MODULE an ES module whose exported functions remoteApply may call by name
  --purge-seconds S  keep done records this long (default 600)
  --hosts LIST       serve: directed (addressed to me), broadcast, and/or named peers
  --gags LIST        never serve: named peers, broadcast, self; a gag beats a host entry
  --concurrency N    evaluations running at once
  --queue N          requests waiting beyond those before the node answers BUSY (default 1024)
  --timeout MS       wall-time ceiling per evaluation (default 30000)
  --memory MB        isolate memory ceiling per session (default 128)
  --busy-poll US     after a reply, keep polling for the next request up to US µs instead of
                     sleeping (default ${DEFAULT_BUSY_POLL_MICROS}; 0 = off). Spares each request a wake-up of the
                     CPU; adaptive: stops after a few windows in which nothing came
  --in-memory        keep transactions in memory only (default: also in <state-dir>/txns.journal,
                     so done records and kept results survive a crash and a restart)
  --quota NAME=N     a per-client quota or node bound (repeatable): runningPerClient,
                     queuedPerClient, maxQueueWaitMs, sessionsPerClient, memoryPerClientMb,
                     sandboxMemoryMb, sandboxProcesses (describe shows the values in force)
  --area [NAME=]DIR  serve this Megatest area (repeatable); clients call megatest.<command>(NAME, ...)
  --read-only        refuse every Megatest write command
  --keys K1,K2       run keys for a new area (default TARGET)
  --idle-timeout S   stop when no area has been used for S seconds
  --megatest-load-limit N  Megatest requests in flight before answering busy (default 32)
  --log-level L      debug, info, warn or error: the least severe events logged (default info)
  --log-format F     text (default) or json: one JSON object per line
  --log-file PATH    append the log to PATH (created owner-only) instead of stderr
  --integrity MODE   auto (default): frames from other hosts carry integrity tags, loopback
                     ones not; always: loopback ones too (PROTOCOL.md §2.4)
  --tls              serve TLS 1.3 with a certificate made from the node's own key: clients
                     pin it through the key they trust (PROTOCOL.md §2.5)
  --tls-cert FILE    serve TLS 1.3 with this certificate (PEM), and --tls-key FILE its key;
  --tls-ca FILE      the CA certificates sent after it, so that clients can verify the chain
  --nats URLS        also join a NATS backbone (nats://host:port, comma-separated servers of
                     one cluster): directed requests, broadcasts and presence over it, every
                     connection still authenticated end to end (PROTOCOL.md §9)
  --nats-creds FILE  the NATS credentials file (JWT and seed) of the account, if needed
  --nats-mesh NAME   which mesh's subjects to use on the backbone (default "default")`,
  options: serveOptions,
  run: async (p) => await runNode(p)
}

/**
 * Real nats-server processes for the NATS tests (Debian package nats-server 2.9): a
 * cluster of n servers routed to each other, on loopback or inside a network namespace
 * (through `exec`, e.g. a lab's), stopped by pid.
 */
import { spawn, spawnSync, type ChildProcess, type SpawnOptions } from 'node:child_process'
import { writeFileSync } from 'node:fs'
import { createServer } from 'node:net'
import { join } from 'node:path'
import { tempDir } from './node.js'

export interface NatsServer {
  name: string
  proc: ChildProcess
  /** Client port, on every address the server listens on. */
  port: number
  /** nats://address:port for a client on loopback (or on `address` when given). */
  url: (address?: string) => string
  output: () => string
  /** Kill it (SIGKILL by default: a server that dies). */
  kill: (signal?: NodeJS.Signals) => Promise<void>
  alive: () => boolean
}

export interface NatsCluster {
  servers: NatsServer[]
  /** The client URLs of every live-or-not server, for `--nats` (comma-separated when joined). */
  urls: (address?: string) => string[]
  stop: () => Promise<void>
}

/** Whether nats-server can run here, and if not, why (for node:test's skip). */
export function skipUnlessNatsServer (): string | false {
  const r = spawnSync('nats-server', ['--version'], { encoding: 'utf8' })
  if (r.error === undefined && r.status === 0) return false
  if (process.env.CI === 'true') return false
  return 'needs nats-server (Debian package nats-server; scripts/system-deps.sh installs it)'
}

/** A TCP port free on loopback now. */
export async function freePort (): Promise<number> {
  return await new Promise((resolve, reject) => {
    const s = createServer()
    s.once('error', reject)
    s.listen(0, '127.0.0.1', () => {
      const a = s.address()
      s.close(() => resolve(typeof a === 'object' && a !== null ? a.port : 0))
    })
  })
}

export interface ClusterOptions {
  /** Listen for clients on this address (default 127.0.0.1; 0.0.0.0 inside a namespace). */
  listen?: string
  /** Fixed ports (default: free loopback ports). */
  ports?: { client: number[], cluster: number[] }
  /** max_payload in bytes (default the server's, 1 MiB). */
  maxPayload?: number
  /** Start each process this way (default spawn; a lab's exec runs it in a namespace). */
  exec?: (argv: string[], opts: SpawnOptions) => ChildProcess
}

/**
 * Start n routed servers and wait until each has a route to every other one, so a
 * message published on any reaches subscribers on all.
 */
export async function startNatsCluster (n: number, opts: ClusterOptions = {}): Promise<NatsCluster> {
  const dir = tempDir('evalmesh-nats-')
  const client = opts.ports?.client ?? await Promise.all(Array.from({ length: n }, async () => await freePort()))
  const cluster = opts.ports?.cluster ?? await Promise.all(Array.from({ length: n }, async () => await freePort()))
  const listen = opts.listen ?? '127.0.0.1'
  const exec = opts.exec ?? ((argv: string[], o: SpawnOptions) => spawn(argv[0]!, argv.slice(1), o))
  const servers: NatsServer[] = []
  for (let i = 0; i < n; i++) {
    const name = `s${i + 1}`
    const routes = cluster.filter((_, j) => j !== i).map(p => `"nats-route://127.0.0.1:${p}"`).join(', ')
    const conf = join(dir, `${name}.conf`)
    // no_advertise: clients keep to the URLs they were given (a namespace's servers listen
    // on addresses some clients cannot reach); cluster routes stay on the loopback.
    writeFileSync(conf, [
      `server_name: ${name}`,
      `listen: "${listen}:${client[i]!}"`,
      ...(opts.maxPayload === undefined ? [] : [`max_payload: ${opts.maxPayload}`]),
      `cluster { name: evalmesh_test, listen: "127.0.0.1:${cluster[i]!}", no_advertise: true${n > 1 ? `, routes: [${routes}]` : ''} }`
    ].join('\n') + '\n')
    const proc = exec(['nats-server', '-c', conf], { stdio: ['ignore', 'pipe', 'pipe'] })
    let out = ''
    proc.stdout!.on('data', (d: Buffer) => { out += d.toString() })
    proc.stderr!.on('data', (d: Buffer) => { out += d.toString() })
    const exited = new Promise<void>(resolve => proc.once('exit', () => resolve()))
    const alive = (): boolean => proc.exitCode === null && proc.signalCode === null
    servers.push({
      name, proc, port: client[i]!, output: () => out, alive,
      url: (address = listen === '0.0.0.0' ? '127.0.0.1' : listen) => `nats://${address}:${client[i]!}`,
      kill: async (signal = 'SIGKILL') => { if (alive() && proc.pid !== undefined) process.kill(proc.pid, signal); await exited }
    })
  }
  const all = { servers, urls: (address?: string) => servers.map(s => s.url(address)), stop: async () => { await Promise.all(servers.map(async s => await s.kill('SIGTERM'))) } }
  try {
    // Each server logs "Server is ready", then one "Route connection created" per route.
    const deadline = Date.now() + 15_000
    while (!servers.every(s => /Server is ready/.test(s.output()) && (s.output().match(/Route connection created/g) ?? []).length >= n - 1)) {
      const dead = servers.find(s => !s.alive())
      if (dead !== undefined) throw new Error(`nats-server ${dead.name} exited:\n${dead.output()}`)
      if (Date.now() > deadline) throw new Error(`the NATS cluster did not form within 15 s:\n${servers.map(s => `${s.name}:\n${s.output()}`).join('\n')}`)
      await new Promise(resolve => setTimeout(resolve, 50))
    }
  } catch (err) {
    await all.stop()
    throw err
  }
  return all
}

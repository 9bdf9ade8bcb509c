/**
 * A simulated LAN for integration tests: network namespaces on a bridge, built and
 * torn down by scripts/netlab.sh (see there for the layout). Needs root.
 *
 * ```ts
 * const can = canUseNamespaces()
 * test('...', { skip: skipUnlessNamespaces(can) }, async () => {
 *   const lab = createLab(3)
 *   try {
 *     const child = lab.exec(lab.hosts[0], ['node', 'server.js'])
 *   } finally { lab.destroy() }
 * })
 * ```
 *
 * Every lab is also destroyed when the process exits or is interrupted, and every
 * process started through `exec` is killed by pid first.
 */
import { spawn, spawnSync, type ChildProcess, type SpawnOptions } from 'node:child_process'
import { existsSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import { dirname, join } from 'node:path'

/** The repository root, found from this file whether run from test/ or test/dist/. */
export const repoRoot: string = (() => {
  let dir = dirname(fileURLToPath(import.meta.url))
  for (let i = 0; i < 6; i++) {
    if (existsSync(join(dir, 'scripts', 'netlab.sh'))) return dir
    dir = dirname(dir)
  }
  throw new Error('cannot find the repository root (scripts/netlab.sh) above ' + fileURLToPath(import.meta.url))
})()

export const netlabScript = join(repoRoot, 'scripts', 'netlab.sh')

export interface LabHost {
  /** Short name, e.g. h1. */
  name: string
  /** Network namespace, e.g. em1234_0_1. */
  ns: string
  /** Address on the lab link: IPv4 from 198.18.0.0/15, or IPv6 from 2001:db8::/64 in an IPv6 lab. */
  address: string
  /** The host's interface inside its namespace. */
  iface: string
}

export interface Lab {
  prefix: string
  /** The namespace holding the lab's bridge br0. */
  hub: string
  /** The lab's /24 under 198.18.0.0/15, when made with `subnet` (LabOptions). */
  subnet?: number
  hosts: LabHost[]
  /** Run argv inside the host's namespace (ip netns exec); the child is killed on destroy(). */
  exec: (host: LabHost | number, argv: string[], opts?: SpawnOptions) => ChildProcess
  /** Kill what exec started (SIGKILL, by pid) and delete the namespaces. Safe to call twice. */
  destroy: () => void
}

export interface Capability { ok: boolean, why?: string }

let probed: Capability | undefined

/** Whether this process can build labs, and if not, why (root? ip? netns?). */
export function canUseNamespaces (): Capability {
  if (probed !== undefined) return probed
  probed = probe()
  return probed
}

function probe (): Capability {
  if (process.platform !== 'linux') return { ok: false, why: `network namespaces need Linux (this is ${process.platform})` }
  if (typeof process.getuid !== 'function' || process.getuid() !== 0) return { ok: false, why: 'network namespaces need root (run the tests as root)' }
  const ip = spawnSync('ip', ['-V'], { encoding: 'utf8' })
  if (ip.error !== undefined || ip.status !== 0) return { ok: false, why: 'the ip command is missing (install iproute2: scripts/system-deps.sh)' }
  const ns = `emprobe${process.pid}_`
  const add = spawnSync('ip', ['netns', 'add', ns], { encoding: 'utf8' })
  spawnSync('ip', ['netns', 'del', ns])
  if (add.status !== 0) return { ok: false, why: `cannot create a network namespace: ${add.stderr.trim() || `ip exited ${add.status}`}` }
  return { ok: true }
}

/**
 * For node:test's `skip` option: false when labs can be built. Under CI=true a
 * missing capability is a failure, not a skip: the test runs and createLab throws.
 */
export function skipUnlessNamespaces (cap: Capability = canUseNamespaces()): string | false {
  if (cap.ok || process.env.CI === 'true') return false
  return `needs network namespaces: ${cap.why ?? 'unavailable'}`
}

const live = new Set<Lab>()
let hooked = false
let counter = 0

function hookExit (): void {
  if (hooked) return
  hooked = true
  process.on('exit', () => { for (const lab of [...live]) lab.destroy(); for (const b of [...liveBackbones]) b.destroy() })
  for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
    process.once(sig, () => {
      for (const lab of [...live]) lab.destroy()
      for (const b of [...liveBackbones]) b.destroy()
      // Let the default action happen, so the exit status still says "killed by sig".
      process.kill(process.pid, sig)
    })
  }
}

function runNetlab (args: string[]): { status: number | null, stderr: string } {
  const r = spawnSync('bash', [netlabScript, ...args], { encoding: 'utf8', env: { ...process.env, NETLAB_QUIET: '1' } })
  return { status: r.status, stderr: (r.stderr ?? '') + (r.error !== undefined ? String(r.error) : '') }
}

/**
 * Processes started inside namespaces (ip netns exec), killed by pid (SIGKILL) on
 * `destroy`, which then runs `netlab.sh down` for the prefix: what a lab and a backbone share.
 */
function namespaceRunner (prefix: string, what: string, onDestroy: () => void): { exec: (ns: string, argv: string[], opts: SpawnOptions) => ChildProcess, destroy: () => void } {
  const children = new Set<ChildProcess>()
  let destroyed = false
  return {
    exec (ns, argv, opts) {
      if (destroyed) throw new Error(`${what} ${prefix} was destroyed`)
      if (argv.length === 0) throw new Error('exec needs a command')
      const child = spawn('ip', ['netns', 'exec', ns, ...argv], { stdio: ['ignore', 'pipe', 'pipe'], ...opts })
      children.add(child)
      child.once('exit', () => children.delete(child))
      return child
    },
    destroy () {
      if (destroyed) return
      destroyed = true
      for (const child of children) {
        if (child.pid !== undefined && child.exitCode === null && child.signalCode === null) {
          try { process.kill(child.pid, 'SIGKILL') } catch {}
        }
      }
      children.clear()
      // down also stops anything still inside the namespaces (grandchildren, daemons).
      runNetlab(['down', '--prefix', prefix])
      onDestroy()
    }
  }
}

export interface LabOptions {
  /** An IPv6-only LAN (netlab.sh --ipv6): no IPv4 address on any host, host i has 2001:db8::i. */
  ipv6?: boolean
  /**
   * The LAN is 198.18.<subnet>.0/24 (netlab.sh --subnet): host i has 198.18.<subnet>.i. Labs
   * on different subnets cannot route to each other; a backbone (createBackbone) joins them.
   */
  subnet?: number
}

/** Build a lab of n hosts. The prefix defaults to one unique to this process. */
export function createLab (n: number, prefix = `em${process.pid}_${counter++}_`, options: LabOptions = {}): Lab {
  const cap = canUseNamespaces()
  if (!cap.ok) throw new Error(`cannot build a network lab: ${cap.why ?? 'unavailable'}`)
  hookExit()
  // A stale lab from a crashed run with the same prefix would make 'up' refuse.
  runNetlab(['down', '--prefix', prefix])
  const upArgs = ['up', String(n), '--prefix', prefix, ...(options.ipv6 === true ? ['--ipv6'] : []), ...(options.subnet !== undefined ? ['--subnet', String(options.subnet)] : [])]
  const up = runNetlab(upArgs)
  if (up.status !== 0) {
    runNetlab(['down', '--prefix', prefix])
    throw new Error(`netlab ${upArgs.join(' ')} failed: ${up.stderr.trim()}`)
  }
  // The same addresses as netlab.sh's host_addr and host_addr6.
  const addressOf = (i: number): string => options.ipv6 === true
    ? `2001:db8::${i.toString(16)}`
    : options.subnet !== undefined ? `198.18.${options.subnet}.${i}` : `198.18.${Math.floor(i / 256)}.${i % 256}`
  const hosts: LabHost[] = Array.from({ length: n }, (_, k) => {
    const i = k + 1
    return { name: `h${i}`, ns: `${prefix}${i}`, address: addressOf(i), iface: 'lan0' }
  })
  const runner = namespaceRunner(prefix, 'lab', () => live.delete(lab))
  const lab: Lab = {
    prefix,
    hub: `${prefix}-hub`,
    ...(options.subnet !== undefined ? { subnet: options.subnet } : {}),
    hosts,
    exec (host, argv, opts = {}) {
      const h = typeof host === 'number' ? hosts[host] : host
      if (h === undefined || !hosts.includes(h)) throw new Error(`no such host in lab ${prefix}: ${String(typeof host === 'number' ? host : host.name)}`)
      return runner.exec(h.ns, argv, opts)
    },
    destroy: runner.destroy
  }
  live.add(lab)
  return lab
}

/** A namespace on several labs' bridges at once, routing for none of them (createBackbone). */
export interface Backbone {
  ns: string
  /** Its address on each lab, in the order given: 198.18.<subnet>.250. */
  addresses: string[]
  /** Run argv inside the backbone (ip netns exec); the child is killed on destroy(). */
  exec: (argv: string[], opts?: SpawnOptions) => ChildProcess
  /** Kill what exec started (by pid) and delete the namespace (its links go with it). Safe to call twice. */
  destroy: () => void
}

/**
 * A namespace with one link on each lab's bridge (the labs made with `subnet`), e.g. for
 * servers every LAN reaches, as a NATS cluster is in the NATS tests. It forwards nothing
 * (IPv4 forwarding off), so the labs still cannot reach each other through it. Its
 * namespace is `<prefix>-hub`, so `netlab.sh down --prefix <prefix>` removes it too.
 */
export function createBackbone (labs: Lab[], prefix = `em${process.pid}_${counter++}_`): Backbone {
  const cap = canUseNamespaces()
  if (!cap.ok) throw new Error(`cannot build a backbone: ${cap.why ?? 'unavailable'}`)
  hookExit()
  runNetlab(['down', '--prefix', prefix])
  const ns = `${prefix}-hub`
  const ip = (...args: string[]): void => {
    const r = spawnSync('ip', args, { encoding: 'utf8' })
    if (r.status !== 0) throw new Error(`ip ${args.join(' ')} failed: ${(r.stderr ?? '').trim()}`)
  }
  const runner = namespaceRunner(prefix, 'backbone', () => liveBackbones.delete(backbone))
  const backbone: Backbone = {
    ns,
    addresses: [],
    exec: (argv, opts = {}) => runner.exec(ns, argv, opts),
    destroy: runner.destroy
  }
  liveBackbones.add(backbone)
  try {
    ip('netns', 'add', ns)
    ip('-n', ns, 'link', 'set', 'lo', 'up')
    spawnSync('ip', ['netns', 'exec', ns, 'sysctl', '-qw', 'net.ipv4.ip_forward=0'])
    labs.forEach((lab, k) => {
      if (lab.subnet === undefined) throw new Error(`lab ${lab.prefix} has no subnet: make it with createLab(n, prefix, { subnet })`)
      const address = `198.18.${lab.subnet}.250`
      ip('-n', lab.hub, 'link', 'add', `bb${k}`, 'type', 'veth', 'peer', 'name', `lan${k}`, 'netns', ns)
      ip('-n', lab.hub, 'link', 'set', `bb${k}`, 'master', 'br0', 'up')
      ip('-n', ns, 'addr', 'add', `${address}/24`, 'dev', `lan${k}`)
      ip('-n', ns, 'link', 'set', `lan${k}`, 'up')
      backbone.addresses.push(address)
    })
  } catch (err) {
    backbone.destroy()
    throw err
  }
  return backbone
}

const liveBackbones = new Set<Backbone>()

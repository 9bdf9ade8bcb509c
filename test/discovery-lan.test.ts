/**
 * Discovery across a simulated LAN of network namespaces (test/support/netlab.ts):
 * our nodes find each other, say goodbye, expire, find late starters, survive
 * garbage, and are seen by two independent mDNS stacks (avahi and python-zeroconf).
 * Everything runs twice: on an IPv4 LAN (224.0.0.251, A records) and on an IPv6-only one
 * (ff02::fb, AAAA records; issue 12).
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { spawnSync, type ChildProcess } from 'node:child_process'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { createInterface } from 'node:readline'
import { canUseNamespaces, createLab, repoRoot, skipUnlessNamespaces, type Lab, type LabHost } from './support/netlab.js'

const RUNNER = join(repoRoot, 'packages/discovery/dist/test/fixtures/runner.js')
const ZC_BROWSE = join(repoRoot, 'packages/discovery/test/fixtures/zeroconf-browse.py')
const PYTHON = '/usr/bin/python3' // Debian's, which has python3-zeroconf; not a pyenv shim
const WAIT_MS = 20_000 // an upper bound for "eventually", never a performance claim

interface PeerLine { name: string, id: string, address: string, port: number, version: number, caps: string[], source: string, lastSeen: number }

/** A child process that prints JSON lines, with a way to wait for a condition on them. */
class Proc {
  readonly lines: Array<Record<string, any>> = []
  readonly stderr: string[] = []
  exited = false
  readonly #waiters = new Set<() => void>()

  constructor (readonly label: string, readonly child: ChildProcess) {
    createInterface({ input: child.stdout! }).on('line', line => {
      let msg: Record<string, any>
      try { msg = JSON.parse(line) } catch { msg = { ev: 'text', line } }
      this.lines.push(msg)
      this.onMessage(msg)
      this.#poke()
    })
    createInterface({ input: child.stderr! }).on('line', line => { this.stderr.push(line); this.#poke() })
    child.once('exit', () => { this.exited = true; this.#poke() })
  }

  protected onMessage (_msg: Record<string, any>): void {}

  #poke (): void { for (const w of [...this.#waiters]) w() }

  async waitFor (what: string, pred: () => boolean, ms = WAIT_MS): Promise<void> {
    if (pred()) return
    await new Promise<void>((resolve, reject) => {
      const check = (): void => {
        if (!pred()) return
        cleanup(); resolve()
      }
      const timer = setTimeout(() => {
        cleanup()
        const tail = this.lines.slice(-8).map(l => JSON.stringify(l)).join('\n  ')
        reject(new Error(`${this.label}: gave up waiting for ${what} after ${ms} ms; last lines:\n  ${tail}\n  stderr: ${this.stderr.slice(-5).join(' | ')}`))
      }, ms)
      const cleanup = (): void => { clearTimeout(timer); this.#waiters.delete(check) }
      this.#waiters.add(check)
    })
  }
}

/** A discovery runner on one lab host, tracking its peer table from its events. */
class Node extends Proc {
  readonly peers = new Map<string, PeerLine>()

  constructor (readonly name: string, child: ChildProcess) {
    super(name, child)
  }

  protected override onMessage (msg: Record<string, any>): void {
    const peer = msg.peer as PeerLine | undefined
    if (peer === undefined) return
    if (msg.ev === 'appear' || msg.ev === 'update') this.peers.set(peer.name, peer)
    if (msg.ev === 'disappear') this.peers.delete(peer.name)
  }

  names (): string[] { return [...this.peers.keys()].sort() }

  async waitPeers (expected: string[]): Promise<void> {
    const want = [...expected].sort()
    await this.waitFor(`peers ${want.join(',')} (has ${this.names().join(',')})`,
      () => JSON.stringify(this.names()) === JSON.stringify(want))
  }
}

function startNode (lab: Lab, host: LabHost, name: string, ttl: number): Node {
  const child = lab.exec(host, [process.execPath, RUNNER, '--address', host.address, '--name', name,
    '--ttl', String(ttl), '--id', `id-${name}`, '--port', '6680', '--caps', 'eval,megatest'])
  return new Node(name, child)
}

function which (cmd: string): boolean {
  return spawnSync('sh', ['-c', `command -v ${cmd}`]).status === 0
}

function toolsMissing (): string | undefined {
  const missing = ['avahi-daemon', 'avahi-browse', 'dbus-daemon'].filter(c => !which(c))
  if (spawnSync(PYTHON, ['-c', 'import zeroconf']).status !== 0) missing.push('python3-zeroconf')
  return missing.length > 0 ? `missing ${missing.join(', ')} (run scripts/system-deps.sh)` : undefined
}

/** Skip interop checks when their tools are absent, except under CI, where that is a failure. */
function interopSkip (): string | false {
  const why = toolsMissing()
  if (why === undefined) return false
  if (process.env.CI === 'true') throw new Error(`interop tools required under CI: ${why}`)
  return why
}

/**
 * avahi-daemon confined to one namespace: its own D-Bus on a private socket, its
 * pid file on a tmpfs mounted in the namespace's private mount table, and only the
 * lab interface allowed, so it never speaks on the machine's own links.
 */
async function startAvahi (lab: Lab, host: LabHost, dir: string, v6: boolean): Promise<{ env: NodeJS.ProcessEnv }> {
  const bus = join(dir, 'bus')
  writeFileSync(join(dir, 'bus.conf'), `<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>system</type>
  <listen>unix:path=${bus}</listen>
  <auth>EXTERNAL</auth>
  <!-- permissive, but the socket lives in a 0700 directory: only root reaches it -->
  <policy context="default">
    <allow user="*"/>
    <allow own="*"/>
    <allow send_destination="*" eavesdrop="true"/>
    <allow eavesdrop="true"/>
  </policy>
</busconfig>
`)
  writeFileSync(join(dir, 'avahi.conf'), `[server]
host-name=emavahi
use-ipv4=${v6 ? 'no' : 'yes'}
use-ipv6=${v6 ? 'yes' : 'no'}
allow-interfaces=${host.iface}
enable-dbus=yes
[wide-area]
enable-wide-area=no
[publish]
publish-hinfo=no
publish-workstation=no
`)
  const env = { ...process.env, DBUS_SYSTEM_BUS_ADDRESS: `unix:path=${bus}` }
  const dbus = new Proc('dbus-daemon', lab.exec(host, ['dbus-daemon', '--config-file', join(dir, 'bus.conf'), '--nofork', '--print-address']))
  await dbus.waitFor('the bus address', () => dbus.lines.some(l => l.ev === 'text' && String(l.line).startsWith('unix:')))
  const avahi = new Proc('avahi-daemon', lab.exec(host, ['sh', '-c',
    'mkdir -p /run/avahi-daemon && mount -t tmpfs tmpfs /run/avahi-daemon && ' +
    `exec avahi-daemon -f '${join(dir, 'avahi.conf')}' --no-drop-root --no-chroot --no-rlimits`], { env }))
  await avahi.waitFor('avahi startup', () => avahi.stderr.some(l => l.includes('Server startup complete')) || avahi.exited)
  assert.equal(avahi.exited, false, `avahi-daemon exited: ${avahi.stderr.join(' | ')}`)
  return { env }
}

for (const family of ['IPv4', 'IPv6'] as const) {
  test(`discovery on a simulated ${family} LAN`, { skip: skipUnlessNamespaces(canUseNamespaces()), timeout: 180_000 }, async t => {
    const v6 = family === 'IPv6'
    const lab = createLab(6, undefined, { ipv6: v6 })
    const dir = mkdtempSync(join(tmpdir(), 'evalmesh-lan-'))
    const [h1, h2, h3, h4, h5, h6] = lab.hosts as [LabHost, LabHost, LabHost, LabHost, LabHost, LabHost]
    const nodes: Node[] = []
    const start = (host: LabHost, name: string, ttl: number): Node => {
      const n = startNode(lab, host, name, ttl)
      nodes.push(n)
      return n
    }
    try {
      const interop = interopSkip()
      // zeroconf watches from the start, so it also sees the goodbye later on.
      const zc = interop === false
        ? new Proc('zeroconf', lab.exec(h6, [PYTHON, ZC_BROWSE, h6.address, '120']))
        : undefined

      // Short TTLs, so a killed node leaves quickly; n3's is long, so that only its
      // goodbye can explain it leaving within the test.
      const n1 = start(h1, 'n1', 3)
      const n2 = start(h2, 'n2', 3)
      const n3 = start(h3, 'n3', 120)

      await t.test('every node sees every other, and not itself', async () => {
        await Promise.all([n1.waitPeers(['n2', 'n3']), n2.waitPeers(['n1', 'n3']), n3.waitPeers(['n1', 'n2'])])
        assert.deepEqual(n1.peers.get('n2'), {
          name: 'n2', id: 'id-n2', address: h2.address, port: 6680, version: 1, caps: ['eval', 'megatest'], source: 'mdns', lastSeen: n1.peers.get('n2')?.lastSeen
        })
        assert.equal(n3.peers.get('n1')?.address, h1.address)
      })

      const n4 = start(h4, 'n4', 3)
      await t.test('a late starter finds everyone and everyone finds it', async () => {
        await Promise.all([
          n1.waitPeers(['n2', 'n3', 'n4']), n2.waitPeers(['n1', 'n3', 'n4']),
          n3.waitPeers(['n1', 'n2', 'n4']), n4.waitPeers(['n1', 'n2', 'n3'])
        ])
      })

      await t.test('peers stay listed past their TTL while alive (re-queries keep the table fresh)', async () => {
        // n1, n2 and n4 advertise a 3 s TTL; wait out two of them and check nothing dropped.
        const before = nodes.map(n => n.lines.filter(l => l.ev === 'disappear').length)
        await new Promise(resolve => setTimeout(resolve, 6500))
        assert.deepEqual(nodes.map(n => n.lines.filter(l => l.ev === 'disappear').length), before)
        assert.deepEqual(n3.names(), ['n1', 'n2', 'n4'])
      })

      await t.test('avahi-browse lists and resolves our nodes', { skip: interop }, async () => {
        const { env } = await startAvahi(lab, h5, dir, v6)
        let resolved: string[] = []
        for (let attempt = 0; attempt < 10; attempt++) {
          const r = spawnSync('ip', ['netns', 'exec', h5.ns, 'avahi-browse', '-r', '-p', '-t', '_evalmesh._tcp'],
            { env, encoding: 'utf8', timeout: 15_000 })
          resolved = r.stdout.split('\n').filter(l => l.startsWith('=;')).sort()
          if (resolved.length === 4) break
          await new Promise(resolve => setTimeout(resolve, 500))
        }
        assert.equal(resolved.length, 4, `avahi-browse resolved: ${resolved.join('\n')}`)
        for (const [i, host] of [h1, h2, h3, h4].entries()) {
          const n = `n${i + 1}`
          const line = resolved.find(l => l.split(';')[3] === n)
          assert.ok(line !== undefined, `${n} missing from avahi-browse`)
          const f = line.split(';')
          assert.deepEqual(f.slice(1, 9), [h5.iface, family, n, '_evalmesh._tcp', 'local', `${n}.local`, host.address, '6680'])
          assert.match(f[9] ?? '', new RegExp(`"id=id-${n}"`))
          assert.match(f[9] ?? '', /"proto=1"/)
          assert.match(f[9] ?? '', /"caps=eval,megatest"/)
        }
        const res = spawnSync('ip', ['netns', 'exec', h5.ns, 'avahi-resolve', v6 ? '-6' : '-4', '-n', 'n2.local'], { env, encoding: 'utf8', timeout: 15_000 })
        assert.equal(res.stdout.trim().split(/\s+/).join(' '), `n2.local ${h2.address}`)
      })

      await t.test('python3-zeroconf browses and resolves our nodes', { skip: interop }, async () => {
        assert.ok(zc !== undefined)
        const resolved = (): Array<Record<string, any>> => zc.lines.filter(l => l.ev === 'resolved')
        await zc.waitFor('4 resolved services', () => new Set(resolved().map(l => l.name)).size === 4)
        for (const [i, host] of [h1, h2, h3, h4].entries()) {
          const n = `n${i + 1}`
          const r = resolved().find(l => l.name === n)
          assert.deepEqual(r, {
            ev: 'resolved', name: n, address: host.address, port: 6680, server: `${n}.local.`,
            txt: { id: `id-${n}`, proto: '1', caps: 'eval,megatest' }
          })
        }
      })

      await t.test('a node stopped with SIGTERM says goodbye and leaves every table at once', async () => {
        n3.child.kill('SIGTERM')
        await n3.waitFor('a clean stop', () => n3.lines.some(l => l.ev === 'stopped'))
        // n3's records have a 120 s TTL: leaving within WAIT_MS can only be the goodbye.
        await Promise.all([n1.waitPeers(['n2', 'n4']), n2.waitPeers(['n1', 'n4']), n4.waitPeers(['n1', 'n2'])])
        if (zc !== undefined) await zc.waitFor('zeroconf removing n3', () => zc.lines.some(l => l.ev === 'removed' && l.name === 'n3'))
      })

      await t.test('a node killed with SIGKILL leaves the tables when its TTL runs out', async () => {
        n2.child.kill('SIGKILL')
        await Promise.all([n1.waitPeers(['n4']), n4.waitPeers(['n1'])])
      })

      await t.test('garbage and malformed records neither crash nodes nor enter tables', async () => {
        const script = `
          import dgram from 'node:dgram'
          import { createRequire } from 'node:module'
          const packet = createRequire(${JSON.stringify(join(repoRoot, 'package.json'))})('dns-packet')
          const s = dgram.createSocket({ type: ${JSON.stringify(v6 ? 'udp6' : 'udp4')}, reuseAddr: true })
          await new Promise(r => s.bind(0, ${JSON.stringify(h6.address)}, r))
          s.setMulticastInterface(${JSON.stringify(v6 ? `::%${h6.iface}` : h6.address)})
          const send = b => new Promise(r => s.send(b, 5353, ${JSON.stringify(v6 ? 'ff02::fb' : '224.0.0.251')}, r))
          const A = ${JSON.stringify(v6 ? 'AAAA' : 'A')}
          const T = '_evalmesh._tcp.local'
          for (let i = 0; i < 20; i++) await send(Buffer.from(Array.from({ length: 1 + i * 37 }, () => Math.floor(Math.random() * 256))))
          const good = packet.encode({ type: 'response', answers: [{ name: T, type: 'PTR', ttl: 120, data: 'x.' + T }] })
          await send(good.subarray(0, good.length - 3))
          await send(packet.encode({ type: 'response', answers: [
            { name: T, type: 'PTR', ttl: 120, data: 'evil.' + T },
            { name: 'evil.' + T, type: 'SRV', ttl: 120, data: { port: 0, target: 'evil.local' } },
            { name: 'evil.' + T, type: 'TXT', ttl: 120, data: ['proto=1'] },
            { name: 'evil.local', type: A, ttl: 120, data: ${JSON.stringify(h6.address)} },
            { name: 'noid.' + T, type: 'SRV', ttl: 120, data: { port: 80, target: 'noid.local' } },
            { name: 'noid.' + T, type: 'TXT', ttl: 120, data: ['caps=a'] },
            { name: 'noid.local', type: A, ttl: 120, data: ${JSON.stringify(h6.address)} },
            { name: 'bad name.' + T, type: 'SRV', ttl: 120, data: { port: 80, target: 'bad.local' } },
            { name: 'bad name.' + T, type: 'TXT', ttl: 120, data: ['id=x'] },
            { name: 'bad.local', type: A, ttl: 120, data: ${JSON.stringify(h6.address)} }
          ] }))
          await send(packet.encode({ type: 'query', questions: Array.from({ length: 40 }, (_, i) => ({ name: 'q' + i + '.' + T, type: 'ANY' })) }))
          s.close()
        `
        const g = new Proc('garbage', lab.exec(h6, [process.execPath, '--input-type=module', '-e', script]))
        await g.waitFor('the sender to finish', () => g.exited)
        assert.equal(g.child.exitCode, 0, `garbage sender failed: ${g.stderr.join(' | ')}`)
        // Proof of life after the garbage: both nodes still find a newcomer.
        const n5 = start(h3, 'n5', 3)
        await Promise.all([n1.waitPeers(['n4', 'n5']), n4.waitPeers(['n1', 'n5']), n5.waitPeers(['n1', 'n4'])])
        assert.equal(n1.exited, false)
        assert.equal(n4.exited, false)
        assert.ok(n1.lines.some(l => l.ev === 'warning'), 'undecodable packets are reported as warnings')
      })

      await t.test('a node asking for a taken name advertises as name-2; its goodbye leaves the owner listed', async () => {
        const twin = new Node('twin', lab.exec(h2, [process.execPath, RUNNER, '--address', h2.address, '--name', 'n4', '--ttl', '3', '--id', 'id-twin', '--port', '6680']))
        nodes.push(twin)
        await twin.waitFor('the conflict', () => twin.lines.some(l => l.ev === 'conflict'))
        const conflict = twin.lines.find(l => l.ev === 'conflict')!.conflict
        assert.deepEqual(conflict, { name: 'n4', address: h4.address, renamedTo: 'n4-2' })
        await n1.waitPeers(['n4', 'n4-2', 'n5'])
        assert.equal(n1.peers.get('n4')?.id, 'id-n4')
        assert.equal(n1.peers.get('n4-2')?.id, 'id-twin')
        assert.equal(n1.peers.get('n4-2')?.address, h2.address)
        twin.child.kill('SIGTERM')
        await twin.waitFor('a clean stop', () => twin.lines.some(l => l.ev === 'stopped'))
        await n1.waitPeers(['n4', 'n5'])
        assert.ok(!n1.lines.some(l => l.ev === 'disappear' && l.peer?.name === 'n4'), 'n4 itself never left n1\'s table')
      })
    } finally {
      for (const n of nodes) if (!n.exited && n.child.pid !== undefined) n.child.kill('SIGKILL')
      lab.destroy()
      rmSync(dir, { recursive: true, force: true })
    }
  })
}

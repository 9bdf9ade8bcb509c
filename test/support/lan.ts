/**
 * Nodes and a client process on a simulated LAN (netlab.ts): `evalmesh serve` inside a lab
 * host, and the driver (test/fixtures/lan-driver.mjs) that runs client calls there.
 */
import { type ChildProcess } from 'node:child_process'
import { copyFileSync, mkdtempSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { createInterface } from 'node:readline'
import { formatHost } from '@evalmesh/protocol'
import { repoRoot, type Lab } from './netlab.js'
import { CLI } from './node.js'

export const DRIVER = join(repoRoot, 'test', 'fixtures', 'lan-driver.mjs')

export interface LabNode { name: string, address: string, host: string, stateDir: string, proc: ChildProcess, output: string[] }

export function stateDirWith (meshDir: string, name: string): string {
  const dir = mkdtempSync(join(tmpdir(), `evalmesh-lan-${name}-`))
  copyFileSync(join(meshDir, 'mesh.key'), join(dir, 'mesh.key'))
  writeFileSync(join(dir, 'node.name'), name + '\n')
  return dir
}

/**
 * `lan` starts the node with a bare --lan, which must find the host's one LAN address by
 * itself; `args` are more serve options.
 */
export async function startLabNode (lab: Lab, i: number, meshDir: string, opts: { name?: string, lan?: boolean, args?: string[] } = {}): Promise<LabNode> {
  const h = lab.hosts[i]!
  const name = opts.name
  const stateDir = stateDirWith(meshDir, h.name)
  const proc = lab.exec(h, [process.execPath, '--no-node-snapshot', CLI, 'serve', ...(opts.lan === true ? ['--lan'] : ['--listen', h.address]), ...(opts.args ?? []), '--name', name ?? h.name,
    '--state-dir', stateDir, '--discovery-ttl', '4', '--concurrency', '8'])
  const output: string[] = []
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${h.name} did not start:\n${output.join('\n')}`)), 30_000)
    createInterface({ input: proc.stdout! }).on('line', (line) => { output.push(line); if (/listening on/.test(line)) { clearTimeout(timer); resolve() } })
    createInterface({ input: proc.stderr! }).on('line', (line) => output.push(line))
    proc.once('exit', (code) => { clearTimeout(timer); reject(new Error(`${h.name} exited ${code}:\n${output.join('\n')}`)) })
  })
  return { name: name ?? h.name, address: h.address, host: formatHost(h.address, 6680), stateDir, proc, output }
}

/** The client process: send a command, await the answer with the same id. */
export class Driver {
  #next = 1
  readonly #waiting = new Map<number, (r: any) => void>()
  constructor (readonly proc: ChildProcess) {
    createInterface({ input: proc.stdout! }).on('line', (line) => {
      const msg = JSON.parse(line) as { id: number }
      this.#waiting.get(msg.id)?.(msg)
      this.#waiting.delete(msg.id)
    })
  }

  async send (cmd: Record<string, unknown>): Promise<any> {
    const id = this.#next++
    return await new Promise((resolve) => {
      this.#waiting.set(id, resolve)
      this.proc.stdin!.write(JSON.stringify({ id, ...cmd }) + '\n')
    })
  }
}

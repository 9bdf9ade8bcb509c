/**
 * Run the evalmesh CLI in a child process with the ci and area-server commands
 * registered as main.ts registers them, for the CI agent's and Megatest's
 * end-to-end tests. Resolves with the exit code and both outputs.
 */
import { spawn } from 'node:child_process'
import { join } from 'node:path'
import { ROOT } from './node.js'

export interface CliResult { code: number | null, stdout: string, stderr: string }

export async function runCiCli (args: string[], opts: { env?: Record<string, string>, timeoutMs?: number } = {}): Promise<CliResult> {
  const script = `
    const { main, commands } = await import(${JSON.stringify(join(ROOT, 'apps/cli/dist/src/main.js'))})
    const ci = await import(${JSON.stringify(join(ROOT, 'apps/cli/dist/src/commands/ci.js'))})
    for (const c of [ci.ciCmd, ci.areaServerCmd]) if (!commands.some(x => x.name === c.name)) commands.push(c)
    process.exitCode = await main(process.argv.slice(1))
  `
  const proc = spawn(process.execPath, ['--no-node-snapshot', '--input-type=module', '-e', script, ...args], { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ...opts.env } })
  let stdout = ''
  let stderr = ''
  proc.stdout.on('data', (c: Buffer) => { stdout += c.toString() })
  proc.stderr.on('data', (c: Buffer) => { stderr += c.toString() })
  const timer = setTimeout(() => proc.kill('SIGKILL'), opts.timeoutMs ?? 120_000)
  const code = await new Promise<number | null>(resolve => proc.once('exit', resolve))
  clearTimeout(timer)
  return { code, stdout, stderr }
}

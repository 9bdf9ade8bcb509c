import assert from 'node:assert/strict'
import type { EvalLimits } from '@evalmesh/protocol'
import { createSandbox, type Sandbox, type SandboxInit, type SandboxResult } from '../src/index.js'

export const LIMITS: EvalLimits = { timeoutMs: 400, memoryMb: 32, resultBytes: 64 * 1024, outputBytes: 256 }

let seq = 0

export async function startSandbox (init: Partial<SandboxInit> = {}): Promise<Sandbox> {
  const sandbox = createSandbox({
    limits: LIMITS,
    grants: [],
    hostCall: async () => undefined,
    ...init
  })
  await sandbox.start()
  return sandbox
}

export function run (sandbox: Sandbox, form: string, session = 'c1/default', limits: Partial<EvalLimits> = {}, txn = `t/${++seq}`): Promise<SandboxResult> {
  return sandbox.run({ txn, session, form, limits: { ...LIMITS, ...limits } })
}

/** Everything a user sees of a result but the time it took. */
export function seen (r: SandboxResult): unknown {
  const { seconds, ...rest } = r
  assert.equal(typeof seconds, 'number')
  return rest
}

/** The value of a form that must succeed. */
export async function value (sandbox: Sandbox, form: string, session?: string): Promise<unknown> {
  const r = await run(sandbox, form, session)
  if (!r.ok) assert.fail(`${form} failed: ${r.error.code} ${r.error.name}: ${r.error.message}`)
  return r.value
}

/** The error of a form that must fail. */
export async function failure (sandbox: Sandbox, form: string, session?: string, limits?: Partial<EvalLimits>) {
  const r = await run(sandbox, form, session, limits)
  if (r.ok) assert.fail(`${form} should have failed but returned ${String(r.value)}`)
  return r.error
}

export function noHostPaths (text: string | undefined): void {
  if (text === undefined) return
  assert.doesNotMatch(text, /\/work\/|node_modules|file:\/\/|node:internal|dist\/src|isolated-vm/)
}

import { spawn } from 'node:child_process'
import { existsSync, statSync } from 'node:fs'
import { isAbsolute } from 'node:path'

/**
 * The worker's half of a Megatest ezstep, as an operator function: a node that is to
 * run tests from Megatest areas loads this module (`evalmesh serve --functions
 * apps/ci-agent/dist/src/ezstep.js`). Like launch.scm, it runs the step's command
 * with bash in the test's run directory, output to `<step>.log` there, `.` at the end
 * of PATH, and the test's variables in the environment; the exit code is the step's.
 *
 * This is a remote shell for whoever may call it: grant `ezstep` (the node's policy)
 * only to the CI agent's key. The run directory must be visible at the same path on
 * this node as on the agent's host (a shared disk, as Megatest needs).
 *
 * It imports nothing of the mesh, so a node loads it alone.
 */

export interface EzstepRequest {
  /** The test's run directory, absolute and existing. */
  rundir: string
  step: string
  command: string
  env?: Record<string, string>
}

export interface EzstepResult {
  status: 'PASS' | 'FAIL'
  exitCode: number
  /** The step's log, relative to the run directory. */
  logfile: string
  comment: string
}

const STEP_NAME = /^[A-Za-z0-9_][A-Za-z0-9_.+-]*$/
const ENV_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/
/** Megatest's kill: SIGTERM to the step's processes, SIGKILL 5 s later. */
const KILL_GRACE_MS = 5_000

function check (req: unknown): EzstepRequest {
  if (typeof req !== 'object' || req === null) throw new TypeError('ezstep: give {rundir, step, command, env}')
  const r = req as Record<string, unknown>
  if (typeof r.rundir !== 'string' || !isAbsolute(r.rundir) || !existsSync(r.rundir) || !statSync(r.rundir).isDirectory()) {
    throw new TypeError('ezstep: rundir must be an existing absolute directory on this node')
  }
  if (typeof r.step !== 'string' || !STEP_NAME.test(r.step)) throw new TypeError('ezstep: step must be letters, digits, _ . + -')
  if (typeof r.command !== 'string' || r.command.trim() === '') throw new TypeError('ezstep: command must be a non-empty string')
  const env: Record<string, string> = {}
  if (r.env !== undefined) {
    if (typeof r.env !== 'object' || r.env === null) throw new TypeError('ezstep: env must be an object of strings')
    for (const [k, v] of Object.entries(r.env)) {
      if (!ENV_NAME.test(k) || typeof v !== 'string' || v.includes('\0')) throw new TypeError(`ezstep: env ${JSON.stringify(k)} must be a plain name with a string value`)
      env[k] = v
    }
  }
  return { rundir: r.rundir, step: r.step, command: r.command, env }
}

const BASH = existsSync('/bin/bash') ? '/bin/bash' : '/bin/sh'

/** Run one ezstep; resolves with its exit code, rejects when aborted (the step's processes are killed). */
export async function ezstep (this: { signal?: AbortSignal } | undefined, request: unknown): Promise<EzstepResult> {
  const req = check(request)
  const signal = this?.signal
  const logfile = `${req.step}.log`
  // launch.scm: (conc stepcmd " > " stepname ".log 2>&1"), run by /bin/bash -c; as a
  // group, so that all of a compound command (a; b) goes to the log, not only its end.
  const child = spawn(BASH, ['-c', `{ ${req.command}
} > ${logfile} 2>&1`], {
    cwd: req.rundir,
    env: { ...process.env, ...req.env, PATH: `${process.env.PATH ?? ''}:.` },
    stdio: 'ignore',
    detached: true // its own process group, so a kill reaches what the step started
  })
  const killGroup = (sig: NodeJS.Signals): void => { try { if (child.pid !== undefined) process.kill(-child.pid, sig) } catch { /* gone */ } }
  let killed = false
  let hard: NodeJS.Timeout | undefined
  const onAbort = (): void => {
    killed = true
    killGroup('SIGTERM')
    hard = setTimeout(() => killGroup('SIGKILL'), KILL_GRACE_MS)
    hard.unref()
  }
  if (signal?.aborted === true) onAbort()
  else signal?.addEventListener('abort', onAbort, { once: true })
  try {
    const exitCode = await new Promise<number>((resolve, reject) => {
      child.once('error', reject)
      child.once('exit', (code, sig) => resolve(code ?? (sig === null ? 1 : 128)))
    })
    if (killed) throw new Error(`step ${req.step} was stopped (exit ${exitCode})`)
    return { status: exitCode === 0 ? 'PASS' : 'FAIL', exitCode, logfile, comment: exitCode === 0 ? '' : `exit code ${exitCode}` }
  } finally {
    signal?.removeEventListener('abort', onAbort)
    if (!killed) clearTimeout(hard)
  }
}

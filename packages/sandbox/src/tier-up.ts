/**
 * V8's tier-up, brought forward for the long-running processes of a node: the node itself
 * and its sandbox processes.
 *
 * V8 compiles a function with its optimizing compiler only once the function has used up
 * its interrupt budget a few times (the budget is a count of bytecode executed; Node 20's
 * default is 66 KiB). A request crosses a few hundred small functions once each, so with
 * the default a fresh node needs several thousand requests to reach its steady speed:
 * measured here, `remoteEval('1+1')` on a fresh node answered its calls 200-2,200 at a p50
 * of 136-149 µs, and at 81-93 µs with an eighth of the budget; a warm node is as fast
 * either way (BENCHMARKS.md, "Early tier-up"). What it costs is compiling sooner, on V8's
 * background threads, some functions a longer wait would have left unoptimized.
 *
 * Only processes evalmesh owns get it: the CLI's `serve` (and what runs a node through it)
 * and the sandbox processes forked here. A program that embeds the server or the client
 * library keeps its own V8 settings, and so does a node started with its own
 * `--interrupt-budget` (`node --interrupt-budget=67584 evalmesh.js serve` measures the
 * default): that flag then goes to its sandbox processes too.
 */
import { setFlagsFromString } from 'node:v8'

/** An eighth of Node 20's default budget (67,584): see above for what was measured. */
export const EARLY_TIER_UP_FLAGS: readonly string[] = ['--interrupt-budget=8192']

/** The budget this process was started with (`node --interrupt-budget=N ...`), if any. */
const givenFlags = (): string[] => process.execArgv.filter(a => a.startsWith('--interrupt-budget='))

/** The tier-up flags for this process and the sandbox processes it forks: the ones it was started with, or EARLY_TIER_UP_FLAGS. */
export function tierUpFlags (): string[] {
  const given = givenFlags()
  return given.length > 0 ? given : [...EARLY_TIER_UP_FLAGS]
}

/** Give this process EARLY_TIER_UP_FLAGS (once, before its hot path first runs), unless it was started with a budget of its own. */
export function tierUpEarly (): void {
  if (givenFlags().length > 0) return
  for (const flag of EARLY_TIER_UP_FLAGS) setFlagsFromString(flag)
}

import type { EvalLimits } from '@evalmesh/protocol'

/** The smallest isolate heap a run gets: below it V8 cannot even start a context. */
export const MIN_MEMORY_MB = 8

/**
 * The one place limits are clamped: a request may tighten the node's ceilings,
 * never raise them. A missing, non-numeric or non-positive field takes the ceiling.
 */
export function clampLimits (asked: Partial<EvalLimits> | undefined, ceiling: EvalLimits): EvalLimits {
  const pick = (v: unknown, max: number): number => typeof v === 'number' && Number.isFinite(v) && v > 0 ? Math.min(v, max) : max
  return {
    timeoutMs: pick(asked?.timeoutMs, ceiling.timeoutMs),
    memoryMb: Math.max(MIN_MEMORY_MB, pick(asked?.memoryMb, ceiling.memoryMb)),
    resultBytes: pick(asked?.resultBytes, ceiling.resultBytes),
    outputBytes: pick(asked?.outputBytes, ceiling.outputBytes)
  }
}

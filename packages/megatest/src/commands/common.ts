import { EvalMeshError } from '@evalmesh/protocol'
import type { AreaContext } from '../area.js'
import { TEST_RECORD_FIELDS } from '../constants.js'
import { ident } from '../schema.js'

/** Megatest's `#(header rows)` vector, JSON-shaped. */
export interface HeaderRows {
  header: string[]
  rows: unknown[][]
}

export const TEST_RECORD_SQL = TEST_RECORD_FIELDS.join(', ')

export type TestRecord = Record<(typeof TEST_RECORD_FIELDS)[number], unknown>

export function keyColsSql (ctx: AreaContext): string {
  return ctx.keyNames.map(ident).join(', ')
}

export function requireRun (ctx: AreaContext, runId: number): { id: number, state: string, status: string } {
  const run = ctx.stmt('SELECT id, state, status FROM runs WHERE id=?').get(runId) as { id: number, state: string, status: string } | undefined
  if (run === undefined) throw new EvalMeshError('MEGATEST_ERROR', `no run ${runId} in area ${ctx.name}`, { runId })
  return run
}

export function requireTest (ctx: AreaContext, runId: number | null, testId: number): void {
  const row = runId === null
    ? ctx.stmt('SELECT id FROM tests WHERE id=?').get(testId)
    : ctx.stmt('SELECT id FROM tests WHERE id=? AND run_id=?').get(testId, runId)
  if (row === undefined) {
    throw new EvalMeshError('MEGATEST_ERROR', `no test id ${testId} in run ${runId ?? '(any)'} of area ${ctx.name}`, { runId, testId })
  }
}

export function toRows (objs: ReadonlyArray<Record<string, unknown>>, header: readonly string[]): unknown[][] {
  return objs.map(o => header.map(h => o[h]))
}

/** Numeric strings come back as numbers, as Megatest's get-var does. */
export function numberish (v: unknown): unknown {
  if (typeof v === 'string' && /^\s*-?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?\s*$/.test(v)) return Number(v)
  return v
}

import type { Args } from '../args.js'
import type { AreaContext } from '../area.js'

export type CommandMode = 'read' | 'write'

export interface CommandDef {
  name: string
  /** Megatest's class: reads may bypass a server; everything else is a write. */
  mode: CommandMode
  /** Positional parameter names, in wire order. */
  params: readonly string[]
  /** Which database a write transaction covers: main (default), the no-sync db, or none. */
  db: 'main' | 'nosync' | 'none'
  run: (ctx: AreaContext, a: Args) => unknown
}

export function cmd (
  name: string,
  mode: CommandMode,
  params: readonly string[],
  run: (ctx: AreaContext, a: Args) => unknown,
  db: CommandDef['db'] = 'main'
): CommandDef {
  return { name, mode, params, run, db }
}

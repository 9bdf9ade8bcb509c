import { DATA_COMMANDS } from './data.js'
import type { CommandDef } from './define.js'
import { META_COMMANDS } from './meta.js'
import { RUN_COMMANDS } from './runs.js'
import { TEST_COMMANDS } from './tests.js'

export type { CommandDef, CommandMode } from './define.js'
export { GENERAL_CALL_STATEMENTS } from './tests.js'

export const COMMANDS: ReadonlyMap<string, CommandDef> = new Map(
  [...RUN_COMMANDS, ...TEST_COMMANDS, ...DATA_COMMANDS, ...META_COMMANDS].map(c => [c.name, c])
)

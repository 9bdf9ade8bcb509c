import { parseArgs, type ParseArgsConfig } from 'node:util'

/** A usage problem: printed with the command's help, exit code 2. */
export class UsageError extends Error {
  override name = 'UsageError'
}

export type Options = NonNullable<ParseArgsConfig['options']>

export interface Command {
  name: string
  summary: string
  usage: string
  options: Options
  run: (args: Parsed) => Promise<number>
}

export interface Parsed {
  values: Record<string, string | boolean | string[] | undefined>
  positionals: string[]
}

export const common: Options = {
  'state-dir': { type: 'string' },
  json: { type: 'boolean' },
  help: { type: 'boolean', short: 'h' },
  // Clients: connect with TLS to every node (PROTOCOL.md §2.5); serve: serve TLS.
  tls: { type: 'boolean' }
}

export function parse (command: Command, argv: string[]): Parsed {
  try {
    const { values, positionals } = parseArgs({ args: argv, options: { ...common, ...command.options }, allowPositionals: true, strict: true, allowNegative: true } as ParseArgsConfig)
    return { values: values as Parsed['values'], positionals }
  } catch (err) {
    throw new UsageError((err as Error).message)
  }
}

export function str (p: Parsed, name: string): string | undefined {
  const v = p.values[name]
  return typeof v === 'string' ? v : undefined
}

export function int (p: Parsed, name: string): number | undefined {
  const v = str(p, name)
  if (v === undefined) return undefined
  const n = Number(v)
  if (!Number.isFinite(n) || n < 0) throw new UsageError(`--${name} must be a non-negative number, got "${v}"`)
  return n
}

export function list (p: Parsed, name: string): string[] | undefined {
  const v = p.values[name]
  if (v === undefined) return undefined
  const items = (Array.isArray(v) ? v : [String(v)]).flatMap(s => s.split(',')).map(s => s.trim()).filter(s => s !== '')
  return items
}

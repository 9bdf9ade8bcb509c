import { parseArgs, type ParseArgsConfig } from 'node:util'

/** A usage problem: printed with the command's help, exit code 2. */
export class UsageError extends Error {
  override name = 'UsageError'
}

/**
 * A command that could not do what was asked, with a code for --json (`{ok: false, error:
 * {code, message, ...data}}`) and its exit status (1 unless said: 130 for Ctrl-C). The
 * codes are the error catalogue's, or the CLI's own (README "--json"): USAGE, NO_SUCH_FILE,
 * NOT_ABORTED, NONE_OK, INTERRUPTED.
 */
export class CommandError extends Error {
  override name = 'CommandError'
  readonly code: string
  readonly data: Record<string, unknown>
  readonly exitCode: number

  constructor (code: string, message: string, data: Record<string, unknown> = {}, exitCode = 1) {
    super(message)
    this.code = code
    this.data = data
    this.exitCode = exitCode
  }
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
    const e = err as NodeJS.ErrnoException
    const unknown = /^Unknown option '([^']*)'/.exec(e.message)
    if (e.code === 'ERR_PARSE_ARGS_UNKNOWN_OPTION' && unknown !== null) {
      const names = Object.keys({ ...common, ...command.options }).map(n => `--${n}`)
      const near = closest(unknown[1]!.replace(/=.*$/, ''), names)
      throw new UsageError(`unknown option ${unknown[1]!}${near !== undefined ? ` (did you mean ${near}?)` : ''}`)
    }
    throw new UsageError(e.message)
  }
}

/** The candidate nearest to `word` by edit distance, if it is near enough to be a typo. */
export function closest (word: string, candidates: string[]): string | undefined {
  let best: string | undefined
  let bestDistance = Infinity
  for (const c of candidates) {
    const d = editDistance(word.toLowerCase(), c.toLowerCase())
    if (d < bestDistance) { best = c; bestDistance = d }
  }
  const allowed = Math.max(1, Math.floor(word.replace(/^-+/, '').length / 3))
  return bestDistance <= allowed || (best !== undefined && best.startsWith(word) && word.length >= 2) ? best : undefined
}

/** Levenshtein distance, with a swap of two neighbours counting as one edit. */
function editDistance (a: string, b: string): number {
  const d: number[][] = Array.from({ length: a.length + 1 }, (_, i) => [i, ...Array<number>(b.length).fill(0)])
  for (let j = 1; j <= b.length; j++) d[0]![j] = j
  for (let i = 1; i <= a.length; i++) {
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1
      let v = Math.min(d[i - 1]![j]! + 1, d[i]![j - 1]! + 1, d[i - 1]![j - 1]! + cost)
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) v = Math.min(v, d[i - 2]![j - 2]! + 1)
      d[i]![j] = v
    }
  }
  return d[a.length]![b.length]!
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

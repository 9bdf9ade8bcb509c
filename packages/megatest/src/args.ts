import { EvalMeshError } from '@evalmesh/protocol'

/** A value SQLite can bind. */
export type SqlValue = string | number | bigint | null

/**
 * Positional parameters of one command, with checks that name the command,
 * the position and the parameter on failure (BAD_MESSAGE).
 */
export class Args {
  constructor (
    readonly command: string,
    readonly names: readonly string[],
    readonly values: readonly unknown[]
  ) {
    // A last name starting with '...' takes any number of trailing values.
    const variadic = names[names.length - 1]?.startsWith('...') === true
    if (!variadic && values.length > names.length) {
      throw new EvalMeshError('BAD_MESSAGE',
        `${command} takes at most ${names.length} params (${names.join(', ') || 'none'}), got ${values.length}`,
        { command })
    }
  }

  fail (i: number, what: string): never {
    const name = this.names[i] ?? `#${i + 1}`
    throw new EvalMeshError('BAD_MESSAGE', `${this.command}: param ${i + 1} (${name}) ${what}`,
      { command: this.command, param: name, index: i })
  }

  raw (i: number): unknown {
    return this.values[i]
  }

  isNull (i: number): boolean {
    const v = this.values[i]
    return v === undefined || v === null || v === false
  }

  int (i: number): number {
    const v = this.values[i]
    if (typeof v === 'number' && Number.isSafeInteger(v)) return v
    if (typeof v === 'string' && /^-?\d{1,15}$/.test(v.trim())) return Number(v.trim())
    return this.fail(i, `must be an integer, got ${show(v)}`)
  }

  intOrNull (i: number): number | null {
    return this.isNull(i) ? null : this.int(i)
  }

  intOr (i: number, dflt: number): number {
    return this.isNull(i) ? dflt : this.int(i)
  }

  num (i: number): number {
    const v = this.values[i]
    if (typeof v === 'number' && Number.isFinite(v)) return v
    if (typeof v === 'string' && v.trim() !== '' && Number.isFinite(Number(v))) return Number(v)
    return this.fail(i, `must be a number, got ${show(v)}`)
  }

  numOrNull (i: number): number | null {
    return this.isNull(i) ? null : this.num(i)
  }

  str (i: number): string {
    const v = this.values[i]
    if (typeof v === 'string') return v
    if (typeof v === 'number' && Number.isFinite(v)) return String(v)
    return this.fail(i, `must be a string, got ${show(v)}`)
  }

  strOrNull (i: number): string | null {
    return this.isNull(i) ? null : this.str(i)
  }

  strOr (i: number, dflt: string): string {
    return this.isNull(i) ? dflt : this.str(i)
  }

  /** A scalar to store as is: string, finite number, or null. */
  scalar (i: number): SqlValue {
    const v = this.values[i]
    if (v === undefined || v === null) return null
    if (typeof v === 'string') return v
    if (typeof v === 'number' && Number.isFinite(v)) return v
    if (typeof v === 'boolean') return v ? 1 : 0
    return this.fail(i, `must be a string, a number or null, got ${show(v)}`)
  }

  /** A list of strings; null or missing is the empty list. */
  strList (i: number): string[] {
    const v = this.values[i]
    if (v === undefined || v === null || v === false) return []
    if (!Array.isArray(v)) return this.fail(i, `must be a list of strings, got ${show(v)}`)
    return v.map((x, j) => {
      if (typeof x !== 'string') this.fail(i, `element ${j + 1} must be a string, got ${show(x)}`)
      return x
    })
  }

  /**
   * An alist: a list of [key, value] pairs (Megatest's `((K v)..)`), or an
   * object. Order is kept.
   */
  pairs (i: number): Array<[string, unknown]> {
    const v = this.values[i]
    if (v === undefined || v === null || v === false) return []
    if (Array.isArray(v)) {
      return v.map((p, j) => {
        if (!Array.isArray(p) || p.length < 1 || p.length > 2 || typeof p[0] !== 'string') {
          this.fail(i, `element ${j + 1} must be a [key, value] pair, got ${show(p)}`)
        }
        return [p[0] as string, p[1]]
      })
    }
    if (typeof v === 'object') return Object.entries(v as Record<string, unknown>)
    return this.fail(i, `must be a list of [key, value] pairs or an object, got ${show(v)}`)
  }

  oneOf<T extends string> (i: number, allowed: readonly T[], dflt: T): T {
    if (this.isNull(i)) return dflt
    const v = this.str(i)
    const hit = allowed.find(a => a.toLowerCase() === v.toLowerCase())
    if (hit === undefined) this.fail(i, `must be one of ${allowed.join(', ')}, got ${show(v)}`)
    return hit
  }
}

export function show (v: unknown): string {
  if (v === undefined) return 'nothing'
  let s: string
  try {
    s = typeof v === 'string' ? JSON.stringify(v) : (JSON.stringify(v) ?? String(v))
  } catch {
    s = String(v)
  }
  return s.length > 80 ? s.slice(0, 77) + '...' : s
}

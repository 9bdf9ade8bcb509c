/**
 * Which forms may take the batch path: evaluated with other queued forms of the
 * same session in one trip into the isolate, by an indirect eval inside it.
 *
 * A batched form must behave exactly as it would alone as a script. Between two
 * forms of a batch there is no microtask checkpoint, and code running inside a
 * batch sees the runner's stack frames; so a batched form must be unable to run
 * any code but its own: no calls, no getters or setters, no valueOf/toString
 * hooks, no proxies, no promises. This module proves that statically for a small
 * grammar; the runner in the isolate checks the rest (every name it touches is an
 * own data property of the global object holding a primitive) just before the
 * form runs. Anything else takes the slow path, unchanged.
 *
 * The grammar, on one line, without comments:
 *   statements separated by `;`, each an expression over number, bigint, string,
 *   true/false/null literals, global names and `globalThis.name`, the operators
 *   of arithmetic, comparison, bitwise and logic, `typeof`, `void`, `?:`, `,`,
 *   assignments (plain, compound, logical, `++`/`--`) of primitive values to
 *   names, and array and object literals (plain keys, no `__proto__`, no spread).
 * Operators that would convert an operand with ToPrimitive (so could call a hook
 * on an object) take only operands that are provably primitive; array and object
 * literals may only be elements of other literals, operands of identity
 * operators, or the completion value.
 */

/** A form the batch path may run, and the global names it touches. */
export interface BatchForm {
  /** Names read or written; each must be an own data property holding a primitive. */
  names: string[]
  /** True if it reads `globalThis.x`: `globalThis` must then be the global object. */
  usesGlobalThis: boolean
  /**
   * True if the form holds no string or bigint literal and no `typeof`: given names that
   * hold no string or bigint (the runner checks, in its strict mode), every value it makes
   * is a number, boolean, null, undefined or a literal of its own text, so it runs in time
   * proportional to its length. Such forms may run in a synchronous call into the isolate.
   */
  bounded: boolean
}

type Tok =
  | { k: 'num', big?: true }
  | { k: 'str', value: string }
  | { k: 'id', value: string }
  | { k: 'p', value: string }

/** P: provably primitive; A: anything (an object literal, or a choice including one). */
type Ty = 'P' | 'A'

const RESERVED = new Set([
  'break', 'case', 'catch', 'class', 'const', 'continue', 'debugger', 'default', 'delete', 'do', 'else', 'enum', 'export',
  'extends', 'false', 'finally', 'for', 'function', 'if', 'import', 'in', 'instanceof', 'new', 'null', 'return', 'super',
  'switch', 'this', 'throw', 'true', 'try', 'typeof', 'var', 'void', 'while', 'with', 'yield', 'let', 'static', 'await',
  'async', 'implements', 'interface', 'package', 'private', 'protected', 'public', 'arguments', 'eval', 'of', 'get', 'set'
])

// Longest first, so that a prefix never wins over the whole operator.
const PUNCT = [
  '>>>=', '===', '!==', '**=', '<<=', '>>=', '>>>', '&&=', '||=', '??=', '...',
  '=>', '==', '!=', '<=', '>=', '&&', '||', '??', '?.', '++', '--', '+=', '-=', '*=', '/=', '%=', '&=', '|=', '^=', '**', '<<', '>>',
  '{', '}', '(', ')', '[', ']', ';', ',', '<', '>', '+', '-', '*', '/', '%', '&', '|', '^', '!', '~', '?', ':', '=', '.'
]
/** Each binary operator's level in LEVELS and what it asks of its operands. */
const BINARY = new Map<string, { level: number, needsPrimitive: boolean, logical: boolean, identity: boolean }>()

/** PUNCT by first character, each list still longest first: one short list to try per token, not all of them. */
const PUNCT_BY_FIRST = new Map<string, string[]>()
for (const op of PUNCT) {
  const list = PUNCT_BY_FIRST.get(op[0]!) ?? []
  list.push(op)
  PUNCT_BY_FIRST.set(op[0]!, list)
}
const REJECTED_PUNCT = new Set(['...', '=>', '?.'])
const ASSIGN_OPS = new Set(['=', '+=', '-=', '*=', '/=', '%=', '**=', '<<=', '>>=', '>>>=', '&=', '|=', '^=', '&&=', '||=', '??='])
// Sticky: matched at the cursor (lastIndex), with no copy of the rest of the form per token.
const NUMBER = /(?:0|[1-9][0-9]*)(?:(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?|n)/y
const IDENT = /[A-Za-z_$][A-Za-z0-9_$]*/y
const IDENT_CHAR = /[A-Za-z0-9_$\\]/

/** Binary operators by precedence, loosest first; `**` is handled apart (right-associative). */
const LEVELS: Array<{ ops: Set<string>, needsPrimitive: boolean, logical?: boolean }> = [
  { ops: new Set(['||']), needsPrimitive: false, logical: true },
  { ops: new Set(['&&']), needsPrimitive: false, logical: true },
  { ops: new Set(['|']), needsPrimitive: true },
  { ops: new Set(['^']), needsPrimitive: true },
  { ops: new Set(['&']), needsPrimitive: true },
  { ops: new Set(['==', '!=', '===', '!==']), needsPrimitive: true },
  { ops: new Set(['<', '>', '<=', '>=']), needsPrimitive: true },
  { ops: new Set(['<<', '>>', '>>>']), needsPrimitive: true },
  { ops: new Set(['+', '-']), needsPrimitive: true },
  { ops: new Set(['*', '/', '%']), needsPrimitive: true }
]
LEVELS.forEach(({ ops, needsPrimitive, logical }, level) => {
  for (const op of ops) BINARY.set(op, { level, needsPrimitive, logical: logical === true, identity: op === '===' || op === '!==' })
})

class Reject extends Error {}

function tokenize (src: string): Tok[] {
  if (src.includes('<!--') || src.includes('-->')) throw new Reject() // HTML-like comments of sloppy scripts
  const out: Tok[] = []
  let i = 0
  while (i < src.length) {
    const c = src[i]!
    if (c === ' ' || c === '\t') { i++; continue }
    if (c >= '0' && c <= '9') {
      NUMBER.lastIndex = i
      const m = NUMBER.exec(src)
      if (m === null || m[0].length > 400) throw new Reject()
      i += m[0].length
      if (i < src.length && (IDENT_CHAR.test(src[i]!) || src[i] === '.')) throw new Reject()
      out.push(m[0].endsWith('n') ? { k: 'num', big: true } : { k: 'num' })
      continue
    }
    if (c === '"' || c === "'") {
      const [value, end] = readString(src, i)
      out.push({ k: 'str', value })
      i = end
      continue
    }
    if (IDENT_CHAR.test(c) && c !== '\\') {
      IDENT.lastIndex = i
      const m = IDENT.exec(src)
      if (m === null || m[0].length >= 200) throw new Reject()
      i += m[0].length
      if (i < src.length && src[i] === '\\') throw new Reject()
      out.push({ k: 'id', value: m[0] })
      continue
    }
    if (c === '/' && (src[i + 1] === '/' || src[i + 1] === '*')) throw new Reject()
    const p = PUNCT_BY_FIRST.get(c)?.find(op => op.length === 1 || src.startsWith(op, i))
    if (p === undefined || REJECTED_PUNCT.has(p)) throw new Reject()
    out.push({ k: 'p', value: p })
    i += p.length
  }
  return out
}

const SIMPLE_ESCAPES: Record<string, string> = { '\\': '\\', "'": "'", '"': '"', n: '\n', r: '\r', t: '\t', b: '\b', f: '\f', v: '\v' }

/** A string literal with plain escapes only; line terminators and odd escapes are refused. */
function readString (src: string, start: number): [string, number] {
  const quote = src[start]
  let value = ''
  let i = start + 1
  while (i < src.length) {
    const c = src[i]!
    if (c === quote) return [value, i + 1]
    if (c === '\n' || c === '\r' || c === '\u2028' || c === '\u2029') throw new Reject()
    if (c !== '\\') { value += c; i++; continue }
    const e = src[i + 1] ?? ''
    if (e in SIMPLE_ESCAPES) { value += SIMPLE_ESCAPES[e]; i += 2; continue }
    if (e === '0' && !/[0-9]/.test(src[i + 2] ?? '')) { value += '\0'; i += 2; continue }
    if (e === 'x' && /^[0-9a-fA-F]{2}$/.test(src.slice(i + 2, i + 4))) { value += String.fromCharCode(parseInt(src.slice(i + 2, i + 4), 16)); i += 4; continue }
    if (e === 'u' && /^[0-9a-fA-F]{4}$/.test(src.slice(i + 2, i + 6))) { value += String.fromCharCode(parseInt(src.slice(i + 2, i + 6), 16)); i += 6; continue }
    throw new Reject()
  }
  throw new Reject()
}

class Parser {
  readonly toks: Tok[]
  pos = 0
  readonly names = new Set<string>()
  usesGlobalThis = false

  constructor (toks: Tok[]) { this.toks = toks }

  peek (): Tok | undefined { return this.toks[this.pos] }
  isP (value: string): boolean { const t = this.toks[this.pos]; return t !== undefined && t.k === 'p' && t.value === value }
  expectP (value: string): void { if (!this.isP(value)) throw new Reject(); this.pos++ }

  program (): void {
    let first = true
    while (this.pos < this.toks.length) {
      if (this.isP(';')) { this.pos++; first = false; continue }
      const t = this.peek()!
      // A block, or a directive prologue ("use strict" would change the form's mode).
      if (t.k === 'p' && t.value === '{') throw new Reject()
      if (first && t.k === 'str') {
        const next = this.toks[this.pos + 1]
        if (next === undefined || (next.k === 'p' && next.value === ';')) throw new Reject()
      }
      first = false
      this.expression()
      if (this.pos < this.toks.length) this.expectP(';')
    }
  }

  expression (): Ty {
    let ty = this.assignment()
    while (this.isP(',')) { this.pos++; ty = this.assignment() }
    return ty
  }

  /** An assignable target at the cursor (a name or globalThis.name), consumed; else undefined. */
  target (): string | undefined {
    const t = this.peek()
    if (t?.k !== 'id' || RESERVED.has(t.value)) return undefined
    if (t.value === 'globalThis') {
      const dot = this.toks[this.pos + 1]
      const name = this.toks[this.pos + 2]
      if (dot?.k !== 'p' || dot.value !== '.' || name?.k !== 'id' || name.value === 'globalThis' || name.value === '__proto__') throw new Reject()
      this.pos += 3
      this.usesGlobalThis = true
      this.names.add(name.value)
      return name.value
    }
    this.pos++
    this.names.add(t.value)
    return t.value
  }

  assignment (): Ty {
    const save = this.pos
    if (this.target() !== undefined) {
      const op = this.peek()
      if (op?.k === 'p' && ASSIGN_OPS.has(op.value)) {
        this.pos++
        if (this.assignment() !== 'P') throw new Reject()
        return 'P'
      }
    }
    this.pos = save
    return this.conditional()
  }

  conditional (): Ty {
    const test = this.coalesce()
    if (!this.isP('?')) return test
    this.pos++
    const a = this.assignment()
    this.expectP(':')
    const b = this.assignment()
    return a === 'P' && b === 'P' ? 'P' : 'A'
  }

  /** `??` may not mix with `||`/`&&` without parentheses. */
  coalesce (): Ty {
    // The operand is parsed once and the climb goes on from it: parsing it again at the
    // looser level would double the work at every nesting of parentheses (2^depth).
    const first = this.binary(2)
    if (!this.isP('??')) return this.binary(0, first)
    let ty = first
    while (this.isP('??')) {
      this.pos++
      const next = this.binary(2)
      ty = ty === 'P' && next === 'P' ? 'P' : 'A'
    }
    if (this.isP('||') || this.isP('&&')) throw new Reject()
    return ty
  }

  /**
   * Binary operators of `level` and tighter, by precedence climbing: one call per operand
   * rather than one per level. `lhs` is an operand already parsed (see coalesce).
   */
  binary (level: number, lhs?: Ty): Ty {
    let ty = lhs ?? this.exponent()
    for (;;) {
      const t = this.peek()
      const op = t?.k === 'p' ? BINARY.get(t.value) : undefined
      if (op === undefined || op.level < level) return ty
      this.pos++
      const rhs = this.binary(op.level + 1)
      if (op.needsPrimitive && !op.identity && (ty !== 'P' || rhs !== 'P')) throw new Reject()
      ty = op.logical ? (ty === 'P' && rhs === 'P' ? 'P' : 'A') : 'P'
    }
  }

  exponent (): Ty {
    const t = this.peek()
    const unary = t?.k === 'p' && ['-', '+', '!', '~'].includes(t.value)
    const base = this.unary()
    if (!this.isP('**')) return base
    // `-2 ** 2` is a SyntaxError: a unary operator cannot be the base of **.
    if (unary || (t?.k === 'id' && (t.value === 'typeof' || t.value === 'void'))) throw new Reject()
    this.pos++
    const power = this.exponent()
    if (base !== 'P' || power !== 'P') throw new Reject()
    return 'P'
  }

  unary (): Ty {
    const t = this.peek()
    if (t === undefined) throw new Reject()
    if (t.k === 'p' && ['-', '+', '~'].includes(t.value)) {
      this.pos++
      if (this.unary() !== 'P') throw new Reject()
      return 'P'
    }
    if (t.k === 'p' && t.value === '!') { this.pos++; this.unary(); return 'P' }
    if (t.k === 'id' && (t.value === 'typeof' || t.value === 'void')) { this.pos++; this.unary(); return 'P' }
    if (t.k === 'p' && (t.value === '++' || t.value === '--')) {
      this.pos++
      if (this.target() === undefined) throw new Reject()
      return 'P'
    }
    return this.postfix()
  }

  postfix (): Ty {
    const save = this.pos
    if (this.target() !== undefined) {
      if (this.isP('++') || this.isP('--')) this.pos++
      this.noTrailer()
      return 'P'
    }
    this.pos = save
    const ty = this.primary()
    this.noTrailer()
    return ty
  }

  /** Calls, member access and indexing on anything but globalThis could run user code. */
  noTrailer (): void {
    if (this.isP('(') || this.isP('.') || this.isP('[') || this.isP('?.')) throw new Reject()
  }

  primary (): Ty {
    const t = this.peek()
    if (t === undefined) throw new Reject()
    this.pos++
    if (t.k === 'num' || t.k === 'str') return 'P'
    if (t.k === 'id') {
      if (t.value === 'true' || t.value === 'false' || t.value === 'null') return 'P'
      throw new Reject()
    }
    if (t.value === '(') {
      const ty = this.expression()
      this.expectP(')')
      return ty
    }
    if (t.value === '[') {
      while (!this.isP(']')) {
        this.assignment()
        if (!this.isP(']')) this.expectP(',')
      }
      this.pos++
      return 'A'
    }
    if (t.value === '{') {
      while (!this.isP('}')) {
        const key = this.peek()
        if (key === undefined) throw new Reject()
        if (key.k === 'id' && key.value !== '__proto__') this.pos++
        else if (key.k === 'str' && key.value !== '__proto__') this.pos++
        else if (key.k === 'num') this.pos++
        else throw new Reject()
        this.expectP(':')
        this.assignment()
        if (!this.isP('}')) this.expectP(',')
      }
      this.pos++
      return 'A'
    }
    throw new Reject()
  }
}

const MAX_FORM_CHARS = 2048

/** False for a token that can make a value whose cost grows beyond the form's length: a string, a bigint, `typeof`. */
function unbounding (t: Tok): boolean {
  return t.k !== 'str' && !(t.k === 'num' && t.big === true) && !(t.k === 'id' && t.value === 'typeof')
}

/** The batch plan of a form, or undefined when it must take the slow path. */
export function batchForm (form: string): BatchForm | undefined {
  if (form.length > MAX_FORM_CHARS) return undefined
  // One line, printable ASCII (strings excepted): no ASI, no odd whitespace or escapes.
  for (let i = 0; i < form.length; i++) {
    const c = form.charCodeAt(i)
    if (c === 10 || c === 13 || c === 0x2028 || c === 0x2029) return undefined
  }
  try {
    const toks = tokenize(form)
    const p = new Parser(toks)
    p.program()
    return { names: [...p.names], usesGlobalThis: p.usesGlobalThis, bounded: toks.every(unbounding) }
  } catch {
    // Reject, or a nesting too deep for this parser's stack: either way, the slow path.
    return undefined
  }
}

/** A form that may declare script-level bindings, which would shadow the globals a batch checks. */
export const MAY_DECLARE_LEXICALS = /\b(?:let|const|class)\b/

const plans = new Map<string, BatchForm | null>()
const PLAN_CACHE_ENTRIES = 4096

/** batchForm, remembered for the last few thousand form texts (every caller in a process shares it). */
export function planOf (form: string): BatchForm | undefined {
  let plan = plans.get(form)
  if (plan === undefined) {
    plan = batchForm(form) ?? null
    if (form.length > MAX_FORM_CHARS) return undefined
    if (plans.size >= PLAN_CACHE_ENTRIES) plans.clear()
    plans.set(form, plan)
  }
  return plan ?? undefined
}

/**
 * True for a form that provably runs no code of its own (literals, operators, plain
 * globals): it finishes in microseconds, so it may queue behind another such form
 * in a session without anyone waiting noticeably. The server's scheduler uses it to
 * pipeline quick forms and to send anything else past a busy default session.
 */
export function isQuickForm (form: string): boolean {
  return planOf(form) !== undefined
}

/**
 * True for a quick form that is bounded and names nothing (literals and operators only,
 * `1+1`): its outcome is the same in any context, so the node may evaluate it in its own
 * isolate (inline.ts).
 */
export function isPureForm (form: string): boolean {
  const plan = planOf(form)
  return plan !== undefined && plan.bounded && plan.names.length === 0 && !plan.usesGlobalThis
}

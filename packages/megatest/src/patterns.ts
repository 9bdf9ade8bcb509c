import type { SqlValue } from './args.js'

/** A WHERE fragment and its bound values. Fragments never contain caller text. */
export interface Clause {
  sql: string
  params: SqlValue[]
}

/**
 * db:patt->like with bound values: "a,b%" gives `(col GLOB ? OR col LIKE ?)`.
 * An alternative holding % uses LIKE, otherwise GLOB. null means "%" (all).
 * `column` must be a trusted identifier (callers pass constants or checked keys).
 */
export function pattToLike (column: string, patt: string | null): Clause {
  const alts = patt === null ? ['%'] : patt.split(',').map(p => p.trim())
  const parts = alts.length === 0 ? [''] : alts
  return {
    sql: '(' + parts.map(p => `${column} ${p.includes('%') ? 'LIKE' : 'GLOB'} ?`).join(' OR ') + ')',
    params: parts
  }
}

/** True when a pattern matches everything, so no filter is needed. */
export function matchesAll (patt: string | null): boolean {
  return patt === null || patt.trim() === '' || patt.trim() === '%' || patt.trim() === '%/%'
}

/**
 * tests:match->sqlqry with bound values. A testpatt is a comma list of
 * `test[/item]`; a missing item part matches every item and the toplevel,
 * `test/` matches the toplevel only. Only the first `/` splits: item paths
 * may contain `/`.
 */
export function testPattClause (testpatt: string | null): Clause | null {
  if (matchesAll(testpatt)) return null
  const ors: string[] = []
  const params: SqlValue[] = []
  for (const alt of (testpatt as string).split(',')) {
    const p = alt.trim()
    if (p === '') continue
    const slash = p.indexOf('/')
    const test = slash < 0 ? p : p.slice(0, slash)
    const item = slash < 0 ? '%' : p.slice(slash + 1)
    ors.push(`(testname ${test.includes('%') ? 'LIKE' : 'GLOB'} ? AND item_path ${item.includes('%') ? 'LIKE' : 'GLOB'} ?)`)
    params.push(test, item)
  }
  if (ors.length === 0) return null
  return { sql: '(' + ors.join(' OR ') + ')', params }
}

/** `col IN (?,?,..)` for a non-empty list, or null. */
export function inList (column: string, values: readonly string[], not = false): Clause | null {
  if (values.length === 0) return null
  return { sql: `${column} ${not ? 'NOT ' : ''}IN (${values.map(() => '?').join(',')})`, params: [...values] }
}

export function andAll (clauses: ReadonlyArray<Clause | null>): Clause {
  const present = clauses.filter((c): c is Clause => c !== null)
  if (present.length === 0) return { sql: '1', params: [] }
  return { sql: present.map(c => c.sql).join(' AND '), params: present.flatMap(c => c.params) }
}

/**
 * tests:glob-like-match: `%` (or, without a `%`, `*`) matches anything; a leading `~`
 * negates. A `%` pattern ignores case, as Megatest's LIKE-style match does. Other
 * characters match themselves (Megatest hands them to a regexp; a `.` there matches
 * any character).
 */
export function globLikeMatch (patt: string, str: string): boolean {
  const not = patt.startsWith('~')
  const p = not ? patt.slice(1) : patt
  const like = p.includes('%')
  const parts = (like ? p.toLowerCase() : p).split(like ? '%' : '*')
  return wildcardMatch(parts, like ? str.toLowerCase() : str) !== not
}

/**
 * Does `s` consist of `parts` in order with anything between them? Each middle part is
 * placed at its leftmost fit, which is never worse than a later one, so there is no
 * backtracking: a regexp of many `.*` (what this replaced) takes time exponential in their
 * number on a near miss, and a job's testpatt of 20 characters held the process for seconds.
 */
function wildcardMatch (parts: string[], s: string): boolean {
  const first = parts[0]!
  if (parts.length === 1) return s === first
  const last = parts[parts.length - 1]!
  const end = s.length - last.length
  if (end < first.length || !s.startsWith(first) || !s.endsWith(last)) return false
  let at = first.length
  for (let i = 1; i < parts.length - 1; i++) {
    const found = s.indexOf(parts[i]!, at)
    if (found < 0 || found + parts[i]!.length > end) return false
    at = found + parts[i]!.length
  }
  return true
}

/**
 * tests:match: does the testpatt (a comma list of `test[/item]`) select this test and
 * item path? `test` alone selects the toplevel and every item; `test/` the toplevel
 * only; an empty alternative selects nothing. `itemPath` null asks about the test name only.
 */
export function testPattMatch (testpatt: string, testname: string, itemPath: string | null): boolean {
  for (const alt of testpatt.split(',')) {
    const p = alt.trim()
    if (p === '') continue
    const slash = p.indexOf('/')
    const test = slash < 0 ? p : p.slice(0, slash)
    const item = slash < 0 ? '%' : p.slice(slash + 1)
    if (globLikeMatch(test, testname) && (itemPath === null || globLikeMatch(item, itemPath))) return true
  }
  return false
}

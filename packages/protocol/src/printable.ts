/**
 * Peer-supplied text made safe for a terminal or a log line.
 *
 * Anything a peer controls (its hello name, a form, an error message, a reason, a
 * Megatest string) may hold bytes a terminal acts on: ESC and CSI sequences that clear
 * the screen, move the cursor, retitle the window or set the clipboard; newlines and
 * carriage returns that forge a line of output; bidi overrides and invisible characters
 * that make text read other than it is. `printable` turns every such character into a
 * visible escape, so the text shows what it holds and does nothing:
 *
 *   printable('\x1b[2Jgot root\nok')     →  '\x1b[2Jgot root\nok' (as 18 visible characters)
 *
 * Escaped: C0 controls and DEL (`\n`, `\r`, `\t`, `\x1b`, `\x00`...), C1 controls
 * (`\x9b`...), Unicode format characters (bidi embeddings, overrides and isolates, zero-width
 * characters, the BOM, tag characters: `\u202e`, `\u{e0041}`), line and paragraph separators
 * (`\u2028`), and lone surrogates (`\ud800`). Backslashes are left alone, so ordinary
 * source text reads as written. The result is one line of at most `max` characters
 * (default 1024), cut with `…` at a character boundary, never inside an escape.
 */
export const PRINTABLE_DEFAULT_MAX = 1024

// Cc: C0, DEL, C1. Cf: format (bidi, ZW*, BOM, soft hyphen, tags...). Zl, Zp: U+2028/9. Cs: lone surrogates.
const UNSAFE = /[\p{Cc}\p{Cf}\p{Zl}\p{Zp}\p{Cs}]/u
const UNSAFE_ALL = /[\p{Cc}\p{Cf}\p{Zl}\p{Zp}\p{Cs}]/gu

const NAMED: Record<string, string> = { '\n': '\\n', '\r': '\\r', '\t': '\\t' }

/** The visible escape for one unsafe character. */
export function escapeChar (ch: string): string {
  const named = NAMED[ch]
  if (named !== undefined) return named
  const cp = ch.codePointAt(0)!
  if (cp <= 0xff) return '\\x' + cp.toString(16).padStart(2, '0')
  if (cp <= 0xffff) return '\\u' + cp.toString(16).padStart(4, '0')
  return '\\u{' + cp.toString(16) + '}'
}

/** Whether `s` would come out of `printable` unchanged (ignoring the length cut). */
export function isPrintable (s: string): boolean {
  return !UNSAFE.test(s)
}

/**
 * `s` with every control, format, separator and lone-surrogate character shown as a
 * visible escape, on one line, cut to at most `max` characters (code points) with `…`.
 * Non-strings are converted with String() first, so a malformed field cannot slip through.
 */
export function printable (s: string, max: number = PRINTABLE_DEFAULT_MAX): string {
  const text = typeof s === 'string' ? s : String(s)
  const limit = Number.isFinite(max) ? Math.max(1, Math.floor(max)) : Infinity
  // Each piece is one original character, escaped or not, so a cut never splits one.
  const out: string[] = []
  const widths: number[] = []
  let length = 0
  for (const ch of text) {
    const unsafe = UNSAFE.test(ch)
    const piece = unsafe ? escapeChar(ch) : ch
    const w = unsafe ? piece.length : 1
    if (length + w > limit) {
      while (out.length > 0 && length > limit - 1) { out.pop(); length -= widths.pop()! }
      return out.join('') + '…'
    }
    out.push(piece)
    widths.push(w)
    length += w
  }
  return out.join('')
}

/** `printable` for every string in `values`, e.g. the names in a policy list. */
export function printableList (values: readonly string[], max?: number): string[] {
  return values.map(v => printable(v, max))
}

/** Replace unsafe characters without cutting: for text that is cut elsewhere. */
export function escapeUnsafe (s: string): string {
  return (typeof s === 'string' ? s : String(s)).replace(UNSAFE_ALL, escapeChar)
}

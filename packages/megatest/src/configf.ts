import { execFileSync } from 'node:child_process'
import { readFileSync, realpathSync } from 'node:fs'
import { dirname, isAbsolute, join } from 'node:path'
import { EvalMeshError } from '@evalmesh/protocol'

/**
 * Megatest's config file format (configf.scm's read-config), as the files of a real
 * area use it: megatest.config, runconfigs.config and tests/<name>/testconfig.
 *
 * - `[section]` starts a section; `key value` lines (the first whitespace separates
 *   key from value; a key alone has the value ""); `#` starts a comment line.
 * - An indented line continues the previous key's value (joined with a newline, the
 *   first continuation's indent trimmed); a trailing `\` joins the next line.
 * - `[include FILE]` reads FILE (relative to the including file) in place.
 * - `key [system CMD]` takes CMD's output (its lines joined with spaces).
 * - `#{get SECTION VAR}` (`#{g ...}`) is a value read so far, `#{getenv VAR}` (`#{gv}`)
 *   an environment variable, `#{shell CMD}` (`#{sh}`) CMD's output with newlines as
 *   spaces, `#{system CMD}` CMD's exit code, `#{mtrah [PATH]}` the area's top path
 *   (and PATH under it), `#{rp PATH}` a real path. Expansions are done innermost
 *   (rightmost) first, as Megatest does.
 * - In the sections named by `envSections` (Megatest's environ-patt: a test's
 *   `pre-launch-env-vars`, runconfigs' target sections), `$VAR` and `${VAR}` in values
 *   are expanded from the environment built so far, and each key joins it.
 *
 * Not supported, and refused with the line named: `#{scheme ...}`/`#{scm}` (Scheme
 * code), `#{rget ...}`, `[scriptinc ...]` and `[configf:settings ...]`.
 */

/** Sections in file order, each with its keys in order. */
export type ConfigData = Map<string, Map<string, string>>

export interface ReadConfigOptions {
  /** The environment for `#{getenv}` and `$VAR` (default: process.env); env sections add to a copy. */
  env?: Record<string, string | undefined>
  /** Sections whose values get `$VAR` expansion and set variables (Megatest's environ-patt). */
  envSections?: { test: (section: string) => boolean }
  /** The area's top directory, for `#{mtrah}`. */
  toppath?: string
  /** Read into this config (an include, or several files in one). */
  into?: ConfigData
  /** Start in this section (default: "default", as Megatest's reader does). */
  section?: string
}

const SECTION = /^\[(.*)\]\s*$/
const INCLUDE = /^\[include\s+(.*)\]\s*$/
const UNSUPPORTED_DIRECTIVE = /^\[(scriptinc|configf:settings)\s/
const KEY_SYSTEM = /^(\S+)\s+\[system\s+(\S+.*)\]\s*$/
const KEY_VALUE = /^(\S+)(?:\s+(.*))?$/
const CONTINUATION = /^(\s+)(\S.*)$/
const COMMENT = /^\s*#/
const BLANK = /^\s*$/
const EXPAND = /^(.*)#\{(scheme|system|shell|getenv|get|runconfigs-get|rget|scm|sh|rp|gv|g|mtrah)(?:\s+([^}{]*))?\}(.*)$/s
const MAX_INCLUDE_DEPTH = 16
const SHELL_TIMEOUT_MS = 30_000

function bad (file: string, line: number, why: string): never {
  throw new EvalMeshError('BAD_MESSAGE', `${file}:${line}: ${why}`)
}

function shell (cmd: string): { out: string, code: number } {
  try {
    return { out: execFileSync('/bin/sh', ['-c', cmd], { encoding: 'utf8', timeout: SHELL_TIMEOUT_MS, stdio: ['ignore', 'pipe', 'pipe'] }), code: 0 }
  } catch (err) {
    const e = err as { status?: number | null, stdout?: string }
    return { out: e.stdout ?? '', code: typeof e.status === 'number' ? e.status : 1 }
  }
}

/** The value of section/key, or undefined. */
export function configLookup (cfg: ConfigData, section: string, key: string): string | undefined {
  return cfg.get(section)?.get(key)
}

/** A section's keys and values in order ([] when absent). */
export function configSection (cfg: ConfigData, section: string): Array<[string, string]> {
  return [...(cfg.get(section) ?? new Map<string, string>()).entries()]
}

/** `$VAR` and `${VAR}` from env; an unset variable is "" (as the shell gives it). */
export function expandEnvVars (value: string, env: Record<string, string | undefined>): string {
  return value.replace(/\$(?:\{([A-Za-z_][A-Za-z0-9_]*)\}|([A-Za-z_][A-Za-z0-9_]*))/g, (_m, a: string | undefined, b: string | undefined) => env[a ?? b ?? ''] ?? '')
}

/** Read a config file (see the module comment for the format). */
export function readConfig (file: string, opts: ReadConfigOptions = {}): ConfigData {
  const cfg = opts.into ?? new Map<string, Map<string, string>>()
  const env = { ...(opts.env ?? process.env) }
  read(file, cfg, env, opts, opts.section ?? 'default', 0)
  return cfg
}

/** Parse config text as if read from `file` (includes are relative to it). */
export function parseConfig (text: string, file: string, opts: ReadConfigOptions = {}): ConfigData {
  const cfg = opts.into ?? new Map<string, Map<string, string>>()
  const env = { ...(opts.env ?? process.env) }
  parse(text, file, cfg, env, opts, opts.section ?? 'default', 0)
  return cfg
}

function read (file: string, cfg: ConfigData, env: Record<string, string | undefined>, opts: ReadConfigOptions, section: string, depth: number): string {
  let text: string
  try {
    text = readFileSync(file, 'utf8')
  } catch (err) {
    throw new EvalMeshError('BAD_MESSAGE', `cannot read ${file}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`)
  }
  return parse(text, file, cfg, env, opts, section, depth)
}

function parse (text: string, file: string, cfg: ConfigData, env: Record<string, string | undefined>, opts: ReadConfigOptions, startSection: string, depth: number): string {
  let section = startSection
  let lastKey: string | undefined
  let lead: string | undefined
  const sectionMap = (): Map<string, string> => {
    let m = cfg.get(section)
    if (m === undefined) { m = new Map(); cfg.set(section, m) }
    return m
  }
  const isEnv = (): boolean => opts.envSections?.test(section) === true
  const set = (key: string, value: string): void => {
    const v = isEnv() ? expandEnvVars(value, env) : value
    if (isEnv()) env[key] = v
    sectionMap().set(key, v)
  }
  const raw = text.split(/\r?\n/)
  for (let i = 0; i < raw.length; i++) {
    const lineNo = i + 1
    let line = raw[i]!
    while (line.endsWith('\\') && i + 1 < raw.length) line = line.slice(0, -1) + raw[++i]!
    if (COMMENT.test(line)) continue
    if (BLANK.test(line)) { lastKey = undefined; lead = undefined; continue }
    line = expand(line, cfg, env, opts, file, lineNo)
    const inc = INCLUDE.exec(line)
    if (inc !== null) {
      if (depth >= MAX_INCLUDE_DEPTH) bad(file, lineNo, `includes nest deeper than ${MAX_INCLUDE_DEPTH}`)
      const name = inc[1]!.trim()
      const path = isAbsolute(name) ? name : join(dirname(file), name)
      // Megatest skips a missing include (with a note); so does this.
      try { readFileSync(path) } catch { continue }
      section = read(path, cfg, env, opts, section, depth + 1)
      lastKey = undefined
      continue
    }
    if (UNSUPPORTED_DIRECTIVE.test(line)) bad(file, lineNo, `"${line.trim()}" is not supported by evalmesh (docs/ci-agent.md)`)
    const sec = SECTION.exec(line)
    if (sec !== null) {
      section = sec[1]!
      sectionMap()
      lastKey = undefined
      lead = undefined
      continue
    }
    const sys = KEY_SYSTEM.exec(line)
    if (sys !== null) {
      set(sys[1]!, shell(sys[2]!).out.split('\n').filter(l => l !== '').join(' '))
      lastKey = sys[1]!
      continue
    }
    const cont = CONTINUATION.exec(line)
    if (cont !== null) {
      // An indented line continues the previous value; with none it is ignored, as in Megatest.
      if (lastKey === undefined) continue
      lead ??= cont[1]!
      const indent = cont[1]!.startsWith(lead) ? cont[1]!.slice(lead.length) : ''
      const prev = sectionMap().get(lastKey) ?? ''
      sectionMap().set(lastKey, `${prev}\n${indent}${cont[2]!}`)
      continue
    }
    const kv = KEY_VALUE.exec(line)
    if (kv !== null) {
      set(kv[1]!, kv[2] ?? '')
      lastKey = kv[1]!
      lead = undefined
      continue
    }
    bad(file, lineNo, `cannot parse "${line}"`)
  }
  return section
}

function expand (line: string, cfg: ConfigData, env: Record<string, string | undefined>, opts: ReadConfigOptions, file: string, lineNo: number): string {
  let out = line
  for (let n = 0; n < 100; n++) {
    const m = EXPAND.exec(out)
    if (m === null) return out
    const [, pre, kind, arg, post] = m as unknown as [string, string, string, string | undefined, string]
    const cmd = (arg ?? '').trim()
    let value: string
    switch (kind) {
      case 'get': case 'g': {
        const [s, v] = cmd.split(/\s+/)
        value = s === undefined || v === undefined ? '' : configLookup(cfg, s, v) ?? ''
        break
      }
      case 'getenv': case 'gv': value = env[cmd] ?? ''; break
      case 'shell': case 'sh': value = shell(cmd).out.replace(/\n+$/, '').replace(/\n/g, ' '); break
      case 'system': value = String(shell(cmd).code); break
      case 'mtrah': {
        if (opts.toppath === undefined) bad(file, lineNo, '#{mtrah} needs the area\'s top path')
        value = opts.toppath + (cmd === '' ? '' : '/' + cmd)
        break
      }
      case 'rp': try { value = realpathSync(cmd) } catch { value = cmd } break
      default: bad(file, lineNo, `#{${kind} ...} is not supported by evalmesh (Scheme code and runconfigs lookups are not run)`)
    }
    out = pre + value + post
  }
  return bad(file, lineNo, 'more than 100 #{...} expansions')
}

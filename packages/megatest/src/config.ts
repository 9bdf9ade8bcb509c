import { existsSync, readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { EvalMeshError } from '@evalmesh/protocol'
import { RESERVED_RUN_COLUMNS } from './constants.js'

/** One key of an area: a `runs` column, in target order. */
export interface KeyField {
  name: string
  type: string
}

export const CONFIG_FILE = 'megatest.config'

const KEY_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/
const KEY_TYPE = /^(TEXT|INTEGER|REAL|NUMERIC)$/i

/**
 * Check key names before they become column names: this is the one place
 * where identifiers reach SQL text, so only plain identifiers pass.
 */
export function validateKeys (area: string, keys: readonly KeyField[]): KeyField[] {
  const seen = new Set<string>()
  return keys.map(k => {
    const name = String(k.name)
    const type = String(k.type ?? 'TEXT').toUpperCase()
    if (!KEY_NAME.test(name)) {
      throw new EvalMeshError('BAD_MESSAGE', `area ${area}: key "${name}" is not a plain identifier (letters, digits, _)`)
    }
    if (RESERVED_RUN_COLUMNS.has(name.toLowerCase())) {
      throw new EvalMeshError('BAD_MESSAGE', `area ${area}: key "${name}" is named like a run column (${[...RESERVED_RUN_COLUMNS].join(', ')}); rename it`)
    }
    if (!KEY_TYPE.test(type)) {
      throw new EvalMeshError('BAD_MESSAGE', `area ${area}: key "${name}" has type "${type}"; use TEXT, INTEGER, REAL or NUMERIC`)
    }
    // SQLite column names are case-insensitive.
    if (seen.has(name.toLowerCase())) throw new EvalMeshError('BAD_MESSAGE', `area ${area}: key "${name}" is listed twice`)
    seen.add(name.toLowerCase())
    return { name, type }
  })
}

/** The `[fields]` section of a megatest.config text: `NAME TYPE` lines, `#` comments. */
export function parseFields (text: string): KeyField[] {
  const out: KeyField[] = []
  let inFields = false
  for (const raw of text.split(/\r?\n/)) {
    const line = raw.replace(/#.*$/, '').trim()
    if (line === '') continue
    const section = /^\[([^\]]+)\]$/.exec(line)
    if (section !== null) {
      inFields = section[1]?.trim() === 'fields'
      continue
    }
    if (!inFields) continue
    const [name, type] = line.split(/\s+/)
    if (name !== undefined) out.push({ name, type: type ?? 'TEXT' })
  }
  return out
}

export function formatFields (keys: readonly KeyField[]): string {
  return '# Written by evalmesh on first open of this area. The [fields] are the run keys:\n' +
    '# one "NAME TYPE" line each; a target is their values joined by "/".\n' +
    '[fields]\n' + keys.map(k => `${k.name} ${k.type}`).join('\n') + '\n'
}

/**
 * Read the area's keys from megatest.config, or create the file from `keys`.
 * Given keys must agree with an existing file: a silent mismatch would build
 * targets from the wrong columns.
 */
export function loadOrCreateConfig (area: string, dir: string, keys: readonly KeyField[] | undefined, readOnly: boolean): KeyField[] {
  const file = join(dir, CONFIG_FILE)
  if (existsSync(file)) {
    const fromFile = validateKeys(area, parseFields(readFileSync(file, 'utf8')))
    if (fromFile.length === 0) throw new EvalMeshError('BAD_MESSAGE', `area ${area}: ${file} has no [fields] entries`)
    if (keys !== undefined) {
      const given = validateKeys(area, keys)
      const same = given.length === fromFile.length && given.every((k, i) => k.name === fromFile[i]?.name)
      if (!same) {
        throw new EvalMeshError('BAD_MESSAGE', `area ${area}: keys given (${given.map(k => k.name).join(' ')}) differ from ${file} (${fromFile.map(k => k.name).join(' ')})`)
      }
    }
    return fromFile
  }
  if (keys === undefined || keys.length === 0) {
    throw new EvalMeshError('BAD_MESSAGE', `area ${area}: ${file} does not exist; give keys to create it`)
  }
  if (readOnly) throw new EvalMeshError('READ_ONLY', `area ${area} is read-only and has no ${CONFIG_FILE}`)
  const valid = validateKeys(area, keys)
  writeFileSync(file, formatFields(valid), { flag: 'wx' })
  return valid
}

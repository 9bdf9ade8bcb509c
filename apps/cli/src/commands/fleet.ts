import { isDeepStrictEqual } from 'node:util'
import { FLEET_OPTIONS, FLEET_USAGE, fleetMain } from '@evalmesh/fleet'
import { UsageError, parse, type Command, type Parsed } from '../args.js'

/**
 * `evalmesh fleet ...` (apps/fleet). The CLI parses every command's options before it
 * runs; m2sh's one-dash long options (-name N, -every, -murder) would not parse, so each
 * first letter is declared as a short string option: `-name` parses as n="ame". The
 * fleet then re-reads the command line as typed (its own parser takes both spellings).
 */
// --state-dir, --json and --help are the CLI's own, for every command.
const { 'state-dir': _stateDir, json: _json, help: _help, ...fleetOwn } = FLEET_OPTIONS
const options: Command['options'] = {
  ...fleetOwn,
  n: { type: 'string', short: 'n', multiple: true },
  u: { type: 'string', short: 'u', multiple: true },
  e: { type: 'string', short: 'e', multiple: true },
  g: { type: 'string', short: 'g', multiple: true },
  d: { type: 'string', short: 'd', multiple: true },
  l: { type: 'string', short: 'l', multiple: true },
  t: { type: 'string', short: 't', multiple: true },
  j: { type: 'string', short: 'j', multiple: true },
  s: { type: 'string', short: 's', multiple: true }
}

const LONG = Object.keys(FLEET_OPTIONS).filter(k => k !== 'help')

/** The arguments after `fleet`, as typed when they can be had, else rebuilt from what parsed. */
function argsOf (p: Parsed): string[] {
  const raw = process.argv.slice(2)
  if (raw[0] === 'fleet' && isDeepStrictEqual(parse(fleetCmd, raw.slice(1)), p)) return raw.slice(1)
  const out = [...p.positionals]
  for (const k of ['n', 'u', 'e', 'g', 'd', 'l', 't', 'j', 's']) {
    if (p.values[k] !== undefined) throw new UsageError('give --name, --uuid, --every, --grace, --db... (with two dashes) when evalmesh is not run from its command line')
  }
  for (const k of LONG) {
    const v = p.values[k]
    if (v === true) out.push(`--${k}`)
    else if (typeof v === 'string') out.push(`--${k}`, v)
    else if (Array.isArray(v)) for (const x of v) out.push(`--${k}`, x)
  }
  return out
}

export const fleetCmd: Command = {
  name: 'fleet',
  summary: 'many nodes from one config database: load, start, stop, reload, running, supervise',
  usage: FLEET_USAGE,
  options,
  run: async (p) => await fleetMain(argsOf(p))
}

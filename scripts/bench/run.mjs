// `npm run bench`: every benchmark, each printing its numbers beside a baseline
// measured in the same run. `--quick` shortens the runs; names select sections:
//   npm run bench -- directed broadcast discovery megatest peers overload journal transport nats memory [--quick]
// `--seconds N` sets how long the memory section runs (120 s by default, 20 with --quick).
import { spawnSync } from 'node:child_process'
import { existsSync } from 'node:fs'
import { join } from 'node:path'
import { benchDirected } from './directed.mjs'
import { benchBroadcast, canRunLab } from './broadcast.mjs'
import { benchPeers } from './peers.mjs'
import { benchOverload } from './overload.mjs'
import { benchJournal } from './journal.mjs'
import { benchTransport } from './transport.mjs'
import { benchMemory } from './memory.mjs'
import { benchNats } from './nats.mjs'
import { ROOT } from './lib.mjs'

const args = process.argv.slice(2)
const quick = args.includes('--quick')
const secondsAt = args.indexOf('--seconds')
const seconds = secondsAt >= 0 ? Number(args[secondsAt + 1]) : undefined
if (seconds !== undefined && !(Number.isFinite(seconds) && seconds >= 4 && seconds <= 86_400)) {
  console.error(`--seconds wants a number of seconds from 4 to 86400, not ${JSON.stringify(args[secondsAt + 1] ?? '')}`)
  process.exit(2)
}
const only = args.filter((a, i) => !a.startsWith('--') && !(secondsAt >= 0 && i === secondsAt + 1))

async function benchDiscovery () {
  const why = canRunLab()
  if (why !== undefined) { console.log(`\nDiscovery of 32 hosts: skipped (${why})`); return }
  console.log('\nDiscovery: time until all 32 hosts list each other (target: within 2 s of the last start)')
  spawnSync(process.execPath, [join(ROOT, 'scripts', 'bench', 'discovery-bench.mjs'), '--hosts', '32', '--rounds', quick ? '1' : '3'], { stdio: 'inherit' })
}

async function benchMegatestIfPresent () {
  const file = join(ROOT, 'scripts', 'bench', 'megatest.mjs')
  if (!existsSync(file)) return
  const { benchMegatest } = await import(file)
  await benchMegatest({ quick })
}

const sections = [
  ['directed', () => benchDirected({ quick })],
  ['broadcast', () => benchBroadcast({ quick })],
  ['discovery', benchDiscovery],
  ['megatest', benchMegatestIfPresent],
  ['peers', () => benchPeers({ quick })],
  ['overload', () => benchOverload({ quick })],
  ['journal', () => benchJournal({ quick })],
  ['transport', () => benchTransport({ quick })],
  ['nats', () => benchNats({ quick })],
  ['memory', () => benchMemory({ quick, seconds })]
]
console.log(`evalmesh benchmarks (${quick ? 'quick' : 'full'} run) on ${process.version}, ${new Date().toISOString()}`)
for (const [name, run] of sections) {
  if (only.length > 0 && !only.includes(name)) continue
  await run()
}

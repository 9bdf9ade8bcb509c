// `npm run bench`: every benchmark, each printing its numbers beside a baseline
// measured in the same run. `--quick` shortens the runs; names select sections.
import { benchDirected } from './directed.mjs'

const args = process.argv.slice(2)
const quick = args.includes('--quick')
const only = args.filter(a => !a.startsWith('--'))
const sections = [
  ['directed', () => benchDirected({ quick })]
]
console.log(`evalmesh benchmarks (${quick ? 'quick' : 'full'} run) on ${process.version}, ${new Date().toISOString()}`)
for (const [name, run] of sections) {
  if (only.length > 0 && !only.includes(name)) continue
  await run()
}

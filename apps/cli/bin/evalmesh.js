#!/usr/bin/env -S node --no-node-snapshot
// The evalmesh command. isolated-vm on Node 20 needs --no-node-snapshot; the shebang
// passes it, and a plain `node bin/evalmesh.js` re-executes itself with it.
import { spawnSync } from 'node:child_process'
import { fileURLToPath } from 'node:url'

const flags = [...process.execArgv, ...(process.env.NODE_OPTIONS ?? '').split(/\s+/)]
if (!flags.includes('--no-node-snapshot')) {
  const r = spawnSync(process.execPath, ['--no-node-snapshot', ...process.execArgv, fileURLToPath(import.meta.url), ...process.argv.slice(2)], { stdio: 'inherit' })
  process.exit(r.status ?? (r.signal !== null ? 128 : 1))
} else {
  const { main } = await import('../dist/src/main.js')
  process.exitCode = await main(process.argv.slice(2))
}

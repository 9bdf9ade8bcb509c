#!/usr/bin/env node
// Brings a checkout to a runnable state: installs dependencies when they are missing
// or older than the lockfile (native modules build from source here; allow a couple
// of minutes), then compiles the TypeScript. `npm start`, `npm test` and `npm run bench`
// run this first, so a fresh clone needs nothing else.
import { execFileSync } from 'node:child_process'
import { existsSync, statSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'

const root = join(dirname(fileURLToPath(import.meta.url)), '..')
const npm = process.platform === 'win32' ? 'npm.cmd' : 'npm'
const run = (cmd, args) => execFileSync(cmd, args, { cwd: root, stdio: ['ignore', 'inherit', 'inherit'] })

const marker = join(root, 'node_modules', '.package-lock.json')
const lock = join(root, 'package-lock.json')
const stale = !existsSync(marker) || (existsSync(lock) && statSync(lock).mtimeMs > statSync(marker).mtimeMs + 1000)
const nativeMissing = !existsSync(join(root, 'node_modules', 'isolated-vm', 'out', 'isolated_vm.node')) ||
  !existsSync(join(root, 'node_modules', 'better-sqlite3', 'build', 'Release', 'better_sqlite3.node'))

if (stale || nativeMissing) {
  console.error('[setup] installing dependencies (native modules build from source; this takes a minute or two)...')
  run(npm, [existsSync(lock) ? 'ci' : 'install', '--no-audit', '--no-fund'])
}
// The LAN tests need network namespaces, avahi, zeroconf and tmux from Debian's
// packages; the script installs what is missing when it runs as root, and otherwise
// explains why those tests will skip.
if (process.argv.includes('--system-deps') && process.platform === 'linux') {
  run('bash', [join(root, 'scripts', 'system-deps.sh')])
}
console.error('[setup] compiling TypeScript...')
run(process.execPath, [join(root, 'node_modules', 'typescript', 'bin', 'tsc'), '-b'])

#!/usr/bin/env node
// Lints (see below), then runs every compiled test file with node's test runner.
// isolated-vm needs --no-node-snapshot on Node 20; the runner passes it to each test process.
import { spawnSync } from 'node:child_process'
import { readdirSync, statSync, existsSync } from 'node:fs'
import { dirname, join, relative } from 'node:path'
import { fileURLToPath } from 'node:url'

const root = join(dirname(fileURLToPath(import.meta.url)), '..')
const only = process.argv.slice(2)

function walk (dir, out) {
  if (!existsSync(dir)) return out
  for (const name of readdirSync(dir)) {
    const p = join(dir, name)
    if (statSync(p).isDirectory()) walk(p, out)
    else if (name.endsWith('.test.js')) out.push(p)
  }
  return out
}

const files = []
for (const group of ['packages', 'apps']) {
  for (const pkg of readdirSync(join(root, group))) walk(join(root, group, pkg, 'dist', 'test'), files)
}
walk(join(root, 'test', 'dist'), files)
const selected = files
  .map(f => relative(root, f))
  .filter(f => only.length === 0 || only.some(o => f.includes(o)))
  .sort()

if (selected.length === 0) {
  console.error('no test files matched')
  process.exit(1)
}

// Type errors already failed `npm test` before this point: the pretest step (setup.mjs)
// builds with `tsc -b`, which type-checks every project and exits non-zero on an error.
// The whole suite (no file filter, as CI runs it) also lints first, and stops on a lint
// error (eslint.config.js; `npm run lint` runs the same alone). Its type-aware rules read
// the packages' declarations, which that build wrote. EVALMESH_SKIP_LINT=1 skips it.
if (only.length === 0 && process.env.EVALMESH_SKIP_LINT !== '1') {
  console.error('[test] linting: eslint . (npm run lint)')
  const lint = spawnSync(process.execPath, [join(root, 'node_modules', 'eslint', 'bin', 'eslint.js'), '.'], { cwd: root, stdio: 'inherit' })
  if (lint.status !== 0) {
    console.error('[test] lint failed: fix the errors above (`npx eslint --fix .` fixes the style ones), then run npm test again')
    process.exit(lint.status ?? 1)
  }
}
const result = spawnSync(process.execPath, [
  '--no-node-snapshot', '--test', '--test-concurrency=2', '--test-timeout=300000', ...selected
], { cwd: root, stdio: 'inherit', env: { ...process.env, EVALMESH_TEST: '1' } })
process.exit(result.status ?? 1)

/**
 * Finding one's way in the CLI (issue 16, point 3): --version, help CMD, "did you mean"
 * for a mistyped command or option, and shell completion driven in a real bash.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { spawnSync } from 'node:child_process'
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { CLI, ROOT } from './support/node.js'

function evalmesh (...args: string[]): { status: number | null, stdout: string, stderr: string } {
  const r = spawnSync(process.execPath, ['--no-node-snapshot', CLI, ...args], { encoding: 'utf8', timeout: 30_000 })
  return { status: r.status, stdout: r.stdout, stderr: r.stderr }
}

test('--version prints the package version', () => {
  const version = (JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { version: string }).version
  const r = evalmesh('--version')
  assert.equal(r.status, 0)
  assert.equal(r.stdout.trim(), `evalmesh ${version}`)
})

test('help CMD prints that command\'s usage, not the general help', () => {
  const r = evalmesh('help', 'trace')
  assert.equal(r.status, 0)
  assert.match(r.stdout, /usage: evalmesh trace/)
  assert.doesNotMatch(r.stdout, /usage: evalmesh eval/)
  assert.match(evalmesh('eval', '--help').stdout, /usage: evalmesh eval FORM/)
})

test('a mistyped command or option says what was meant and exits 2', () => {
  const cmd = evalmesh('evla', '1')
  assert.equal(cmd.status, 2)
  assert.match(cmd.stderr, /unknown command "evla" \(did you mean "eval"\?\)/)
  const help = evalmesh('help', 'stauts')
  assert.equal(help.status, 2)
  assert.match(help.stderr, /did you mean "status"\?/)
  const opt = evalmesh('eval', '--tiemout', '5', '1')
  assert.equal(opt.status, 2)
  assert.match(opt.stderr, /unknown option --tiemout \(did you mean --timeout\?\)/)
})

/** What bash's completion offers for the words typed so far (the last one is being completed). */
function complete (script: string, ...words: string[]): string[] {
  const typed = ['evalmesh', ...words].map(w => `'${w}'`).join(' ')
  const r = spawnSync('bash', ['--norc', '-c', `${script}\nCOMP_WORDS=(${typed}); COMP_CWORD=${words.length}; _evalmesh; printf '%s\\n' "\${COMPREPLY[@]}"`], { encoding: 'utf8' })
  assert.equal(r.status, 0, r.stderr)
  return r.stdout.split('\n').filter(Boolean).sort()
}

test('bash completion offers commands, each command\'s options and its fixed subcommands', () => {
  const r = evalmesh('completion', 'bash')
  assert.equal(r.status, 0)
  const script = r.stdout
  assert.deepEqual(complete(script, 'ev'), ['eval'])
  assert.deepEqual(complete(script, 're'), ['repl', 'reset', 'result'])
  assert.ok(complete(script, 'eval', '--ti').includes('--timeout'))
  assert.ok(complete(script, 'eval', '--').includes('--host'))
  assert.deepEqual(complete(script, 'fleet', 'st'), ['start', 'stop'])
  assert.deepEqual(complete(script, 'ci', ''), ['run', 'status'])
  assert.ok(complete(script, 'help', 'mo').includes('monitor'))
})

const hasZshAndTmux = spawnSync('zsh', ['--version']).status === 0 && spawnSync('tmux', ['-V']).status === 0

test('zsh completion, typed in a real zsh (tmux): Tab completes subcommands and options', { skip: hasZshAndTmux ? false : 'zsh or tmux is not installed (scripts/system-deps.sh installs both)' }, async () => {
  const socket = `evalmesh-zsh-${process.pid}`
  const tmux = (...args: string[]): string => spawnSync('tmux', ['-L', socket, ...args], { encoding: 'utf8' }).stdout
  const screen = (): string => tmux('capture-pane', '-p', '-t', 'z')
  const until = async (what: string, probe: () => boolean): Promise<void> => {
    const end = Date.now() + 20_000
    while (!probe()) {
      if (Date.now() > end) throw new Error(`timed out waiting for ${what}\n${screen()}`)
      await new Promise(resolve => setTimeout(resolve, 50))
    }
  }
  try {
    // zsh -f: no user rc files; compinit as a user's .zshrc would run it.
    tmux('new-session', '-d', '-s', 'z', '-x', '150', '-y', '30', `env -i HOME=${process.env.HOME ?? '/tmp'} TERM=xterm-256color PATH=${process.env.PATH ?? ''} zsh -f`)
    const load = `autoload -Uz compinit && compinit -u -D; eval "$('${process.execPath}' --no-node-snapshot '${CLI}' completion zsh)"; echo LOADED`
    tmux('send-keys', '-t', 'z', load, 'Enter')
    await until('the script to load', () => /^LOADED$/m.test(screen()))
    tmux('send-keys', '-t', 'z', 'evalmesh fleet st', 'Tab')
    await until('fleet subcommands listed', () => /start +stop/.test(screen()))
    tmux('send-keys', '-t', 'z', 'C-u', 'evalmesh eval --ti', 'Tab')
    await until('--timeout completed', () => /evalmesh eval --timeout\s*$/m.test(screen()))
  } finally {
    tmux('kill-server')
  }
})

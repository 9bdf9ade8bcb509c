import { readFileSync } from 'node:fs'
import { CommandError, UsageError, closest, parse, type Command } from './args.js'
import { RemoteEvalError, printable } from '@evalmesh/protocol'
import { MAX_BUSY_POLL_MICROS, busyPollMicrosFrom } from '@evalmesh/client'
import { COMPLETION_USAGE, completion } from './completion.js'
import { terminalText } from '@evalmesh/repl'
import { errorJson, errorText, outputShown, showOutput } from './output.js'
import { serve } from './commands/serve.js'
import { abortCmd, applyCmd, describeCmd, evalCmd, peersCmd, pingCmd, policyCmd, resetCmd, resultCmd, statusCmd } from './commands/remote.js'
import { keyCmd, trustCmd } from './commands/keys.js'
import { operatorCommands } from './commands/operator.js'
import { areaServerCmd, ciCmd } from './commands/ci.js'
import { fleetCmd } from './commands/fleet.js'

export const commands: Command[] = [
  serve, evalCmd, applyCmd, abortCmd, statusCmd, resultCmd, describeCmd, pingCmd, resetCmd, policyCmd, peersCmd,
  ...operatorCommands, ciCmd, areaServerCmd, keyCmd, trustCmd, fleetCmd
]

function help (): string {
  const w = Math.max(...commands.map(c => c.name.length), 'completion'.length)
  return [
    'evalmesh: a peer-to-peer remote-evaluation mesh (after Interlisp-D\'s EVALSERVER)',
    '',
    'usage: evalmesh <command> [options]     evalmesh help <command>     evalmesh --version',
    '',
    ...commands.map(c => `  ${c.name.padEnd(w)}  ${c.summary}`),
    `  ${'completion'.padEnd(w)}  print a bash or zsh completion script: eval "$(evalmesh completion bash)"`,
    '',
    'Every command takes --state-dir D (or $EVALMESH_STATE_DIR) and --json. Commands that',
    'talk to one node take --host H; without it they use the local node (README: "Which',
    'node a command talks to"). They also take --nats URL[,URL...] (with --nats-creds FILE',
    'and --nats-mesh NAME) to reach nodes on a NATS backbone (README: "Beyond one LAN").'
  ].join('\n')
}

function commandHelp (command: Command): string {
  return `${command.summary}\n\nusage: ${command.usage}`
}

/** The version of evalmesh, from the root package.json. */
export function version (): string {
  const pkg = JSON.parse(readFileSync(new URL('../../../../package.json', import.meta.url), 'utf8')) as { version: string }
  return pkg.version
}

function unknownCommand (name: string): string {
  const near = closest(name, [...commands.map(c => c.name), 'help', 'completion'])
  return `evalmesh: unknown command "${printable(name, 100)}"${near !== undefined ? ` (did you mean "${near}"?)` : ''}; \`evalmesh help\` lists the commands`
}

/**
 * EVALMESH_BUSY_POLL_US, read by the transport when it loads: a value it cannot use turns
 * busy-polling off there (a library must not fail to load), so the CLI names the mistake.
 */
function checkBusyPollEnv (): void {
  const v = process.env.EVALMESH_BUSY_POLL_US
  if (v === undefined || v === '') return
  if (busyPollMicrosFrom(v) === undefined) {
    throw new UsageError(`EVALMESH_BUSY_POLL_US must be a whole number of µs from 0 to ${MAX_BUSY_POLL_MICROS}, not "${printable(v, 40)}"`)
  }
}

/** Run the CLI; resolves with the exit code. */
export async function main (argv: string[]): Promise<number> {
  const [name, ...rest] = argv
  if (name === undefined || name === '--help' || name === '-h') {
    console.log(help())
    return name === undefined ? 2 : 0
  }
  if (name === '--version' || name === '-V' || name === 'version') { console.log(`evalmesh ${version()}`); return 0 }
  if (name === 'help') {
    const topic = rest[0]
    if (topic === undefined) { console.log(help()); return 0 }
    const c = commands.find(x => x.name === topic)
    if (c !== undefined) { console.log(commandHelp(c)); return 0 }
    if (topic === 'completion') { console.log(COMPLETION_USAGE); return 0 }
    console.error(unknownCommand(topic))
    return 2
  }
  if (name === 'completion') return completion(rest, commands)
  const command = commands.find(c => c.name === name)
  if (command === undefined) {
    console.error(unknownCommand(name))
    return 2
  }
  const json = rest.includes('--json')
  try {
    const parsed = parse(command, rest)
    checkBusyPollEnv()
    if (parsed.values.help === true) {
      console.log(commandHelp(command))
      return 0
    }
    return await command.run(parsed)
  } catch (err) {
    if (err instanceof UsageError) {
      // A usage message may quote what a node said (an area name): escaped.
      if (json) console.log(errorJson(err))
      console.error(`evalmesh ${command.name}: ${terminalText(err.message)}\n\nusage: ${command.usage}`)
      return 2
    }
    if (json) {
      console.log(errorJson(err))
    } else {
      // What the form printed before it failed, then the error.
      if (err instanceof RemoteEvalError && err.output !== '' && !outputShown.has(err)) { const out = showOutput(err.output); process.stderr.write(out.endsWith('\n') ? out : out + '\n') }
      console.error(errorText(err))
    }
    return err instanceof CommandError ? err.exitCode : 1
  }
}

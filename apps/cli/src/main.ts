import { UsageError, parse, type Command } from './args.js'
import { RemoteEvalError } from '@evalmesh/protocol'
import { terminalText } from '@evalmesh/repl'
import { errorJson, errorText, showOutput } from './output.js'
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
  const w = Math.max(...commands.map(c => c.name.length))
  return [
    'evalmesh: a peer-to-peer remote-evaluation mesh (after Interlisp-D\'s EVALSERVER)',
    '',
    'usage: evalmesh <command> [options]     evalmesh <command> --help',
    '',
    ...commands.map(c => `  ${c.name.padEnd(w)}  ${c.summary}`),
    '',
    'Every command takes --state-dir D (or $EVALMESH_STATE_DIR) and --json.'
  ].join('\n')
}

/** Run the CLI; resolves with the exit code. */
export async function main (argv: string[]): Promise<number> {
  const [name, ...rest] = argv
  if (name === undefined || name === '--help' || name === '-h' || name === 'help') {
    console.log(help())
    return name === undefined ? 2 : 0
  }
  const command = commands.find(c => c.name === name)
  if (command === undefined) {
    console.error(`evalmesh: unknown command "${name}"\n\n${help()}`)
    return 2
  }
  let json = false
  try {
    const parsed = parse(command, rest)
    json = parsed.values.json === true
    if (parsed.values.help === true) {
      console.log(`${command.summary}\n\nusage: ${command.usage}`)
      return 0
    }
    return await command.run(parsed)
  } catch (err) {
    if (err instanceof UsageError) {
      // A usage message may quote what a node said (an area name): escaped.
      console.error(`evalmesh ${command.name}: ${terminalText(err.message)}\n\nusage: ${command.usage}`)
      return 2
    }
    if (json) {
      console.log(errorJson(err))
    } else {
      // What the form printed before it failed, then the error.
      if (err instanceof RemoteEvalError && err.output !== '') { const out = showOutput(err.output); process.stderr.write(out.endsWith('\n') ? out : out + '\n') }
      console.error(errorText(err))
    }
    return 1
  }
}

import { UsageError, common, type Command } from './args.js'
import { errorJson, jsonOk } from './output.js'

export const COMPLETION_USAGE = `print a shell completion script for evalmesh

usage: evalmesh completion bash|zsh

  bash:  eval "$(evalmesh completion bash)"        (e.g. in ~/.bashrc)
  zsh:   eval "$(evalmesh completion zsh)"         (e.g. in ~/.zshrc)

  Completes command names, each command's options, and files elsewhere.`

/** Words that may follow a command name (its first positional), where they are fixed. */
const SUBWORDS: Record<string, string[]> = {
  ci: ['run', 'status'],
  trust: ['list', 'add', 'remove', 'mesh-key'],
  fleet: ['load', 'config', 'servers', 'log', 'commit', 'start', 'stop', 'reload', 'running', 'supervise'],
  completion: ['bash', 'zsh']
}

interface Table { names: string[], options: Record<string, string[]> }

function tableOf (commands: Command[]): Table {
  const options: Record<string, string[]> = {}
  for (const c of commands) {
    // One-letter keys are short spellings (fleet's -name as n): not offered as --n.
    options[c.name] = [...new Set([...Object.keys(c.options), ...Object.keys(common)])].filter(o => o.length > 1).sort().map(o => `--${o}`)
  }
  options.help = []
  options.completion = []
  const names = [...commands.map(c => c.name), 'help', 'completion']
  return { names, options }
}

// Command and option names are plain words ([a-z-]); nothing in them needs shell quoting.
function bash (t: Table): string {
  const cases = t.names.map(n => {
    const follow = n === 'help' ? t.names.filter(x => x !== 'help') : SUBWORDS[n] ?? []
    return `    ${n}) opts="${t.options[n]!.join(' ')}"; subs="${follow.join(' ')}" ;;`
  }).join('\n')
  return `# evalmesh bash completion: eval "$(evalmesh completion bash)"
_evalmesh() {
  local cur="\${COMP_WORDS[COMP_CWORD]}" opts="" subs=""
  if [ "$COMP_CWORD" -eq 1 ]; then
    COMPREPLY=( $(compgen -W "${t.names.join(' ')} --help --version" -- "$cur") )
    return 0
  fi
  case "\${COMP_WORDS[1]}" in
${cases}
  esac
  if [[ "$cur" == -* ]]; then
    COMPREPLY=( $(compgen -W "$opts" -- "$cur") )
  elif [ "$COMP_CWORD" -eq 2 ] && [ -n "$subs" ]; then
    COMPREPLY=( $(compgen -W "$subs" -- "$cur") )
  fi
  return 0
}
complete -o default -F _evalmesh evalmesh
`
}

function zsh (t: Table): string {
  const cases = t.names.map(n => {
    const follow = n === 'help' ? t.names.filter(x => x !== 'help') : SUBWORDS[n] ?? []
    return `    ${n}) opts=(${t.options[n]!.join(' ')}); subs=(${follow.join(' ')}) ;;`
  }).join('\n')
  return `# evalmesh zsh completion: eval "$(evalmesh completion zsh)"
_evalmesh() {
  local -a opts subs
  if (( CURRENT == 2 )); then
    compadd -- ${t.names.join(' ')} --help --version
    return
  fi
  case \${words[2]} in
${cases}
  esac
  if [[ \${words[CURRENT]} == -* ]]; then
    compadd -- $opts
  elif (( CURRENT == 3 && \${#subs} > 0 )); then
    compadd -- $subs
  else
    _files
  fi
}
if (( ! $+functions[compdef] )); then autoload -Uz compinit && compinit -u; fi
compdef _evalmesh evalmesh
`
}

/** `evalmesh completion bash|zsh`: print the script; exit 2 for another shell. */
export function completion (args: string[], commands: Command[]): number {
  const json = args.includes('--json')
  const shell = args.filter(a => a !== '--json')[0]
  if (shell === 'bash' || shell === 'zsh') {
    const script = (shell === 'bash' ? bash : zsh)(tableOf(commands))
    if (json) console.log(jsonOk({ shell, script }))
    else process.stdout.write(script)
    return 0
  }
  if (json) console.log(errorJson(new UsageError('give bash or zsh')))
  console.error(`evalmesh completion: give bash or zsh${shell !== undefined ? `, not "${shell.replace(/[^\w.-]/g, '?')}"` : ''}\n\n${COMPLETION_USAGE}`)
  return 2
}

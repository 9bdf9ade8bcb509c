import { EvalMeshError } from '@evalmesh/protocol'
import { FUNCTION_NAME, type ApplyContext, type OperatorFunction } from './functions.js'
import { requireOperator, type Caller } from './access.js'

/** A Megatest service the node serves (packages/megatest), seen through what the server needs. */
export interface MegatestBinding {
  /** Megatest's transport shape: { status: ok | busy | error, errmsg, result, meta }. */
  call (area: string, command: string, params: unknown[]): Promise<unknown>
  /** The bare result; errors thrown as EvalMeshError (UNKNOWN_AREA, READ_ONLY, MEGATEST_BUSY...). */
  callOrThrow (area: string, command: string, params: unknown[]): Promise<unknown>
  /** `operator`: only an operator of the node may run it (kill-server). */
  commands (): Array<{ name: string, operator?: boolean }>
  areas (): Array<{ name: string }>
}

/** A built-in function: the node's own operations, called with the caller's rights. */
export type Builtin = (args: unknown[], ctx: CallContext) => unknown

/** What every call gets: its transaction, who is asking, and a signal that fires on abort or timeout. */
export interface CallContext extends ApplyContext {
  caller: Caller
}

const RESERVED = ['evalserver.', 'megatest.']

/**
 * Every name remoteApply can call, and the names forms see: one table, so the two
 * cannot disagree. Built-ins are `evalserver.*`; operator functions are called by
 * their own name and appear in forms as `fns.<name>`; Megatest commands are
 * `megatest.<command>` (and `megatest(area, command, ...)` / `megatest.call` in forms).
 */
export class FunctionRegistry {
  readonly #builtins = new Map<string, Builtin>()
  readonly #functions = new Map<string, OperatorFunction>()
  readonly #megatest: MegatestBinding | undefined
  readonly #onChange: () => void

  constructor (options: { builtins: Record<string, Builtin>, megatest?: MegatestBinding | undefined, onChange?: () => void }) {
    for (const [name, fn] of Object.entries(options.builtins)) this.#builtins.set(name, fn)
    this.#megatest = options.megatest
    this.#onChange = options.onChange ?? (() => {})
  }

  get megatest (): MegatestBinding | undefined { return this.#megatest }

  register (name: string, fn: OperatorFunction): void {
    if (!FUNCTION_NAME.test(name)) throw new Error(`"${name}" is not a usable function name`)
    if (RESERVED.some(p => name.startsWith(p))) throw new Error(`"${name}" is reserved for built-ins`)
    this.#functions.set(name, fn)
    this.#onChange()
  }

  /** Take an operator function away (a functions module reloaded without it). */
  unregister (name: string): void {
    if (this.#functions.delete(name)) this.#onChange()
  }

  /** The names remoteApply accepts, as describe lists them. */
  names (): string[] {
    const mt = this.#megatest === undefined ? [] : ['megatest', ...this.#megatest.commands().map(c => `megatest.${c.name}`)]
    return [...this.#builtins.keys(), ...this.#functions.keys(), ...mt]
  }

  /** The dotted names installed in every sandbox context. */
  grants (): string[] {
    const mt = this.#megatest === undefined ? [] : [...this.#megatest.commands().map(c => `megatest.${c.name}`), 'megatest.call']
    return [...this.#builtins.keys(), ...[...this.#functions.keys()].map(n => `fns.${n}`), ...mt]
  }

  has (fn: string): boolean {
    if (this.#builtins.has(fn) || this.#functions.has(fn)) return true
    return this.#megatest !== undefined && (fn === 'megatest' || fn.startsWith('megatest.'))
  }

  /** The apply name behind a name a form called (`fns.greet` is `greet`). */
  fromGrant (grant: string): string {
    if (grant.startsWith('fns.')) return grant.slice(4)
    return grant === 'megatest.call' ? 'megatest' : grant
  }

  async call (fn: string, args: unknown[], ctx: CallContext): Promise<unknown> {
    const builtin = this.#builtins.get(fn)
    if (builtin !== undefined) return await builtin(args, ctx)
    const mt = this.#megatest
    if (mt !== undefined && fn === 'megatest') {
      const [area, command, ...params] = args
      if (typeof area !== 'string' || typeof command !== 'string') throw new EvalMeshError('BAD_MESSAGE', 'megatest: the arguments are (area, command, ...params)')
      this.#checkMegatestRight(command, ctx.caller)
      return await mt.call(area, command, params)
    }
    if (mt !== undefined && fn.startsWith('megatest.')) {
      const [area, ...params] = args
      if (typeof area !== 'string') throw new EvalMeshError('BAD_MESSAGE', `${fn}: the first argument must be the area name`)
      const command = fn.slice('megatest.'.length)
      this.#checkMegatestRight(command, ctx.caller)
      return await mt.callOrThrow(area, command, params)
    }
    const f = this.#functions.get(fn)
    if (f === undefined) throw new EvalMeshError('UNKNOWN_FUNCTION', `this node has no function "${fn}"`, { fn })
    const { caller: _caller, ...applyContext } = ctx
    return await f.apply(applyContext, args)
  }

  #checkMegatestRight (command: string, caller: Caller): void {
    if (this.#megatest?.commands().some(c => c.name === command && c.operator === true) === true) requireOperator(caller, `megatest ${command}`)
  }
}

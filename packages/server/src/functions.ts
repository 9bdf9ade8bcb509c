import { pathToFileURL } from 'node:url'
import { resolve } from 'node:path'

/**
 * Operator functions: trusted host code a node's operator registers by name, called
 * by remoteApply (and from sandboxed forms as `fns.<name>(...)`). Like a Lisp function
 * defined on the server. Each call gets `this` = { txn, peer, signal }; the signal
 * fires when the transaction is aborted or times out.
 */
export interface ApplyContext {
  txn: string
  peer: { id: string, name: string }
  signal: AbortSignal
}

export type OperatorFunction = (this: ApplyContext, ...args: any[]) => unknown

let reloads = 0

export const FUNCTION_NAME = /^[A-Za-z_$][\w$-]*(\.[A-Za-z_$][\w$-]*)*$/

/**
 * Load a module of operator functions: its named function exports, or the function
 * properties of its default export.
 */
export async function loadFunctionsModule (path: string, fresh = false): Promise<Record<string, OperatorFunction>> {
  // A module is evaluated once per URL: a reload (fresh) asks for a new URL, so an edited
  // file is read again. The old evaluation stays in memory (ES modules cannot be unloaded).
  const url = pathToFileURL(resolve(path)).href + (fresh ? `?reload=${++reloads}` : '')
  const mod = await import(url) as Record<string, unknown>
  const out: Record<string, OperatorFunction> = {}
  const take = (source: Record<string, unknown>): void => {
    for (const [name, value] of Object.entries(source)) {
      if (typeof value === 'function' && name !== 'default') out[name] = value as OperatorFunction
    }
  }
  take(mod)
  if (typeof mod.default === 'object' && mod.default !== null) take(mod.default as Record<string, unknown>)
  if (Object.keys(out).length === 0) throw new Error(`${path} exports no functions`)
  for (const name of Object.keys(out)) {
    if (!FUNCTION_NAME.test(name)) throw new Error(`${path}: "${name}" is not a usable function name`)
  }
  return out
}

import { EvalMeshError, nodeIdOfClient, parseTxn } from '@evalmesh/protocol'

/**
 * Who is asking, as this node knows them: the key's id, the name this node gives
 * that key (its trusted-keys label, never the name a peer claims), and whether the
 * key is an operator's (the node's own key, or one marked `role=operator`).
 */
export interface Caller {
  id: string
  name: string
  operator: boolean
}

/** The rights a request may need; a refusal names one (FORBIDDEN, data.right). */
export type Right = 'operator'

/**
 * The authorization model (PROTOCOL.md §7, docs/SECURITY.md): a client sees and
 * controls its own transactions (status, result, abort, trace entries); an operator
 * sees and controls all, and alone may change policy, switch or clear the trace,
 * and run operator-only commands such as Megatest's kill-server.
 */
export function ownsTxn (caller: Caller, txn: string): boolean {
  if (caller.operator) return true
  try {
    return nodeIdOfClient(parseTxn(txn).client) === caller.id
  } catch {
    return false
  }
}

export function requireOperator (caller: Caller, action: string): void {
  if (caller.operator) return
  throw new EvalMeshError('FORBIDDEN', `${action} is an operator action; ${caller.name} is not an operator of this node`, { right: 'operator' satisfies Right })
}

/** The node itself, for local callers (control port, monitor, status window). */
export function localOperator (id: string, name: string): Caller {
  return { id, name, operator: true }
}

/** How an abort is asked for (EvalServer.abort, the control port, `evalserver.abort()`). */
export interface AbortOptions {
  reason?: string
  mustExist?: boolean
  client?: string
  /** Who asked: undefined = the local operator ("aborted locally"). */
  by?: string
  /** Whose rights apply: a non-operator may abort only its own transactions (default: the local operator). */
  caller?: Caller
}

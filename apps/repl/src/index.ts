/**
 * @packageDocumentation
 * The evalmesh REPL: a Node REPL with remoteEval, remoteApply, remoteAbort,
 * remoteEvalAll, status and peers in scope, awaitable at top level. `.host NAME` sends
 * plain input to a node; Ctrl-C while waiting aborts the remote transaction.
 *
 * ```ts
 * const r = await startRepl({ client: new Client(), historyFile: '/home/me/.evalmesh/repl_history' })
 * await r.closed
 * ```
 */
export { startRepl, type Repl, type ReplOptions } from './repl.js'
export {
  terminalText, stackFrames, showValue, readableErrors, isErrorValue, errorValueText, describeWait, waitNotice, WAIT_NOTICE_MS,
  type ErrorValue
} from './present.js'

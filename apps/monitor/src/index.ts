/**
 * @packageDocumentation
 * The status window (EVALSERVER.STATUS.WINDOW and the trace window): a blessed screen
 * showing one node's running, input (queued) and done transactions, its policy, peers
 * and trace, live. Select a running or queued row and press d to abort it.
 *
 * ```ts
 * await runMonitor({ client: new Client(), host: '127.0.0.1:6680' }) // resolves on q
 * ```
 */
export { createMonitor, runMonitor, type Monitor, type MonitorOptions } from './monitor.js'
export { tableLines, traceLine, parseGagEdit, peerLines, shortTxn, type ListName } from './format.js'

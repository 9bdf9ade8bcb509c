/**
 * @packageDocumentation
 * The EvalServer: every request goes receive -> authenticate -> admit (gags, then
 * hosts) -> input queue -> running in the sandbox -> done record -> reply -> purge.
 *
 * ```ts
 * const node = await startServer({ port: 0, hosts: ['directed'], gags: ['self'] })
 * node.status('running')
 * await node.abort('3fa9c01b22de4410.7c1a2b:12', { reason: 'taking too long' })
 * ```
 */
export { readLocalNodes, readNodeLocator, NODES_DIR, NODE_FILE, type NodeLocator } from './local-nodes.js'
export { startServer, EvalServer, DEFAULT_EVAL_LIMITS, type NodeQuotas, type ServerInit, type AbortOptions, type AbortResult, type MegatestBinding } from './eval-server.js'
export { AdmissionPolicy, DEFAULT_HOSTS, type PolicyState, type Decision, type RequestMode, type PolicyPeer } from './policy.js'
export { Trace, attachTrace, type TraceEvent, type TraceEventKind } from './trace.js'
export { channels, publish, subscribeAll, eventsAtLeast, ownerOf, txnOwner, EVENTS, EVENT_NAMES, LEVELS, type TypedChannel, type EventName, type PayloadOf, type EventSpec, type AnyEvent, type Level, type TraceKind, type NodeEvent, type PeerEvent } from './events.js'
export { createNodeLogger, isLogLevel, isLogFormat, LOG_LEVELS, LOG_FORMATS, type NodeLogger, type NodeLoggerOptions, type LogLevel, type LogFormat } from './log.js'
export type { ApplyContext, OperatorFunction } from './functions.js'
export { loadFunctionsModule } from './functions.js'
export { BroadcastResponder } from './broadcast-responder.js'
export { startControlPort, type ControlPort, type ControlReply } from './control-port.js'
export { CONTROL_SOCKET } from '@evalmesh/protocol'
export { tierUpEarly } from '@evalmesh/sandbox'
export { NatsLink, type NatsInit } from './nats-link.js'

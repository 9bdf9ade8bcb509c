/**
 * @packageDocumentation
 * NATS as a carrier for the evalmesh protocol (PROTOCOL.md §9): virtual byte streams that
 * the handshake and the framed protocol run over unchanged, broadcast datagrams on mesh
 * subjects, and signed presence announcements. NATS is a transport, not a trust root.
 */
export { NatsCarrier, meshSubjects, parseServers, isUsableInbox, type NatsConfig, type MeshSubjects, type CarrierEvents } from './carrier.js'
export { NatsStream, STREAM_DATA, STREAM_FIN, STREAM_RST, STREAM_PROBE, STREAM_HEADER_BYTES, MAX_UNREAD_BYTES, type StreamDrop, type NatsStreamOptions } from './stream.js'
export { NatsPresence, MAX_NATS_PEERS, type NatsPeer, type PresenceInit } from './presence.js'
export type { Subscription } from 'nats'

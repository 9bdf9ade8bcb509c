/**
 * @packageDocumentation
 * Authenticated, framed TCP connections: the handshake (PROTOCOL.md §2), request
 * and reply multiplexing for clients, and the listener for servers. The server
 * and the client share this code so that both sides speak exactly one protocol.
 */
export { FramedSocket } from './framed-socket.js'
export { setBusyPoll, busyPollStats, busyPollMicrosFrom, DEFAULT_BUSY_POLL_MICROS, MAX_BUSY_POLL_MICROS, type BusyPollStats } from './busy-poll.js'
export { serverHandshake, clientHandshake, transcript, type PeerInfo } from './handshake.js'
export { ephemeralKey, deriveDirectionKeys, FrameMac, isLoopbackAddress, type IntegrityMode } from './frame-integrity.js'
export { ClientConnection, HEARTBEAT_INTERVAL_MS, HEARTBEAT_TIMEOUT_MS, type ConnectOptions, type RequestOptions, type RequestBody } from './client-connection.js'
export { Listener, ServerConnection, type ListenOptions, type ListenerCounters } from './server-listener.js'
export {
  sealDatagram, openDatagram, ReplayWindow, newDatagramCounters, DATAGRAM_LABEL, DATAGRAM_WINDOW_MS, MAX_DATAGRAM_BYTES,
  type DatagramSender, type DatagramCounters, type DropReason, type OpenResult
} from './datagram.js'

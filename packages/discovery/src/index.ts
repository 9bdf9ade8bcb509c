/**
 * @packageDocumentation
 * Finding the other nodes of the mesh: mDNS / DNS-SD advertise and browse on one
 * LAN interface (IPv4 on 224.0.0.251, IPv6 on ff02::fb), a peer table with TTL expiry, and static seeds for networks
 * where multicast does not reach.
 *
 * A node `alpha` with id `n-alpha`, EvalServer port 6680 on 198.18.0.1 advertises:
 *
 * ```
 * _evalmesh._tcp.local            PTR  alpha._evalmesh._tcp.local      ttl 4500
 * alpha._evalmesh._tcp.local      SRV  0 0 6680 alpha.local            ttl 120, cache-flush
 * alpha._evalmesh._tcp.local      TXT  "id=n-alpha" "proto=1" "caps=eval,megatest"   ttl 4500, cache-flush
 * alpha.local                     A    198.18.0.1                      ttl 120, cache-flush
 * _services._dns-sd._udp.local    PTR  _evalmesh._tcp.local            ttl 4500
 * ```
 *
 * ```ts
 * const d = createDiscovery({ interfaceAddress: '198.18.0.1' })
 * await d.start()
 * d.on('appear', peer => console.log(peer.name, peer.address, peer.port))
 * d.advertise({ name: 'alpha', id: 'n-alpha', port: 6680, version: 1, caps: ['eval'] })
 * d.browse()
 * // ... on shutdown: goodbye records (TTL 0), then the socket closes
 * await d.stop()
 * ```
 */
export { createDiscovery, type Discovery, type DiscoveryInit } from './discovery.js'
export { PeerTable, type Peer, type PeerInput, type PeerSource, type PeerTableInit } from './peer-table.js'
export { parseSeeds, readSeedsFile, SeedFileError, TLS_CAP, type SeedPeer } from './seeds.js'
export type { ServiceInfo } from './records.js'
// The broadcast responder and client join their multicast group on the same interface as mDNS.
export { isLinkLocalV6, multicastInterfaceFor } from './interfaces.js'
export { SERVICE_TYPE } from './constants.js'

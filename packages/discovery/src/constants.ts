/** DNS-SD names and mDNS timings. RFC numbers name the clause each value comes from. */

/** Our DNS-SD service type (RFC 6763 §7). */
export const SERVICE_TYPE = '_evalmesh._tcp.local'
/** Service-type enumeration, so `avahi-browse -a` lists us (RFC 6763 §9). */
export const SERVICES_META = '_services._dns-sd._udp.local'

export const MDNS_PORT = 5353
/** The mDNS groups (RFC 6762 §3): IPv4, and IPv6 link-local scope. */
export const MDNS_GROUP_V4 = '224.0.0.251'
export const MDNS_GROUP_V6 = 'ff02::fb'

/** Default TTL (s) for SRV and A: host-name records (RFC 6762 §10). */
export const DEFAULT_HOST_TTL = 120
/** TTL (s) for PTR and TXT: "other" records (RFC 6762 §10, 75 minutes). */
export const OTHER_TTL = 4500
/** Unicast replies to legacy (non-5353) queriers carry at most this TTL (RFC 6762 §6.7). */
export const LEGACY_MAX_TTL = 10

/** Probing: three queries 250 ms apart after a random 0-250 ms wait (RFC 6762 §8.1). */
export const PROBE_COUNT = 3
export const PROBE_INTERVAL_MS = 250
/** Announcing: at least two unsolicited responses one second apart (RFC 6762 §8.3). */
export const ANNOUNCE_COUNT = 2
export const ANNOUNCE_INTERVAL_MS = 1000
/** Shared (PTR) answers wait 20-120 ms so that many responders don't collide (RFC 6762 §6). */
export const SHARED_DELAY_MIN_MS = 20
export const SHARED_DELAY_MAX_MS = 120

/** Continuous browsing: first interval 1 s, doubling, capped (RFC 6762 §5.2 allows up to 60 min). */
export const BROWSE_FIRST_INTERVAL_MS = 1000
export const BROWSE_MAX_INTERVAL_MS = 60_000
/** Cache maintenance re-queries at these fractions of a record's TTL (RFC 6762 §5.2). */
export const REFRESH_POINTS = [0.80, 0.85, 0.90, 0.95] as const
/** How often the cache is checked for expiry and due re-queries. */
export const TICK_MS = 250
/** SO_RCVBUF asked for (the kernel caps it at net.core.rmem_max). */
export const RECV_BUFFER_BYTES = 2 * 1024 * 1024
/** A packet we sent comes back to us (multicast loopback) within this window. */
export const OWN_PACKET_WINDOW_MS = 2000

/** Limits on what a peer may claim, so a hostile packet cannot bloat the table. */
export const MAX_LABEL_BYTES = 63
export const MAX_ID_LENGTH = 128
export const MAX_CAPS = 64
export const MAX_CAP_LENGTH = 64
export const MAX_INSTANCES = 4096

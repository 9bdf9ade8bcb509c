/**
 * Writing network endpoints for people and files. An IPv6 address holds colons, so
 * `::1:7000` could be the address ::1:7000 with no port; everything evalmesh prints or
 * stores writes it `[::1]:7000` (RFC 3986 §3.2.2), the form `resolveHost` reads back.
 */

/** `host:port`, or `[v6]:port` for an IPv6 address. */
export function formatHost (address: string, port: number | string): string {
  return address.includes(':') ? `[${address}]:${port}` : `${address}:${port}`
}

/** Why a socket operation failed, worded by what happened: Node's own messages end in `::1:7000`. */
const SOCKET_ERRORS: Readonly<Record<string, string>> = {
  ECONNREFUSED: 'connection refused',
  ECONNRESET: 'connection reset by the peer',
  EHOSTUNREACH: 'host unreachable',
  ENETUNREACH: 'network unreachable',
  ETIMEDOUT: 'timed out',
  EADDRNOTAVAIL: 'the address is not on any interface of this machine',
  EADDRINUSE: 'the address is already in use',
  EACCES: 'permission denied',
  ENOTFOUND: 'no such host name',
  EAI_AGAIN: 'the host name could not be looked up (temporary DNS failure)'
}

/**
 * A socket error as text that names no address (the caller names it with formatHost):
 * `connection refused (ECONNREFUSED)`. Errors without a known code keep their message.
 */
export function socketErrorText (err: Error): string {
  const code = (err as NodeJS.ErrnoException).code
  if (code === undefined) return err.message
  const text = SOCKET_ERRORS[code]
  return text === undefined ? err.message : `${text} (${code})`
}

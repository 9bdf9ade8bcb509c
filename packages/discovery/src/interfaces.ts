/**
 * The machine's LAN interfaces, seen from one address on them: what a node on a LAN
 * needs to join multicast groups on the right link, IPv4 or IPv6. Shared by discovery,
 * the broadcast responder, the client's broadcaster and `serve --lan`.
 */
import { isIPv4, isIPv6 } from 'node:net'
import { networkInterfaces } from 'node:os'

export interface InterfaceAddress {
  address: string
  family: 'IPv4' | 'IPv6'
  /** Prefix length (24 for a /24, 64 for a /64). */
  prefix: number
}

export interface LanInterface {
  /** The interface's name (lan0, eth0...), which is also an IPv6 link-local scope. */
  name: string
  addresses: InterfaceAddress[]
}

/** An IPv6 address without its `%scope` (Node writes link-local sources as `fe80::1%lan0`). */
export function withoutScope (address: string): string {
  const i = address.indexOf('%')
  return i < 0 ? address : address.slice(0, i)
}

/** fe80::/10: usable only together with an interface, never as a node's address. */
export function isLinkLocalV6 (address: string): boolean {
  return isIPv6(address) && /^fe[89ab]/i.test(withoutScope(address))
}

/** The interface holding `address`, or undefined if none of this machine's does. */
export function interfaceOf (address: string): LanInterface | undefined {
  const want = canonical(address)
  for (const [name, addrs] of Object.entries(networkInterfaces())) {
    const list = (addrs ?? []).map(a => ({ address: a.address, family: a.family, prefix: prefixOf(a.cidr) }))
    if (list.some(a => canonical(a.address) === want)) return { name, addresses: list }
  }
  return undefined
}

/**
 * What dgram's addMembership and setMulticastInterface take to mean "this interface":
 * an IPv4 address names its interface; IPv6 names it by scope, `::%lan0` (the kernel
 * would otherwise pick one, perhaps the wrong link).
 */
export function multicastInterfaceFor (address: string): string {
  if (isIPv4(address)) return address
  const iface = interfaceOf(address)
  if (iface === undefined) throw new Error(`no network interface has the address ${address}`)
  return `::%${iface.name}`
}

/** Whether `remote` (a datagram's source) is on the link of `iface`: one of its subnets, or link-local with its scope. */
export function onLink (iface: LanInterface, remote: string): boolean {
  if (isLinkLocalV6(remote)) {
    const scope = remote.includes('%') ? remote.slice(remote.indexOf('%') + 1) : ''
    return scope === iface.name || scope === ''
  }
  const r = bitsOf(remote)
  if (r === undefined) return false
  return iface.addresses.some(a => {
    const b = bitsOf(a.address)
    return b !== undefined && b.length === r.length && b.slice(0, a.prefix) === r.slice(0, a.prefix)
  })
}

/** Whether `remote` is one of the interface's own addresses (our own multicast, looped back). */
export function isOwnAddress (iface: LanInterface, remote: string): boolean {
  const r = canonical(remote)
  return iface.addresses.some(a => canonical(a.address) === r)
}

/**
 * The address `serve --lan` joins when none is given: the first non-internal IPv4
 * address, else the first global IPv6 one (a v6-only LAN). Link-local IPv6 addresses are
 * never chosen: a peer could reach them only by naming our interface.
 */
export function firstLanAddress (): string | undefined {
  const all = Object.values(networkInterfaces()).flatMap(a => a ?? []).filter(a => !a.internal)
  return all.find(a => a.family === 'IPv4')?.address ?? all.find(a => a.family === 'IPv6' && !isLinkLocalV6(a.address))?.address
}

function prefixOf (cidr: string | null): number {
  const n = Number(cidr?.split('/')[1])
  return Number.isInteger(n) ? n : 0
}

/** The address as a string of bits, so prefixes compare as string prefixes. */
function bitsOf (address: string): string | undefined {
  const a = withoutScope(address)
  if (isIPv4(a)) return a.split('.').map(o => Number(o).toString(2).padStart(8, '0')).join('')
  if (!isIPv6(a)) return undefined
  return expandV6(a).map(h => parseInt(h, 16).toString(2).padStart(16, '0')).join('')
}

/** The eight 16-bit groups of an IPv6 address (a trailing dotted quad is two of them). */
function expandV6 (address: string): string[] {
  let text = address.toLowerCase()
  const quad = /(\d+\.\d+\.\d+\.\d+)$/.exec(text)
  if (quad !== null) {
    const o = quad[1]!.split('.').map(Number)
    text = text.slice(0, -quad[1]!.length) + `${((o[0]! << 8) | o[1]!).toString(16)}:${((o[2]! << 8) | o[3]!).toString(16)}`
  }
  const [head, tail] = text.split('::') as [string, string | undefined]
  const left = head === '' ? [] : head.split(':')
  if (tail === undefined) return left
  const right = tail === '' ? [] : tail.split(':')
  return [...left, ...Array<string>(8 - left.length - right.length).fill('0'), ...right]
}

/** Order two addresses of one family by their bits (RFC 6762 §8.2 compares rdata bytewise). */
export function compareAddresses (a: string, b: string): number {
  const x = bitsOf(a) ?? ''
  const y = bitsOf(b) ?? ''
  return x < y ? -1 : x > y ? 1 : 0
}

/** One spelling per address, so 2001:db8::1 and 2001:DB8:0::1 compare equal. */
export function canonical (address: string): string {
  const a = withoutScope(address)
  return isIPv6(a) ? expandV6(a).map(h => parseInt(h, 16).toString(16)).join(':') : a
}

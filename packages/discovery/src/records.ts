/**
 * DNS-SD records for one advertised node, and the responder's decision of what to
 * answer to a query. Pure functions over dns-packet values, so they test without
 * a network.
 */
import { isIPv6 } from 'node:net'
import type { Question } from 'dns-packet'
import {
  LEGACY_MAX_TTL, MAX_CAP_LENGTH, MAX_CAPS, MAX_ID_LENGTH, MAX_LABEL_BYTES, OTHER_TTL, SERVICE_TYPE, SERVICES_META
} from './constants.js'

/** What a node advertises. */
/**
 * A resource record as dns-packet encodes and decodes it. dns-packet's own Answer
 * union has no `ttl` on OPT records, which makes it awkward for generic handling.
 */
export interface DnsRecord {
  name: string
  type: string
  ttl?: number
  class?: string
  flush?: boolean
  data?: any
}

export interface ServiceInfo {
  /** Node name: the DNS-SD instance label and the SRV target `<name>.local`. */
  name: string
  /** Node id (TXT `id=`). */
  id: string
  /** TCP port of the EvalServer (SRV). */
  port: number
  /** Protocol version (TXT `proto=`). */
  version: number
  /** Capabilities (TXT `caps=`, comma separated). */
  caps: string[]
}

export interface OwnRecords {
  instance: string
  host: string
  ptr: DnsRecord
  srv: DnsRecord
  txt: DnsRecord
  /** The host's address records: A for each IPv4 address, AAAA for each IPv6 one (RFC 6762 §6.2). */
  addresses: DnsRecord[]
  meta: DnsRecord
}

export const instanceName = (name: string): string => `${name}.${SERVICE_TYPE}`
export const hostName = (name: string): string => `${name}.local`

/** The instance label of `<label>._evalmesh._tcp.local`, or undefined for other names. */
export function instanceLabel (fqdn: string): string | undefined {
  const suffix = '.' + SERVICE_TYPE
  if (!fqdn.toLowerCase().endsWith(suffix)) return undefined
  const label = fqdn.slice(0, -suffix.length)
  if (label.length === 0 || Buffer.byteLength(label) > MAX_LABEL_BYTES) return undefined
  return label
}

export function encodeTxt (info: ServiceInfo): Buffer[] {
  const out = [`id=${info.id}`, `proto=${info.version}`]
  if (info.caps.length > 0) out.push(`caps=${info.caps.join(',')}`)
  return out.map(s => Buffer.from(s, 'utf8'))
}

/** Why `info` cannot be advertised, or undefined when it can. */
export function badServiceInfo (info: ServiceInfo): string | undefined {
  if (typeof info.id !== 'string' || info.id.length === 0 || info.id.length > MAX_ID_LENGTH) {
    return `id must be a non-empty string of at most ${MAX_ID_LENGTH} characters`
  }
  if (!Number.isInteger(info.port) || info.port < 1 || info.port > 65535) return `port ${info.port} is not an integer from 1 to 65535`
  if (!Number.isInteger(info.version) || info.version < 0) return `version ${info.version} is not a non-negative integer`
  if (!Array.isArray(info.caps) || info.caps.length > MAX_CAPS) return `caps must be an array of at most ${MAX_CAPS} strings`
  for (const c of info.caps) {
    if (typeof c !== 'string' || c.length === 0 || c.length > MAX_CAP_LENGTH || c.includes(',')) {
      return `capability ${JSON.stringify(c)} must be a non-empty string of at most ${MAX_CAP_LENGTH} characters without commas`
    }
  }
  // Each TXT string is length-prefixed by one byte (RFC 6763 §6.1).
  for (const b of encodeTxt(info)) if (b.length > 255) return `TXT entry '${b.toString().slice(0, 20)}...' exceeds 255 bytes`
  return undefined
}

/** Parsed TXT of a peer, or undefined when it lacks a usable id. */
export function decodeTxt (data: unknown): { id: string, version: number, caps: string[] } | undefined {
  const items = Array.isArray(data) ? data : [data]
  const kv = new Map<string, string>()
  for (const item of items) {
    const s = Buffer.isBuffer(item) ? item.toString('utf8') : typeof item === 'string' ? item : undefined
    if (s === undefined) continue
    const eq = s.indexOf('=')
    const key = (eq < 0 ? s : s.slice(0, eq)).toLowerCase()
    // RFC 6763 §6.4: the first occurrence of a key wins.
    if (!kv.has(key)) kv.set(key, eq < 0 ? '' : s.slice(eq + 1))
  }
  const id = kv.get('id')
  if (id === undefined || id.length === 0 || id.length > MAX_ID_LENGTH) return undefined
  const v = Number(kv.get('proto') ?? '0')
  const version = Number.isInteger(v) && v >= 0 ? v : 0
  const caps = (kv.get('caps') ?? '').split(',').filter(c => c.length > 0 && c.length <= MAX_CAP_LENGTH).slice(0, MAX_CAPS)
  return { id, version, caps }
}

/**
 * The records of a node at `addresses` (its LAN addresses, IPv4 and/or IPv6). `ttl`
 * applies to SRV, A and AAAA; PTR and TXT use 75 min.
 */
export function ownRecords (info: ServiceInfo, addresses: readonly string[], ttl: number, goodbye = false): OwnRecords {
  const instance = instanceName(info.name)
  const host = hostName(info.name)
  const t = (n: number): number => goodbye ? 0 : n
  return {
    instance,
    host,
    // Shared: many instances answer for the type, so no cache-flush bit (RFC 6762 §10.2).
    ptr: { name: SERVICE_TYPE, type: 'PTR', ttl: t(OTHER_TTL), data: instance },
    srv: { name: instance, type: 'SRV', ttl: t(ttl), flush: true, data: { priority: 0, weight: 0, port: info.port, target: host } },
    txt: { name: instance, type: 'TXT', ttl: t(OTHER_TTL), flush: true, data: encodeTxt(info) },
    addresses: addresses.map(address => ({ name: host, type: isIPv6(address) ? 'AAAA' : 'A', ttl: t(ttl), flush: true, data: address })),
    meta: { name: SERVICES_META, type: 'PTR', ttl: t(OTHER_TTL), data: SERVICE_TYPE }
  }
}

export function allRecords (r: OwnRecords): DnsRecord[] {
  return [r.ptr, r.srv, r.txt, ...r.addresses, r.meta]
}

/**
 * The question's class, read through multicast-dns's QU quirk: a question with the
 * unicast-response bit decodes as class 'UNKNOWN_32769' (IN) or 'UNKNOWN_33023' (ANY).
 */
export function questionClassOk (q: Question): boolean {
  const c = q.class as string | undefined
  if (c === undefined || c === 'IN' || c === 'ANY') return true
  const m = /^UNKNOWN_(\d+)$/.exec(c)
  if (m === null) return false
  const n = Number(m[1]) & 0x7fff
  return n === 1 || n === 255
}

function lower (s: unknown): string {
  return typeof s === 'string' ? s.toLowerCase() : ''
}

/** Whether two records carry the same name, type and data (TTL aside). */
export function sameRecord (a: DnsRecord, b: DnsRecord): boolean {
  if (a.type !== b.type || lower(a.name) !== lower(b.name)) return false
  const da = (a as { data?: unknown }).data
  const db = (b as { data?: unknown }).data
  switch (a.type) {
    case 'PTR': case 'A': case 'AAAA':
      return lower(da) === lower(db)
    case 'SRV': {
      const x = da as { port?: number, target?: string } | undefined
      const y = db as { port?: number, target?: string } | undefined
      return x?.port === y?.port && lower(x?.target) === lower(y?.target)
    }
    case 'TXT': {
      const flat = (d: unknown): string => (Array.isArray(d) ? d : [d]).map(v => Buffer.isBuffer(v) ? v.toString('hex') : Buffer.from(String(v)).toString('hex')).join('.')
      return flat(da) === flat(db)
    }
    default:
      return false
  }
}

/**
 * Known-answer suppression (RFC 6762 §7.1): the querier already holds this record
 * with at least half its TTL left.
 */
function knownToQuerier (rec: DnsRecord, known: DnsRecord[]): boolean {
  return known.some(k => sameRecord(k, rec) && (k.ttl ?? 0) >= (rec.ttl ?? 0) / 2)
}

export interface Reply {
  answers: DnsRecord[]
  additionals: DnsRecord[]
  /** True when some answer is a shared record, so the reply should wait 20-120 ms. */
  shared: boolean
}

/**
 * What to answer to `questions` (with the querier's `known` answers), or undefined
 * when nothing is ours or everything is already known. For legacy unicast queriers,
 * TTLs are capped and cache-flush bits cleared (RFC 6762 §6.7).
 */
export function answerQuery (questions: Question[], known: DnsRecord[], own: OwnRecords, opts: { legacy?: boolean } = {}): Reply | undefined {
  const answers: DnsRecord[] = []
  const additionals: DnsRecord[] = []
  let shared = false
  const add = (list: DnsRecord[], rec: DnsRecord): void => {
    if (answers.includes(rec) || list.includes(rec)) return
    if (knownToQuerier(rec, known)) return
    list.push(rec)
  }
  const hasType = (type: string): DnsRecord[] => own.addresses.filter(r => r.type === type)
  // A host with addresses of one family only says it has no other (RFC 6762 §6.1), so a
  // querier asking for AAAA (or A) does not wait for an answer that never comes.
  const types = [...new Set(own.addresses.map(r => r.type))]
  const nsec: DnsRecord | undefined = types.length === 1
    ? { name: own.host, type: 'NSEC', ttl: own.srv.ttl, flush: true, data: { nextDomain: own.host, rrtypes: types } }
    : undefined
  const addAddresses = (list: DnsRecord[]): void => { for (const r of own.addresses) add(list, r) }

  for (const q of questions) {
    if (!questionClassOk(q)) continue
    const name = lower(q.name)
    const type = q.type as string
    const any = type === 'ANY'
    if (name === SERVICE_TYPE && (type === 'PTR' || any)) {
      add(answers, own.ptr)
      shared = true
    } else if (name === SERVICES_META && (type === 'PTR' || any)) {
      add(answers, own.meta)
      shared = true
    } else if (name === own.instance.toLowerCase()) {
      if (type === 'SRV' || any) add(answers, own.srv)
      if (type === 'TXT' || any) add(answers, own.txt)
    } else if (name === own.host.toLowerCase()) {
      for (const family of ['A', 'AAAA']) {
        if (type !== family && !any) continue
        const recs = hasType(family)
        for (const r of recs) add(answers, r)
        if (recs.length === 0 && nsec !== undefined && !answers.includes(nsec)) answers.push(nsec)
      }
    }
  }
  if (answers.length === 0) return undefined

  // RFC 6763 §12: send what the querier will ask for next.
  if (answers.includes(own.ptr)) { add(additionals, own.srv); add(additionals, own.txt); addAddresses(additionals) }
  if (answers.includes(own.srv)) addAddresses(additionals)
  const sentAddress = own.addresses.some(r => answers.includes(r) || additionals.includes(r))
  if (sentAddress && nsec !== undefined && !answers.includes(nsec)) additionals.push(nsec)

  if (opts.legacy === true) {
    const cap = (r: DnsRecord): DnsRecord => ({ ...r, ttl: Math.min(r.ttl ?? 0, LEGACY_MAX_TTL), flush: false }) as DnsRecord
    return { answers: answers.map(cap), additionals: additionals.map(cap), shared }
  }
  return { answers, additionals, shared }
}

import { readFileSync } from 'node:fs'
import { isIP } from 'node:net'
import { MAX_CAPS, MAX_ID_LENGTH, MAX_LABEL_BYTES } from './constants.js'

/** The capability (TXT `caps=...,tls`, a peers-file line's last word) of a node that serves TLS. */
export const TLS_CAP = 'tls'

/** One statically configured peer (a line of a seeds file). */
export interface SeedPeer {
  name: string
  address: string
  port: number
  /** Node id, when known in advance; '' until the peer proves one. */
  id?: string
  version?: number
  caps?: string[]
}

/** A seeds file that cannot be used; `line` is 1-based, 0 for the file as a whole. */
export class SeedFileError extends Error {
  readonly file: string
  readonly line: number

  constructor (file: string, line: number, message: string) {
    super(line > 0 ? `${file}:${line}: ${message}` : `${file}: ${message}`)
    this.name = 'SeedFileError'
    this.file = file
    this.line = line
  }
}

const NAME_RE = /^[A-Za-z0-9][A-Za-z0-9_-]*$/
const HOST_RE = /^[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?)*$/

/** Why `name` is not a usable node name, or undefined when it is. */
export function badNodeName (name: unknown): string | undefined {
  if (typeof name !== 'string' || name.length === 0) return 'name must be a non-empty string'
  if (Buffer.byteLength(name) > MAX_LABEL_BYTES) return `name '${name}' is longer than ${MAX_LABEL_BYTES} bytes`
  // The name is also the DNS label of the SRV target (<name>.local), so keep it a plain label.
  if (!NAME_RE.test(name)) return `name '${name}' may hold only letters, digits, '-' and '_', and must start with a letter or digit`
  return undefined
}

function checkPeer (raw: SeedPeer, where: (msg: string) => Error): SeedPeer {
  const bad = badNodeName(raw.name)
  if (bad !== undefined) throw where(bad)
  if (typeof raw.address !== 'string' || (isIP(raw.address) === 0 && !HOST_RE.test(raw.address))) {
    throw where(`address ${JSON.stringify(raw.address)} is neither an IP address nor a host name`)
  }
  if (!Number.isInteger(raw.port) || raw.port < 1 || raw.port > 65535) {
    throw where(`port ${JSON.stringify(raw.port)} is not an integer from 1 to 65535`)
  }
  const id = raw.id ?? ''
  if (typeof id !== 'string' || id.length > MAX_ID_LENGTH || /\s/.test(id)) {
    throw where(`id ${JSON.stringify(raw.id)} must be a string of at most ${MAX_ID_LENGTH} characters without spaces`)
  }
  const version = raw.version ?? 0
  if (!Number.isInteger(version) || version < 0) throw where(`version ${JSON.stringify(raw.version)} is not a non-negative integer`)
  const caps = raw.caps ?? []
  if (!Array.isArray(caps) || caps.length > MAX_CAPS || !caps.every(c => typeof c === 'string' && c.length > 0 && !c.includes(','))) {
    throw where(`caps must be an array of at most ${MAX_CAPS} non-empty strings without commas`)
  }
  return { name: raw.name, address: raw.address, port: raw.port, id, version, caps: [...caps] }
}

/** `host:port`, `[v6]:port` or a bare IPv6 address is not allowed (ambiguous). */
function splitHostPort (text: string): { address: string, port: number } | undefined {
  const v6 = /^\[([^\]]+)\]:(\d+)$/.exec(text)
  if (v6 !== null) return { address: v6[1] as string, port: Number(v6[2]) }
  const m = /^([^:\s]+):(\d+)$/.exec(text)
  if (m === null) return undefined
  return { address: m[1] as string, port: Number(m[2]) }
}

/**
 * Parse the text of a seeds file. Two forms, told apart by the first non-blank
 * character:
 *
 * ```
 * # name  host:port          [id]
 * alpha   198.18.0.1:6680    n-alpha
 * beta    beta.example:6680
 * gamma   [fd00::3]:6680
 * ```
 *
 * or a JSON array `[{"name":"alpha","address":"198.18.0.1","port":6680,"id":"n-alpha"}]`
 * (`version` and `caps` may be given too). `file` only names the source in errors.
 */
export function parseSeeds (text: string, file = '<seeds>'): SeedPeer[] {
  const out: SeedPeer[] = []
  const names = new Set<string>()
  const add = (peer: SeedPeer, line: number): void => {
    if (names.has(peer.name)) throw new SeedFileError(file, line, `peer '${peer.name}' is listed twice`)
    names.add(peer.name)
    out.push(peer)
  }

  if (text.trimStart().startsWith('[')) {
    let data: unknown
    try {
      data = JSON.parse(text)
    } catch (err) {
      throw new SeedFileError(file, 0, `not valid JSON: ${(err as Error).message}`)
    }
    if (!Array.isArray(data)) throw new SeedFileError(file, 0, 'JSON form must be an array of peers')
    data.forEach((item: unknown, i: number) => {
      const where = (msg: string): Error => new SeedFileError(file, 0, `entry ${i}: ${msg}`)
      if (typeof item !== 'object' || item === null || Array.isArray(item)) throw where('must be an object {name, address, port, id?}')
      const known = new Set(['name', 'address', 'port', 'id', 'version', 'caps', 'tls'])
      const unknown = Object.keys(item).filter(k => !known.has(k))
      if (unknown.length > 0) throw where(`unknown field(s) ${unknown.join(', ')}`)
      const { tls, ...rest } = item as SeedPeer & { tls?: unknown }
      if (tls !== undefined && typeof tls !== 'boolean') throw where('tls must be true or false')
      const peer = checkPeer(tls === true ? { ...rest, caps: [...(rest.caps ?? []).filter(c => c !== TLS_CAP), TLS_CAP] } : rest, where)
      if (names.has(peer.name)) throw where(`peer '${peer.name}' is listed twice`)
      add(peer, 0)
    })
    return out
  }

  const lines = text.split(/\r?\n/)
  lines.forEach((raw, i) => {
    const line = i + 1
    const hash = raw.indexOf('#')
    const fields = (hash >= 0 ? raw.slice(0, hash) : raw).trim().split(/\s+/).filter(f => f.length > 0)
    if (fields.length === 0) return
    const where = (msg: string): Error => new SeedFileError(file, line, msg)
    // The word `tls` after the address says the peer serves TLS (PROTOCOL.md §2.5).
    const tls = fields.length > 2 && fields[fields.length - 1] === TLS_CAP
    if (tls) fields.pop()
    if (fields.length < 2 || fields.length > 3) {
      throw where(`expected 'name host:port [id]', got ${fields.length + (tls ? 1 : 0)} field(s)`)
    }
    const hp = splitHostPort(fields[1] as string)
    if (hp === undefined) throw where(`'${fields[1]}' is not host:port (write IPv6 as [addr]:port)`)
    const peer = checkPeer({ name: fields[0] as string, address: hp.address, port: hp.port, id: fields[2] ?? '', ...(tls ? { caps: [TLS_CAP] } : {}) }, where)
    add(peer, line)
  })
  return out
}

/** Read and parse a seeds file; errors name the file and line. */
export function readSeedsFile (file: string): SeedPeer[] {
  let text: string
  try {
    text = readFileSync(file, 'utf8')
  } catch (err) {
    throw new SeedFileError(file, 0, `cannot read: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`)
  }
  return parseSeeds(text, file)
}

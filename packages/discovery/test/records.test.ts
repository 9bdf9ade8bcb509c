import { test } from 'node:test'
import assert from 'node:assert/strict'
import dnsPacket from 'dns-packet'
import { answerQuery, decodeTxt, ownRecords, badServiceInfo, type DnsRecord } from '../src/records.js'

const info = { name: 'alpha', id: 'n-alpha', port: 6680, version: 1, caps: ['eval', 'megatest'] }
const own = ownRecords(info, ['198.18.0.1'], 120)

/** Through the real codec, as a peer would see it. */
function wire (packet: Record<string, unknown>): Record<string, any> {
  return dnsPacket.decode(dnsPacket.encode(packet as never)) as unknown as Record<string, any>
}

test('the advertised records survive the codec with the TXT keys and SRV target the notes prescribe', () => {
  const p = wire({ type: 'response', answers: [own.ptr, own.srv, own.txt, ...own.addresses, own.meta] })
  const byType = (t: string, name?: string): any => p.answers.find((a: any) => a.type === t && (name === undefined || a.name === name))
  assert.equal(byType('PTR', '_evalmesh._tcp.local').data, 'alpha._evalmesh._tcp.local')
  assert.equal(byType('PTR', '_evalmesh._tcp.local').flush, false, 'shared record: no cache-flush')
  assert.deepEqual(byType('SRV').data, { priority: 0, weight: 0, port: 6680, target: 'alpha.local' })
  assert.equal(byType('SRV').ttl, 120)
  assert.equal(byType('SRV').flush, true)
  assert.deepEqual(byType('TXT').data.map((b: Buffer) => b.toString()), ['id=n-alpha', 'proto=1', 'caps=eval,megatest'])
  assert.equal(byType('A').data, '198.18.0.1')
  assert.equal(byType('PTR', '_services._dns-sd._udp.local').data, '_evalmesh._tcp.local')
  assert.deepEqual(decodeTxt(byType('TXT').data), { id: 'n-alpha', version: 1, caps: ['eval', 'megatest'] })
})

test('goodbye records carry TTL 0 explicitly', () => {
  const bye = ownRecords(info, ['198.18.0.1'], 120, true)
  const p = wire({ type: 'response', answers: [bye.ptr, bye.srv, bye.txt, ...bye.addresses] })
  assert.deepEqual(p.answers.map((a: any) => a.ttl), [0, 0, 0, 0])
})

test('a PTR query gets the PTR with SRV, TXT and A as additionals', () => {
  const q = wire({ type: 'query', questions: [{ name: '_evalmesh._tcp.local', type: 'PTR' }] })
  const r = answerQuery(q.questions, q.answers, own)
  assert.ok(r !== undefined)
  assert.deepEqual(r.answers.map(a => a.type), ['PTR'])
  assert.deepEqual(r.additionals.map(a => a.type), ['SRV', 'TXT', 'A', 'NSEC'])
  assert.equal(r.shared, true)
})

test('known-answer suppression: a PTR the querier holds with >= half its TTL is not sent again', () => {
  const fresh = wire({ type: 'query', questions: [{ name: '_evalmesh._tcp.local', type: 'PTR' }], answers: [{ ...own.ptr, ttl: 2250 }] })
  assert.equal(answerQuery(fresh.questions, fresh.answers, own), undefined)
  const stale = wire({ type: 'query', questions: [{ name: '_evalmesh._tcp.local', type: 'PTR' }], answers: [{ ...own.ptr, ttl: 2249 }] })
  assert.deepEqual(answerQuery(stale.questions, stale.answers, own)?.answers.map(a => a.type), ['PTR'])
  const other = wire({ type: 'query', questions: [{ name: '_evalmesh._tcp.local', type: 'PTR' }], answers: [{ ...own.ptr, data: 'beta._evalmesh._tcp.local' }] })
  assert.deepEqual(answerQuery(other.questions, other.answers, own)?.answers.map(a => a.type), ['PTR'], 'a different instance does not suppress ours')
})

test('QU questions (decoded as class UNKNOWN_32769) are answered like IN', () => {
  const raw = Buffer.from(dnsPacket.encode({ type: 'query', questions: [{ name: 'alpha._evalmesh._tcp.local', type: 'SRV' }] }))
  // Set the unicast-response bit (top bit of QCLASS) by hand: dns-packet cannot encode it.
  raw.writeUInt16BE(0x8001, raw.length - 2)
  const q = dnsPacket.decode(raw) as unknown as Record<string, any>
  assert.equal(q.questions[0].class, 'UNKNOWN_32769')
  const r = answerQuery(q.questions, [], own)
  assert.deepEqual(r?.answers.map(a => a.type), ['SRV'])
  assert.deepEqual(r?.additionals.map(a => a.type), ['A', 'NSEC'])
  assert.equal(r?.shared, false, 'unique records need no delay')
})

test('ANY, AAAA and foreign names', () => {
  const any = answerQuery([{ name: 'ALPHA._evalmesh._tcp.local', type: 'ANY' as never }], [], own)
  assert.deepEqual(any?.answers.map(a => a.type), ['SRV', 'TXT'], 'names compare case-insensitively')
  const aaaa = answerQuery([{ name: 'alpha.local', type: 'AAAA' }], [], own)
  assert.deepEqual(aaaa?.answers.map(a => [a.type, a.data]), [['NSEC', { nextDomain: 'alpha.local', rrtypes: ['A'] }]])
  assert.equal(answerQuery([{ name: 'beta._evalmesh._tcp.local', type: 'SRV' }, { name: '_http._tcp.local', type: 'PTR' }], [], own), undefined)
  assert.equal(answerQuery([{ name: 'alpha.local', type: 'A', class: 'CH' } as never], [], own), undefined)
})

test('an IPv6-only node answers AAAA, and says it has no A', () => {
  const v6 = ownRecords(info, ['2001:db8::1'], 120)
  const p = wire({ type: 'response', answers: v6.addresses })
  assert.deepEqual(p.answers.map((a: any) => [a.type, a.data, a.ttl, a.flush]), [['AAAA', '2001:db8::1', 120, true]])
  const ptr = answerQuery([{ name: '_evalmesh._tcp.local', type: 'PTR' }], [], v6)
  assert.deepEqual(ptr?.additionals.map(a => a.type), ['SRV', 'TXT', 'AAAA', 'NSEC'])
  assert.deepEqual(answerQuery([{ name: 'alpha.local', type: 'AAAA' }], [], v6)?.answers.map(a => [a.type, a.data]), [['AAAA', '2001:db8::1']])
  assert.deepEqual(answerQuery([{ name: 'alpha.local', type: 'A' }], [], v6)?.answers.map(a => [a.type, a.data]),
    [['NSEC', { nextDomain: 'alpha.local', rrtypes: ['AAAA'] }]])
})

test('a dual-stack node answers A and AAAA together, with no NSEC', () => {
  const both = ownRecords(info, ['198.18.0.1', '2001:db8::1'], 120)
  const srv = answerQuery([{ name: 'alpha._evalmesh._tcp.local', type: 'SRV' }], [], both)
  assert.deepEqual(srv?.additionals.map(a => [a.type, a.data]), [['A', '198.18.0.1'], ['AAAA', '2001:db8::1']])
  assert.deepEqual(answerQuery([{ name: 'alpha.local', type: 'AAAA' }], [], both)?.answers.map(a => a.type), ['AAAA'])
  // Known-answer suppression works per record: holding the A does not suppress the AAAA.
  const knowsA = answerQuery([{ name: 'alpha.local', type: 'ANY' as never }], [{ ...both.addresses[0]!, ttl: 120 }], both)
  assert.deepEqual(knowsA?.answers.map(a => a.type), ['AAAA'])
})

test('legacy unicast replies cap TTLs at 10 s and clear cache-flush', () => {
  const r = answerQuery([{ name: '_evalmesh._tcp.local', type: 'PTR' }], [], own, { legacy: true })
  assert.ok(r !== undefined)
  for (const rec of [...r.answers, ...r.additionals] as DnsRecord[]) {
    assert.ok((rec.ttl ?? 0) <= 10, `${rec.type} ttl ${rec.ttl}`)
    assert.equal(rec.flush, false)
  }
  assert.equal(own.srv.ttl, 120, 'the node\'s own records are not changed')
})

test('TXT decoding tolerates odd peers and rejects records without an id', () => {
  assert.equal(decodeTxt([Buffer.from('proto=1')]), undefined)
  assert.equal(decodeTxt([Buffer.from('id=')]), undefined)
  assert.deepEqual(decodeTxt([Buffer.from('ID=x'), Buffer.from('id=y'), Buffer.from('proto=zz'), Buffer.from('flag')]), { id: 'x', version: 0, caps: [] })
  assert.deepEqual(decodeTxt('id=x'), { id: 'x', version: 0, caps: [] })
  assert.equal(decodeTxt(undefined), undefined)
})

test('what cannot be advertised is explained', () => {
  assert.match(badServiceInfo({ ...info, port: 0 }) ?? '', /port 0/)
  assert.match(badServiceInfo({ ...info, id: '' }) ?? '', /id must be/)
  assert.match(badServiceInfo({ ...info, caps: ['a,b'] }) ?? '', /without commas/)
  assert.match(badServiceInfo({ ...info, id: 'x'.repeat(128), caps: Array(40).fill('c'.repeat(60)) }) ?? '', /exceeds 255 bytes/)
  assert.equal(badServiceInfo(info), undefined)
})

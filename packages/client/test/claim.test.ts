import { test } from 'node:test'
import assert from 'node:assert/strict'
import { EvalMeshError, RemoteEvalError, wireCodeOf, type EvalOutcome } from '@evalmesh/protocol'
import type { Offer, QueryEvent } from '../src/broadcast.js'
import { claimOne, type ClaimBody, type Connections, type Offers } from '../src/claim.js'

const TXN = '0123456789abcdef.aa:1'
const body: ClaimBody = { kind: 'eval', txn: TXN, form: '1', wait: true }

function offer (name: string, running: number): Offer {
  return {
    txn: TXN, token: `token-${name}`, address: '127.0.0.1', port: name.charCodeAt(0),
    node: { id: `id-${name}`, name, key: new Uint8Array(32) } as Offer['node'],
    load: { running, queued: 0, concurrency: 4 }, origin: { address: '127.0.0.1', port: 1 }
  }
}

/** A broadcaster whose every query is answered at once by `offers`; it counts what happens. */
function fakeOffers (offers: Offer[]): Offers & { queries: number, released: string[] } {
  const fake = {
    queries: 0,
    released: [] as string[],
    where: 'among 1 known node(s)',
    query: async (_txn: string, _mode: 'one' | 'all', deadline: number, onEvent: (e: QueryEvent) => void, onDone: () => void) => {
      fake.queries++
      setImmediate(() => { for (const o of offers) onEvent({ kind: 'offer', offer: o }) })
      const end = setTimeout(onDone, Math.max(0, deadline - Date.now()))
      return { stop: () => { clearTimeout(end); onDone() }, quiet: () => {} }
    },
    release: async (o: Offer) => { fake.released.push(o.node.name) },
    releaseAll: async () => {}
  }
  return fake
}

type Answer = (body: Record<string, unknown>) => Promise<unknown>

/** Connections to fake nodes by name: each answers as `answers[name]` says, or cannot be reached. */
function fakeNodes (answers: Record<string, Answer | 'unreachable'>): Connections & { sent: Array<{ node: string, txn: unknown, claim: unknown }> } {
  const sent: Array<{ node: string, txn: unknown, claim: unknown }> = []
  return {
    sent,
    connection: async (endpoint) => {
      const answer = answers[endpoint.label]
      if (answer === undefined || answer === 'unreachable') throw new EvalMeshError('CONNECT_FAILED', `cannot connect to ${endpoint.label}`)
      return {
        request: (async (b: Record<string, unknown>) => {
          sent.push({ node: endpoint.label, txn: b.txn, claim: b.claim })
          return await answer(b)
        }) as never
      }
    }
  }
}

const ok = (node: string): Answer => async (b) => ({ txn: String(b.txn), node, state: 'done', value: node, output: '', outputTruncated: false, seconds: 0 } satisfies EvalOutcome)
const fail = (code: 'REFUSED' | 'BUSY' | 'EVAL_ERROR'): Answer => async () => { throw new RemoteEvalError({ code, wire: wireCodeOf(code), name: 'EvalMeshError', message: code }) }

test('the least loaded offer is claimed with its token', async () => {
  const nodes = fakeNodes({ a: ok('a'), b: ok('b') })
  const r = await claimOne(nodes, fakeOffers([offer('a', 3), offer('b', 0)]), body, { deadline: Date.now() + 2000 })
  assert.equal(r.offer.node.name, 'b')
  assert.equal(r.host, `127.0.0.1:${'b'.charCodeAt(0)}`)
  assert.deepEqual(nodes.sent, [{ node: 'b', txn: TXN, claim: 'token-b' }])
})

test('a claim that did not run (refused, busy, unreachable) goes to another offer with the same txn', async () => {
  for (const first of [fail('REFUSED'), fail('BUSY'), 'unreachable' as const]) {
    const nodes = fakeNodes({ a: first, b: ok('b') })
    const offers = fakeOffers([offer('a', 0), offer('b', 1)])
    const r = await claimOne(nodes, offers, body, { deadline: Date.now() + 2000 })
    assert.equal(r.offer.node.name, 'b')
    assert.ok(nodes.sent.every(s => s.txn === TXN))
    assert.ok(nodes.sent.filter(s => s.node === 'b').length === 1)
    if (first === 'unreachable') assert.ok(offers.released.includes('a'), 'the unreachable offer is released')
  }
})

test('once a node admitted the claim, its error or a lost connection is the answer: never retried elsewhere', async () => {
  for (const first of [fail('EVAL_ERROR'), async () => { throw new EvalMeshError('LOST', 'lost') }]) {
    const nodes = fakeNodes({ a: first, b: ok('b') })
    await assert.rejects(claimOne(nodes, fakeOffers([offer('a', 0), offer('b', 1)]), body, { deadline: Date.now() + 2000 }))
    assert.deepEqual(nodes.sent.map(s => s.node), ['a'])
  }
})

test('no offer by the deadline is NO_WILLING_SERVER; rounds ask again until then', async () => {
  const offers = fakeOffers([])
  const started = Date.now()
  await assert.rejects(claimOne(fakeNodes({}), offers, body, { deadline: Date.now() + 700, roundMs: 200 }), (err: EvalMeshError) => err.code === 'NO_WILLING_SERVER')
  assert.ok(Date.now() - started >= 650)
  assert.ok(offers.queries >= 3, `${offers.queries} rounds`)
})

test('NO_WILLING_SERVER says the wait the caller gave, counted from when it began, not from the call', async () => {
  const startedAt = Date.now() - 5 // the caller set its deadline a moment before calling
  await assert.rejects(claimOne(fakeNodes({}), fakeOffers([]), body, { deadline: startedAt + 300, startedAt }),
    (err: EvalMeshError) => err.code === 'NO_WILLING_SERVER' && /within 300 ms/.test(err.message))
})

test('an aborted signal stops the rounds', async () => {
  const ac = new AbortController()
  setTimeout(() => ac.abort(), 250)
  await assert.rejects(claimOne(fakeNodes({}), fakeOffers([]), body, { deadline: Date.now() + 5000, roundMs: 100, signal: ac.signal }), (err: EvalMeshError) => err.code === 'ABORTED')
})

import { EvalMeshError } from './errors.js'

/**
 * A transaction id names one request across the whole mesh: the client's id and a
 * sequence number, written `<client>:<seq>` (PROTOCOL.md §3.1). The client id is the
 * client node's id, optionally followed by `.` and an instance tag, so that several
 * processes sharing one node key never collide.
 */
export interface TxnId {
  client: string
  seq: number
}

const TXN_PATTERN = /^([0-9a-z]{4,64}(?:\.[0-9a-z]{1,16})?):([0-9]{1,15})$/

export function formatTxn (txn: TxnId): string {
  return `${txn.client}:${txn.seq}`
}

export function parseTxn (text: string): TxnId {
  const m = TXN_PATTERN.exec(text)
  if (m === null) throw new EvalMeshError('BAD_MESSAGE', `not a transaction id: ${JSON.stringify(text).slice(0, 80)} (expected <client>:<seq>)`)
  return { client: m[1]!, seq: Number(m[2]) }
}

export function isTxnString (text: unknown): text is string {
  return typeof text === 'string' && TXN_PATTERN.test(text)
}

/** The node id part of a client id (`<nodeId>.<instance>` or `<nodeId>`). */
export function nodeIdOfClient (client: string): string {
  const dot = client.indexOf('.')
  return dot < 0 ? client : client.slice(0, dot)
}

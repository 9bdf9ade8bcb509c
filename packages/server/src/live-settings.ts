import type { NodeQuotas } from '@evalmesh/protocol'

/**
 * What a running node can change without a restart (the control port's `limits`, `quota`,
 * `drain`; `evalmesh fleet reload` uses them), and the error for what it cannot.
 */

/** Limits a running node can change (the control port's `limits`, `fleet reload`). */
export interface LiveLimits { timeoutMs?: number, memoryMb?: number, concurrency?: number, queueLength?: number, purgeSeconds?: number }
/** Quotas a running node can change: the scheduler's. The sandbox's are fixed when it starts. */
export const LIVE_QUOTAS = ['runningPerClient', 'queuedPerClient', 'maxQueueWaitMs'] as const
export type LiveQuotas = Partial<Pick<NodeQuotas, typeof LIVE_QUOTAS[number]>>

/** Where a draining node sends new work: its address after the restart, other nodes, when. */
export interface DrainOptions {
  /** `host:port` to send new work to instead (the node's own after a restart, or another's). */
  retryAt?: string
  /** Other nodes that take the same work, `name host:port`. */
  elsewhere?: string[]
  /** When the node expects to serve again (ms). */
  retryAfterMs?: number
  /** Why: "restarting on port 6691", "stopping". */
  reason?: string
}

/** A change a running node cannot make: it needs a restart (the fleet then drains and restarts). */
export class NeedsRestartError extends Error {}

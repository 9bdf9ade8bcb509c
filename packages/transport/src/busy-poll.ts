/**
 * Busy-polling between a written frame and the answer it expects, for the whole process.
 *
 * Why: a process waiting in epoll_wait lets its CPU go idle, and waking an idle CPU for
 * the frame that arrives costs far more than handling the frame. On a virtual machine
 * (haltpoll with no guest polling, as on the machines here) each wake-up is a halted vCPU
 * rescheduled by the host: about 60 of the 120 µs of a `ping` round trip (BENCHMARKS.md,
 * "Busy-polling"). Erlang's schedulers spin before they sleep for the same reason, and that
 * is much of why erpc answers sooner. So after a frame is written, the event loop keeps
 * turning (a `setImmediate` chain, so libuv polls its sockets with a zero timeout) until a
 * frame arrives or the window ends. Nothing else changes: timers and I/O are served as
 * always, and a spin never holds the loop for longer than one empty turn.
 *
 * It adapts as the kernel's haltpoll governor does, so that spinning only happens where it
 * pays: a window that ended with nothing read halves the next one, and after four such
 * windows there is none; a frame read within `maxMicros` of the last write sets the window
 * back to `maxMicros`. A process whose peers answer slowly, or not at all, or a node whose
 * clients are people at a prompt, stops spinning after a few writes; a node already busy
 * finds its next frame waiting and spins not at all. A write that comes more than a window
 * after the last frame read does not spin either: the peer it answers has stopped polling,
 * and spinning would hold the CPU that peer is woken on (see `wroteFrame`). The cost is
 * bounded: at most `maxMicros` of CPU per frame written, and none when nothing is written.
 *
 * The setting is per thread (this module's state), and the last call of `setBusyPoll`
 * wins: the node's `--busy-poll`, the client's `EVALMESH_BUSY_POLL_US`.
 */

/** The longest window after a write when none is set: covers a node's answer to a batch form. */
export const DEFAULT_BUSY_POLL_MICROS = 1000

/** The longest window `setBusyPoll` accepts: beyond this, spinning costs more than it saves. */
export const MAX_BUSY_POLL_MICROS = 100_000

export interface BusyPollStats {
  /** The longest window after a write, in µs; 0 when busy-polling is off. */
  maxMicros: number
  /** The window the next write opens, in µs (0 after windows that read nothing). */
  windowMicros: number
  /** The wall time spent spinning so far, in seconds (the CPU it cost, at most). */
  spunSeconds: number
}

let maxMs = initialMax()
let windowMs = maxMs
let lastWriteAt = -Infinity
let lastReadAt = -Infinity
let readSinceWrite = false
let spinUntil = 0
let spinning = false
let spinStartedAt = 0
let spunMs = 0

function initialMax (): number {
  const env = process.env.EVALMESH_BUSY_POLL_US
  if (env === undefined || env === '') return DEFAULT_BUSY_POLL_MICROS / 1000
  const us = Number(env)
  // A bad value in the environment must not stop a client or node from starting: off.
  return Number.isInteger(us) && us >= 0 && us <= MAX_BUSY_POLL_MICROS ? us / 1000 : 0
}

/** Set the longest window after a write, in µs; 0 turns busy-polling off. */
export function setBusyPoll (micros: number): void {
  if (!Number.isInteger(micros) || micros < 0 || micros > MAX_BUSY_POLL_MICROS) {
    throw new RangeError(`busy-poll window must be a whole number of µs from 0 to ${MAX_BUSY_POLL_MICROS}, not ${micros}`)
  }
  maxMs = micros / 1000
  windowMs = maxMs
}

export function busyPollStats (): BusyPollStats {
  const now = performance.now()
  return {
    maxMicros: Math.round(maxMs * 1000),
    windowMicros: Math.round(windowMs * 1000),
    spunSeconds: (spunMs + (spinning ? now - spinStartedAt : 0)) / 1000
  }
}

/** A frame was written: keep the loop turning until a frame arrives or the window ends. */
export function wroteFrame (): void {
  if (maxMs === 0) return
  const now = performance.now()
  lastWriteAt = now
  readSinceWrite = false
  if (windowMs === 0) return
  // A peer that wrote to us longer ago than a window has stopped polling and sleeps: this
  // write wakes it, and Linux places a task woken by a socket write on the writer's CPU,
  // expecting the writer to sleep. A writer that spun instead would hold that CPU from it.
  if (now - lastReadAt > maxMs) return
  spinUntil = now + windowMs
  if (!spinning) {
    spinning = true
    spinStartedAt = now
    setImmediate(spin)
  }
}

/** A frame arrived: the spin has done its job. */
export function readFrame (): void {
  if (maxMs === 0 || readSinceWrite) return
  readSinceWrite = true
  const now = performance.now()
  lastReadAt = now
  if (now - lastWriteAt <= maxMs) windowMs = maxMs
  spinUntil = 0
}

function spin (): void {
  const now = performance.now()
  if (now < spinUntil) {
    setImmediate(spin)
    return
  }
  spinning = false
  spunMs += now - spinStartedAt
  if (!readSinceWrite) windowMs = windowMs / 2 < maxMs / 8 ? 0 : windowMs / 2
}

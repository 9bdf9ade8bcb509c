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
 * A spin only uses a CPU that nothing else wants. Every 50 µs of spinning it reads the
 * kernel's CPU pressure (`/proc/pressure/cpu`, the time some task waited for a CPU); if a
 * task waited, be it a sandbox process running another client's form or the very peer
 * whose answer we wait for, the spin ends at once and the process sleeps as it would
 * without busy-polling. So a client that sends requests to keep a node spinning costs the
 * node only CPU no one else was waiting for. Where that file is missing (not Linux, or PSI
 * off) the spin relies on the scheduler alone.
 *
 * The setting is per thread (this module's state): `EVALMESH_BUSY_POLL_US` gives any
 * process its starting window, and `setBusyPoll` (the node's `--busy-poll`) changes it.
 */

import { openSync, readSync } from 'node:fs'

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
  /** Spins ended early because another task was waiting for a CPU. */
  yielded: number
}

/** How often a spin looks at the CPU pressure, and how much waiting (in that time) ends it. */
const PRESSURE_EVERY_MS = 0.05
const PRESSURE_STALL_MICROS = 25

/**
 * The kernel's pressure stall information for CPUs: the total µs some task has waited for
 * one (`some ... total=N`). undefined where the file cannot be read.
 */
class CpuPressure {
  #fd: number | undefined
  readonly #buf = Buffer.alloc(160)
  #broken = false

  totalMicros (): number | undefined {
    if (this.#broken) return undefined
    try {
      this.#fd ??= openSync('/proc/pressure/cpu', 'r')
      const n = readSync(this.#fd, this.#buf, 0, this.#buf.length, 0)
      const text = this.#buf.toString('latin1', 0, n)
      const at = text.indexOf('total=')
      const total = at < 0 ? Number.NaN : Number.parseInt(text.slice(at + 6), 10)
      if (Number.isFinite(total)) return total
    } catch { /* not Linux, or PSI off */ }
    this.#broken = true
    return undefined
  }
}
const pressure = new CpuPressure()

let maxMs = initialMax()
let windowMs = maxMs
let lastWriteAt = -Infinity
let lastReadAt = -Infinity
let readSinceWrite = false
let spinUntil = 0
let spinning = false
let spinStartedAt = 0
let checkedAt = 0
let stallSeen: number | undefined
let yielded = 0
let spunMs = 0

function initialMax (): number {
  const env = process.env.EVALMESH_BUSY_POLL_US
  if (env === undefined || env === '') return DEFAULT_BUSY_POLL_MICROS / 1000
  // A bad value in the environment must not stop a client or node from starting: off.
  return (busyPollMicrosFrom(env) ?? 0) / 1000
}

/** A window as written (a flag, the environment): a whole number of µs in range, else undefined. */
export function busyPollMicrosFrom (text: string): number | undefined {
  if (!/^\d{1,6}$/.test(text)) return undefined
  const us = Number(text)
  return us <= MAX_BUSY_POLL_MICROS ? us : undefined
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
    spunSeconds: (spunMs + (spinning ? now - spinStartedAt : 0)) / 1000,
    yielded
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
  // write wakes it, and Linux tends to place a task woken by a socket write on the writer's
  // CPU, expecting the writer to sleep. A writer that spun instead would hold that CPU.
  if (now - lastReadAt > maxMs) return
  spinUntil = now + windowMs
  if (!spinning) {
    spinning = true
    spinStartedAt = now
    checkedAt = now
    stallSeen = undefined
    setImmediate(spin)
  }
}

/** A frame arrived: the spin has done its job. */
export function readFrame (): void {
  if (maxMs === 0) return
  const now = performance.now()
  lastReadAt = now
  if (readSinceWrite) return
  readSinceWrite = true
  if (now - lastWriteAt <= maxMs) windowMs = maxMs
  spinUntil = 0
}

function spin (): void {
  const now = performance.now()
  if (now < spinUntil && now - checkedAt >= PRESSURE_EVERY_MS) {
    checkedAt = now
    const total = pressure.totalMicros()
    if (total !== undefined && stallSeen !== undefined && total - stallSeen > PRESSURE_STALL_MICROS) {
      spinUntil = 0 // someone waits for a CPU: give this one up
      yielded++
    }
    stallSeen = total
  }
  if (now < spinUntil) {
    setImmediate(spin)
    return
  }
  spinning = false
  spunMs += now - spinStartedAt
  if (!readSinceWrite) windowMs = windowMs / 2 < maxMs / 8 ? 0 : windowMs / 2
}

/**
 * Busy-polling (busy-poll.ts) over real loopback sockets: a process keeps polling after a
 * write only while answers come within the window, costs nothing once they stop, and can
 * be turned off.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { existsSync } from 'node:fs'
import { createServer, connect, type Server, type Socket } from 'node:net'
import { cpus } from 'node:os'
import { setTimeout as sleep } from 'node:timers/promises'
import { FramedSocket, busyPollStats, setBusyPoll } from '../src/index.js'

/**
 * A framed connection to a loopback server that echoes what it is sent (at once, or after
 * `delayMs`) or never answers. The server side handles raw bytes, not frames: busy-polling
 * is the process's, and a frame read or written by a server in this same process would
 * count as the client's.
 */
async function framedPeer (answer: boolean, delayMs = 0): Promise<{ client: FramedSocket, close: () => Promise<void> }> {
  const accepted: Socket[] = []
  const server: Server = createServer(socket => {
    accepted.push(socket)
    socket.on('data', (bytes: Buffer) => {
      if (!answer) return
      if (delayMs === 0) socket.write(bytes)
      else setTimeout(() => socket.write(bytes), delayMs)
    })
  })
  await new Promise<void>(resolve => server.listen(0, '127.0.0.1', resolve))
  const socket = connect((server.address() as { port: number }).port, '127.0.0.1')
  await new Promise<void>((resolve, reject) => { socket.once('connect', resolve); socket.once('error', reject) })
  const client = new FramedSocket(socket)
  return {
    client,
    close: async () => {
      socket.destroy()
      for (const s of accepted) s.destroy()
      await new Promise(resolve => server.close(resolve))
    }
  }
}

async function roundTrips (client: FramedSocket, n: number): Promise<void> {
  for (let i = 0; i < n; i++) {
    const back = new Promise(resolve => client.once('message', resolve))
    client.send({ i })
    assert.deepEqual(await back, { i })
  }
}

test('answers within the window keep it open; a slow peer closes it, and then nothing spins', async () => {
  setBusyPoll(2000)
  const echo = await framedPeer(true)
  const slow = await framedPeer(true, 10)
  const silent = await framedPeer(false)
  try {
    // Both ends of the echo live in this process, so every write is answered at once.
    await roundTrips(echo.client, 50)
    const busy = busyPollStats()
    assert.equal(busy.maxMicros, 2000)
    assert.equal(busy.windowMicros, 2000)
    assert.ok(busy.spunSeconds > 0, 'spun while waiting for the answers')

    // Answers that come after the window: each window runs out, halving the next, down to none.
    await roundTrips(slow.client, 5)
    assert.equal(busyPollStats().windowMicros, 0)

    // Idle with the window shut: no spinning at all, and (nearly) no CPU.
    const before = busyPollStats().spunSeconds
    const cpu = process.cpuUsage()
    silent.client.send({ unanswered: 'last' })
    await sleep(300)
    const used = process.cpuUsage(cpu)
    assert.equal(busyPollStats().spunSeconds, before, 'a shut window does not spin')
    assert.ok(used.user + used.system < 150_000, `an idle process used ${(used.user + used.system) / 1000} ms of CPU in 300 ms`)

    // An answer that comes soon after a write opens the window again.
    await roundTrips(echo.client, 1)
    assert.equal(busyPollStats().windowMicros, 2000)
  } finally {
    await echo.close()
    await slow.close()
    await silent.close()
  }
})

test('a spin ends by itself when no answer comes: the loop is idle again within the window', async () => {
  setBusyPoll(5000)
  const echo = await framedPeer(true)
  const silent = await framedPeer(false)
  try {
    await roundTrips(echo.client, 1) // a frame read just now: the next write spins
    const { spunSeconds: start, yielded } = busyPollStats()
    silent.client.send({ unanswered: true })
    await sleep(100) // far beyond a 5 ms window
    const spun = busyPollStats().spunSeconds - start
    // The whole window, unless other tests' processes wanted the CPU (then it yields sooner).
    assert.ok(spun > 0 && spun < 0.05, `spun ${spun} s after one unanswered write with a 5 ms window`)
    assert.ok(spun > 0.003 || busyPollStats().yielded > yielded, `spun only ${spun} s of a 5 ms window without yielding`)
    await sleep(100)
    assert.equal(busyPollStats().spunSeconds - start, spun, 'nothing spins once the window has passed')
  } finally {
    await echo.close()
    await silent.close()
  }
})

test('a write long after the last frame read does not spin: the peer has stopped polling', async () => {
  setBusyPoll(2000)
  const echo = await framedPeer(true)
  const silent = await framedPeer(false)
  try {
    await roundTrips(echo.client, 3)
    await sleep(50) // well beyond the 2 ms window since that last read
    const before = busyPollStats()
    assert.equal(before.windowMicros, 2000, 'the window itself is open')
    silent.client.send({ late: true })
    await sleep(20)
    assert.equal(busyPollStats().spunSeconds, before.spunSeconds)
    // The answer to such a write still opens the next one: a request answered at once spins.
    await roundTrips(echo.client, 2)
    assert.ok(busyPollStats().spunSeconds > before.spunSeconds)
  } finally {
    await echo.close()
    await silent.close()
  }
})

const psi = existsSync('/proc/pressure/cpu') ? false : 'no /proc/pressure/cpu on this machine (not Linux, or PSI off)'

test('a spin gives its CPU up as soon as another task waits for one', { skip: psi }, async () => {
  setBusyPoll(50_000)
  const echo = await framedPeer(true)
  const silent = await framedPeer(false)
  // More busy processes than CPUs, each bounded in time: some task is always waiting.
  const hogs = Array.from({ length: cpus().length + 1 }, () =>
    spawn(process.execPath, ['-e', 'const end = Date.now() + 1500; while (Date.now() < end) {}'], { stdio: 'ignore' }))
  try {
    await sleep(200)
    await roundTrips(echo.client, 1)
    const before = busyPollStats()
    silent.client.send({ unanswered: true })
    await sleep(150) // three windows' worth
    const after = busyPollStats()
    assert.ok(after.yielded > before.yielded, 'the spin saw the waiting tasks and ended')
    assert.ok(after.spunSeconds - before.spunSeconds < 0.025, `spun ${after.spunSeconds - before.spunSeconds} s of a 50 ms window while others waited`)
  } finally {
    for (const h of hogs) h.kill('SIGKILL')
    await echo.close()
    await silent.close()
  }
})

test('busy-poll 0 is off: round trips work and nothing spins', async () => {
  setBusyPoll(0)
  const echo = await framedPeer(true)
  try {
    const before = busyPollStats().spunSeconds
    await roundTrips(echo.client, 20)
    assert.deepEqual(busyPollStats(), { maxMicros: 0, windowMicros: 0, spunSeconds: before, yielded: busyPollStats().yielded })
  } finally {
    await echo.close()
    setBusyPoll(1000)
  }
})

test('setBusyPoll refuses a window that is not a whole number of µs in range, naming the range', () => {
  for (const bad of [-1, 1.5, 100_001, Number.NaN]) {
    assert.throws(() => setBusyPoll(bad), { name: 'RangeError', message: `busy-poll window must be a whole number of µs from 0 to 100000, not ${bad}` })
  }
})

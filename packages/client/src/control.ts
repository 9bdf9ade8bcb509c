import { createConnection, type Socket } from 'node:net'
export { CONTROL_SOCKET } from '@evalmesh/protocol'

/**
 * A client of a node's control port (`<state-dir>/control.sock`, README "The control
 * port"): one text line per command, one JSON line per reply, in order. The CLI's `ctl`
 * keeps a session open for its prompt; `controlRequest` sends one command and closes.
 */
export class ControlSession {
  readonly #socket: Socket
  #buffer = ''
  #waiters: Array<{ resolve: (line: string) => void, reject: (err: Error) => void }> = []
  #closed: Error | undefined

  private constructor (socket: Socket) {
    this.#socket = socket
    socket.setEncoding('utf8')
    socket.on('data', (chunk: string) => {
      this.#buffer += chunk
      let nl: number
      while ((nl = this.#buffer.indexOf('\n')) >= 0) {
        const line = this.#buffer.slice(0, nl)
        this.#buffer = this.#buffer.slice(nl + 1)
        this.#waiters.shift()?.resolve(line)
      }
    })
    socket.on('close', () => {
      this.#closed ??= new Error('the control port closed the connection')
      for (const w of this.#waiters.splice(0)) w.reject(this.#closed)
    })
    socket.on('error', err => { this.#closed = err })
  }

  /** Connect to the control port at `path`; the error says why not in words an operator acts on. */
  static async open (path: string): Promise<ControlSession> {
    return await new Promise((resolve, reject) => {
      const socket = createConnection(path)
      socket.once('connect', () => resolve(new ControlSession(socket)))
      socket.once('error', err => {
        const code = (err as NodeJS.ErrnoException).code
        reject(new Error(code === 'ENOENT' || code === 'ECONNREFUSED'
          ? `no control port at ${path} (is a node running with this state dir? is its control port stopped?)`
          : code === 'EACCES' ? `${path}: permission denied (the control port is owner-only)` : `${path}: ${err.message}`))
      })
    })
  }

  get closed (): boolean { return this.#closed !== undefined }

  /** Send one command (line breaks become spaces) and resolve with its parsed reply. */
  async send (line: string): Promise<Record<string, unknown>> {
    if (this.#closed !== undefined) throw this.#closed
    const reply = new Promise<string>((resolve, reject) => this.#waiters.push({ resolve, reject }))
    this.#socket.write(line.replace(/[\r\n]+/g, ' ') + '\n')
    return JSON.parse(await reply) as Record<string, unknown>
  }

  close (): void { this.#socket.end() }

  /** Close at once, answered or not (a timeout). */
  destroy (): void { this.#socket.destroy() }
}

/**
 * Send one command to the control port at `path` and resolve with its JSON reply, whether
 * `ok` or not; rejects if the port cannot be reached or does not answer within `timeoutMs`.
 */
export async function controlRequest (path: string, line: string, timeoutMs = 10_000): Promise<Record<string, unknown>> {
  const session = await ControlSession.open(path)
  let timer: NodeJS.Timeout | undefined
  try {
    const reply = await Promise.race([
      session.send(line),
      new Promise<never>((_resolve, reject) => { timer = setTimeout(() => reject(new Error(`control port ${path}: no reply within ${timeoutMs} ms`)), timeoutMs) })
    ])
    session.close()
    return reply
  } catch (err) {
    session.destroy()
    throw err
  } finally {
    clearTimeout(timer)
  }
}

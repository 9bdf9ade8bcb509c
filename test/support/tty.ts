import { PassThrough, Writable } from 'node:stream'

/** A terminal for a blessed screen without one: keys go in through `input`, the screen's bytes come out of `output`. */
export interface Tty {
  input: PassThrough
  output: Writable & { columns: number, rows: number }
  written: () => string
}

export function fakeTty (columns = 120, rows = 36): Tty {
  const input = new PassThrough() as PassThrough & { isTTY: boolean, setRawMode: (on: boolean) => unknown }
  input.isTTY = true
  input.setRawMode = () => input
  let written = ''
  const output = new Writable({
    write (chunk: Buffer, _enc, cb) {
      written += chunk.toString('utf8')
      if (written.length > 4_000_000) written = written.slice(-2_000_000)
      cb()
    }
  }) as Writable & { columns: number, rows: number, isTTY: boolean }
  output.isTTY = true
  output.columns = columns
  output.rows = rows
  return { input, output, written: () => written }
}

/** One keystroke (or one escape sequence): separate writes, as a terminal delivers them, not one pasted chunk. */
export async function key (t: Tty, seq: string): Promise<void> {
  t.input.write(seq)
  await new Promise(resolve => setTimeout(resolve, 30))
}

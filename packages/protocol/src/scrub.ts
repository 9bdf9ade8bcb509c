/*
 * Errors that reach a client must not say where things live on the host: source files
 * of the node, a Megatest area's directory (known to clients by its name), paths in
 * errors from SQLite or the file system. Every host error message passes through here
 * before it leaves the node.
 */

/** Absolute host paths: a `/` segment after the start, a space, a quote, `(` or `=`, with at least two segments. */
const HOST_PATH = /(^|[\s'"`(=:,])(\/(?:[^\s'"`()/]+\/)+[^\s'"`()]*)/g

const FILE_URL = /\b(?:file|node):\/\/\S+/g

/** `message` with `areaDir` shown as `<area NAME>` and any other absolute path as `<path>`. */
export function scrubPaths (message: string, area?: { name: string, dir: string }): string {
  let m = String(message)
  if (area !== undefined && area.dir.length > 1) m = m.split(area.dir).join(`<area ${area.name}>`)
  return m.replace(FILE_URL, '<host>').replace(HOST_PATH, (_all, before: string) => `${before}<path>`)
}

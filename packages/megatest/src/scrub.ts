/*
 * Errors that reach a client must not say where the area lives on the host. An area is
 * known to clients by its name; its directory, and host paths in errors from SQLite or
 * the file system, are replaced before a message leaves the service.
 */

/** Absolute host paths: a `/` segment after the start, a space, a quote, `(` or `=`, with at least two segments. */
const HOST_PATH = /(^|[\s'"`(=:,])(\/(?:[^\s'"`()/]+\/)+[^\s'"`()]*)/g

/** `message` with `areaDir` shown as `<area NAME>` and any other absolute path as `<path>`. */
export function scrubPaths (message: string, area?: { name: string, dir: string }): string {
  let m = String(message)
  if (area !== undefined && area.dir.length > 1) m = m.split(area.dir).join(`<area ${area.name}>`)
  return m.replace(HOST_PATH, (_all, before: string) => `${before}<path>`)
}

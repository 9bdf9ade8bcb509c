/**
 * A session key is `<client id>/<name>`: the sandbox keeps each client's sessions, and
 * counts its quotas, by the part before the first '/'. The one place the format lives.
 */
export function sessionKey (client: string, name: string): string {
  return `${client}/${name}`
}

export function ownerOf (session: string): string {
  const at = session.indexOf('/')
  return at < 0 ? session : session.slice(0, at)
}

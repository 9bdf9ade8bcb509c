/**
 * @packageDocumentation
 * Node identity and trust. Each node has an Ed25519 key in its state directory
 * (default `~/.evalmesh`, owner-only); its id is derived from the public key.
 * Peers are trusted by key (`trusted-keys`), by a shared mesh key (`mesh.key`), or
 * because they hold this node's own key (same user, same machine).
 */
export * from './identity.js'
export * from './trust-store.js'
export * from './permissions.js'
export * from './certificate.js'

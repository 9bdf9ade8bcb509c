import { X509Certificate, createPublicKey } from 'node:crypto'
import type { Identity } from './identity.js'

/*
 * The certificate `serve --tls` presents when the operator gives none (PROTOCOL.md §2.5):
 * a self-signed X.509 v3 certificate over the node's own Ed25519 key (RFC 8410), so
 * that the key clients already trust (trusted-keys, the mesh key) stays the only trust
 * root: a client pins it by checking that the certificate's key is the key the node
 * proves in the evalmesh handshake. It is a pure function of the key (fixed serial and
 * validity), so every start serves the same bytes. Built here in a few lines of DER
 * rather than with an X.509 library: it has one shape.
 */

const ED25519_OID = Buffer.from('06032b6570', 'hex') // 1.3.101.112
const COMMON_NAME_OID = Buffer.from('0603550403', 'hex') // 2.5.4.3

function der (tag: number, ...content: Buffer[]): Buffer {
  const body = Buffer.concat(content)
  const n = body.length
  const length = n < 0x80 ? Buffer.from([n]) : n < 0x100 ? Buffer.from([0x81, n]) : Buffer.from([0x82, n >> 8, n & 0xff])
  return Buffer.concat([Buffer.from([tag]), length, body])
}
const seq = (...c: Buffer[]): Buffer => der(0x30, ...c)

function name (commonName: string): Buffer {
  return seq(der(0x31, seq(COMMON_NAME_OID, der(0x0c, Buffer.from(commonName, 'utf8')))))
}

/** The node's self-signed certificate, PEM. Its subject and issuer are `evalmesh <node id>`. */
export function selfCertificate (identity: Identity): string {
  const spki = createPublicKey({ key: { kty: 'OKP', crv: 'Ed25519', x: Buffer.from(identity.publicKey).toString('base64url') }, format: 'jwk' })
    .export({ format: 'der', type: 'spki' })
  const algorithm = seq(ED25519_OID)
  const subject = name(`evalmesh ${identity.id}`)
  // UTCTime before 2050, GeneralizedTime after (RFC 5280 §4.1.2.5); 9999 means no end.
  const validity = seq(der(0x17, Buffer.from('000101000000Z')), der(0x18, Buffer.from('99991231235959Z')))
  // basicConstraints: not a CA, so this certificate can vouch for nothing but itself.
  const extensions = der(0xa3, seq(seq(Buffer.from('0603551d13', 'hex'), der(0x04, seq()))))
  const tbs = seq(
    der(0xa0, der(0x02, Buffer.from([2]))), // version 3
    der(0x02, Buffer.from(`01${identity.id}`, 'hex')), // serial: positive, from the node id
    algorithm, subject, validity, subject, spki, extensions
  )
  const cert = seq(tbs, algorithm, der(0x03, Buffer.from([0]), Buffer.from(identity.sign(tbs))))
  return `-----BEGIN CERTIFICATE-----\n${cert.toString('base64').replace(/.{1,64}/g, '$&\n')}-----END CERTIFICATE-----\n`
}

/** The raw 32-byte Ed25519 key of a certificate, or undefined when its key is not Ed25519. */
export function certificateEd25519Key (cert: X509Certificate | Buffer): Uint8Array | undefined {
  const x = cert instanceof X509Certificate ? cert : new X509Certificate(cert)
  if (x.publicKey.asymmetricKeyType !== 'ed25519') return undefined
  const jwk = x.publicKey.export({ format: 'jwk' })
  return jwk.x === undefined ? undefined : Buffer.from(jwk.x, 'base64url')
}

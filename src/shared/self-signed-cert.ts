/**
 * A self-signed ECDSA P-256 server certificate for localhost, 127.0.0.1, ::1 and the given
 * host: the broker's generated TLS identity, and the CLI's per-session loopback listener
 * for kubectl. Shared so both make certificates the same way.
 */
import 'reflect-metadata';
import { randomBytes, webcrypto } from 'node:crypto';
import { isIP } from 'node:net';
import * as x509 from '@peculiar/x509';

export interface SelfSignedCertOptions {
  commonName: string;
  /** A bind or listen address to name too (wildcards `0.0.0.0`/`::` are skipped). */
  host: string;
  validityDays: number;
  /** Add a subject key identifier (the broker's long-lived certificate has one). */
  subjectKeyId?: boolean;
}

export async function makeSelfSignedCert(o: SelfSignedCertOptions): Promise<{ certPem: string; keyPem: string }> {
  // @peculiar/x509 is typed against the DOM's Crypto; Node's webcrypto implements it.
  type X509Crypto = Parameters<typeof x509.X509CertificateGenerator.createSelfSigned>[1];
  type X509Params = Parameters<typeof x509.X509CertificateGenerator.createSelfSigned>[0];
  const crypto = webcrypto as unknown as NonNullable<X509Crypto>;
  const keys = (await webcrypto.subtle.generateKey({ name: 'ECDSA', namedCurve: 'P-256' }, true, ['sign', 'verify'])) as webcrypto.CryptoKeyPair;
  const x509Keys = keys as unknown as X509Params['keys'];

  const names: { type: 'dns' | 'ip'; value: string }[] = [
    { type: 'dns', value: 'localhost' },
    { type: 'ip', value: '127.0.0.1' },
    { type: 'ip', value: '::1' },
  ];
  const host = o.host.replace(/^\[|\]$/g, '');
  // A wildcard bind address is not a name anyone connects to.
  if (host && host !== '0.0.0.0' && host !== '::' && !names.some((n) => n.value === host)) {
    names.push({ type: isIP(host) ? 'ip' : 'dns', value: host });
  }

  // Positive 16-byte serial (high bit clear).
  const serial = randomBytes(16);
  serial[0] = (serial[0] ?? 0) & 0x7f;
  const extensions: x509.Extension[] = [
    new x509.BasicConstraintsExtension(false, undefined, true),
    new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
    new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.serverAuth]),
    new x509.SubjectAlternativeNameExtension(names),
  ];
  if (o.subjectKeyId) extensions.push(await x509.SubjectKeyIdentifierExtension.create(x509Keys.publicKey, false, crypto));
  const cert = await x509.X509CertificateGenerator.createSelfSigned(
    {
      serialNumber: serial.toString('hex'),
      name: `CN=${o.commonName}`,
      notBefore: new Date(Date.now() - 5 * 60_000), // a little slack for skewed client clocks
      notAfter: new Date(Date.now() + o.validityDays * 86_400_000),
      signingAlgorithm: { name: 'ECDSA', hash: 'SHA-256' } as X509Params['signingAlgorithm'],
      keys: x509Keys,
      extensions,
    },
    crypto,
  );
  const pkcs8 = Buffer.from(await webcrypto.subtle.exportKey('pkcs8', keys.privateKey));
  return { certPem: cert.toString('pem') + '\n', keyPem: toPem('PRIVATE KEY', pkcs8) };
}

function toPem(label: string, der: Buffer): string {
  const b64 = der.toString('base64').replace(/.{64}/g, '$&\n').replace(/\n$/, '');
  return `-----BEGIN ${label}-----\n${b64}\n-----END ${label}-----\n`;
}

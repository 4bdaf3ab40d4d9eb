/**
 * A throwaway TLS identity for a loopback listener: a self-signed ECDSA P-256 certificate
 * for 127.0.0.1, ::1 and localhost (plus the bind address), made in memory when a session
 * starts and never written anywhere but into the session's own kubeconfig as its CA.
 *
 * Why the local hop needs TLS at all: kubectl (client-go's clientcmd) sends a kubeconfig's
 * credentials only to an https server, so a bearer token on an http:// loopback URL is
 * silently dropped.
 */
import 'reflect-metadata';
import { randomBytes, webcrypto } from 'node:crypto';
import { isIP } from 'node:net';
import tls from 'node:tls';
import * as x509 from '@peculiar/x509';

export interface LocalTlsIdentity {
  /** The certificate, PEM: also the CA a client must trust. */
  certPem: string;
  secureContext: tls.SecureContext;
}

/** Valid long enough for any session; the key dies with the process. */
const VALIDITY_DAYS = 30;

export async function makeLocalTlsIdentity(bindHost = '127.0.0.1'): Promise<LocalTlsIdentity> {
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
  const host = bindHost.replace(/^\[|\]$/g, '');
  if (host && host !== '0.0.0.0' && host !== '::' && !names.some((n) => n.value === host)) {
    names.push({ type: isIP(host) ? 'ip' : 'dns', value: host });
  }
  const serial = randomBytes(16);
  serial[0] = (serial[0] ?? 0) & 0x7f;
  const cert = await x509.X509CertificateGenerator.createSelfSigned(
    {
      serialNumber: serial.toString('hex'),
      name: 'CN=agentgate local listener',
      notBefore: new Date(Date.now() - 5 * 60_000),
      notAfter: new Date(Date.now() + VALIDITY_DAYS * 86_400_000),
      signingAlgorithm: { name: 'ECDSA', hash: 'SHA-256' } as X509Params['signingAlgorithm'],
      keys: x509Keys,
      extensions: [
        new x509.BasicConstraintsExtension(false, undefined, true),
        new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
        new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.serverAuth]),
        new x509.SubjectAlternativeNameExtension(names),
      ],
    },
    crypto,
  );
  const pkcs8 = Buffer.from(await webcrypto.subtle.exportKey('pkcs8', keys.privateKey));
  const keyPem = `-----BEGIN PRIVATE KEY-----\n${pkcs8.toString('base64').replace(/.{64}/g, '$&\n').replace(/\n$/, '')}\n-----END PRIVATE KEY-----\n`;
  const certPem = cert.toString('pem') + '\n';
  return { certPem, secureContext: tls.createSecureContext({ cert: certPem, key: keyPem, minVersion: 'TLSv1.2' }) };
}

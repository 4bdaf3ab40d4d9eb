/**
 * A throwaway TLS identity for a loopback listener: a self-signed ECDSA P-256 certificate
 * for 127.0.0.1, ::1 and localhost (plus the bind address), made in memory when a session
 * starts and never written anywhere but into the session's own kubeconfig as its CA.
 *
 * Why the local hop needs TLS at all: kubectl (client-go's clientcmd) sends a kubeconfig's
 * credentials only to an https server, so a bearer token on an http:// loopback URL is
 * silently dropped.
 */
import tls from 'node:tls';
import { makeSelfSignedCert } from '../shared/self-signed-cert.js';

export interface LocalTlsIdentity {
  /** The certificate, PEM: also the CA a client must trust. */
  certPem: string;
  secureContext: tls.SecureContext;
}

/** Valid long enough for any session; the key dies with the process. */
const VALIDITY_DAYS = 30;

export async function makeLocalTlsIdentity(bindHost = '127.0.0.1'): Promise<LocalTlsIdentity> {
  const { certPem, keyPem } = await makeSelfSignedCert({ commonName: 'agentgate local listener', host: bindHost, validityDays: VALIDITY_DAYS });
  return { certPem, secureContext: tls.createSecureContext({ cert: certPem, key: keyPem, minVersion: 'TLSv1.2' }) };
}

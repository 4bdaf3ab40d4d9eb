/** The session kubeconfig: 0600 in a 0700 directory, and what kubectl itself reads from it. */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { stat, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { parse } from 'yaml';
import { writeKubeconfig, kubeconfigFileName } from '../../src/client/kubeconfig.js';
import { makeLocalTlsIdentity } from '../../src/client/local-tls.js';
import { X509Certificate } from 'node:crypto';
import { makeTempDir, type TempDir } from '../broker/fixtures.js';

const run = promisify(execFile);

describe('kubeconfig', () => {
  let tmp: TempDir;
  before(async () => {
    tmp = await makeTempDir('agentgate-kubeconfig-');
  });
  after(async () => {
    await tmp?.remove();
  });

  test('written 0600 in a new 0700 directory, with cluster, context and user named after the target', async () => {
    const { certPem } = await makeLocalTlsIdentity();
    const dir = join(tmp.path, 'kube');
    const path = await writeKubeconfig({ dir, target: 'k8s-prod', port: 41234, secret: 's3cret-value', caPem: certPem });
    assert.equal(path, join(dir, 'k8s-prod.kubeconfig'));
    assert.equal((await stat(path)).mode & 0o777, 0o600);
    assert.equal((await stat(dir)).mode & 0o777, 0o700);
    const doc = parse(await readFile(path, 'utf8')) as Record<string, unknown>;
    assert.equal(doc['current-context'], 'k8s-prod');
    const env = { PATH: process.env['PATH'] ?? '', HOME: tmp.path };
    const view = await run('kubectl', ['--kubeconfig', path, 'config', 'view', '--raw', '-o', 'json'], { env });
    const cfg = JSON.parse(view.stdout) as {
      clusters: { name: string; cluster: { server: string; 'certificate-authority-data': string } }[];
      contexts: { name: string; context: { cluster: string; user: string } }[];
      users: { name: string; user: { token: string } }[];
      'current-context': string;
    };
    assert.equal(cfg['current-context'], 'k8s-prod');
    assert.equal(cfg.clusters[0]?.cluster.server, 'https://127.0.0.1:41234');
    assert.equal(Buffer.from(cfg.clusters[0]?.cluster['certificate-authority-data'] ?? '', 'base64').toString('utf8'), certPem);
    assert.deepEqual(cfg.contexts[0], { name: 'k8s-prod', context: { cluster: 'k8s-prod', user: 'agentgate-k8s-prod' } });
    assert.equal(cfg.users[0]?.user.token, 's3cret-value');
  });

  test('rewriting replaces the file whole; odd target names make safe file names; IPv6 hosts are bracketed', async () => {
    const dir = join(tmp.path, 'again');
    await writeKubeconfig({ dir, target: 't', port: 1, secret: 'a' });
    const path = await writeKubeconfig({ dir, target: 't', port: 2, secret: 'b', host: '::1' });
    const doc = parse(await readFile(path, 'utf8')) as { clusters: { cluster: { server: string } }[]; users: { user: { token: string } }[] };
    assert.equal(doc.clusters[0]?.cluster.server, 'http://[::1]:2');
    assert.equal(doc.users[0]?.user.token, 'b');
    assert.equal(kubeconfigFileName('team/k8s prod'), 'team_k8s_prod.kubeconfig');
  });

  test('the local certificate names the loopback addresses and serves TLS only', async () => {
    const { certPem } = await makeLocalTlsIdentity('127.0.0.2');
    const cert = new X509Certificate(certPem);
    assert.ok(cert.checkIP('127.0.0.1'));
    assert.ok(cert.checkIP('127.0.0.2'));
    assert.ok(cert.checkHost('localhost'));
    assert.ok(!cert.ca);
  });
});

/**
 * Request info for the paths real kubectl sends, checked against what the API server's
 * RequestInfoFactory derives for them (verb, group, version, namespace, resource,
 * subresource, name), with connect subresources turned into verbs.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { answerWithin } from '../helpers/hang-guard.js';
import { parseRequestInfo, describeRequest, isDiscoveryRead, RequestPathError } from '../../src/broker/kubernetes/request-info.js';

type Row = [method: string, url: string, expected: string];

// expected: `verb apiVerb group/version ns resource/subresource name`, '-' for empty; or `nonResource verb path`.
const RESOURCE: Row[] = [
  ['GET', '/api/v1/namespaces/default/pods?limit=500', 'list list /v1 default pods -'],
  ['GET', '/api/v1/pods?limit=500', 'list list /v1 - pods -'],
  ['GET', '/api/v1/namespaces/default/pods/web-1', 'get get /v1 default pods web-1'],
  ['HEAD', '/api/v1/namespaces/default/pods/web-1', 'get get /v1 default pods web-1'],
  ['GET', '/api/v1/namespaces/default/pods?fieldSelector=metadata.name%3Dweb-1&resourceVersion=5&watch=true', 'watch watch /v1 default pods web-1'],
  ['GET', '/api/v1/namespaces/default/pods?watch=1', 'watch watch /v1 default pods -'],
  ['GET', '/api/v1/namespaces/default/pods?watch=false', 'list list /v1 default pods -'],
  ['GET', '/api/v1/namespaces/default/pods?watch=0', 'list list /v1 default pods -'],
  ['GET', '/api/v1/namespaces/default/pods?fieldSelector=status.phase%3DRunning', 'list list /v1 default pods -'],
  ['GET', '/api/v1/watch/namespaces/default/pods', 'watch watch /v1 default pods -'],
  ['GET', '/api/v1/watch/namespaces/default/pods/web-1', 'watch watch /v1 default pods web-1'],
  ['POST', '/api/v1/namespaces/default/pods?fieldManager=kubectl-create', 'create create /v1 default pods -'],
  ['PUT', '/api/v1/namespaces/default/configmaps/settings', 'update update /v1 default configmaps settings'],
  ['PATCH', '/apis/apps/v1/namespaces/default/deployments/web?fieldManager=kubectl-edit', 'patch patch apps/v1 default deployments web'],
  ['PATCH', '/apis/apps/v1/namespaces/default/deployments/web/scale', 'patch patch apps/v1 default deployments/scale web'],
  ['DELETE', '/api/v1/namespaces/default/pods/web-1', 'delete delete /v1 default pods web-1'],
  ['DELETE', '/api/v1/namespaces/default/pods?labelSelector=app%3Dweb', 'deletecollection deletecollection /v1 default pods -'],
  ['POST', '/api/v1/namespaces/default/pods/web-1/exec?command=ls&container=app&stderr=true&stdout=true', 'exec create /v1 default pods/exec web-1'],
  ['GET', '/api/v1/namespaces/default/pods/web-1/exec?command=ls&stdout=true', 'exec get /v1 default pods/exec web-1'],
  ['POST', '/api/v1/namespaces/default/pods/web-1/attach?stdin=true&stdout=true&tty=true', 'attach create /v1 default pods/attach web-1'],
  ['POST', '/api/v1/namespaces/default/pods/web-1/portforward', 'portforward create /v1 default pods/portforward web-1'],
  ['GET', '/api/v1/namespaces/default/pods/web-1/log?container=app&follow=true', 'get get /v1 default pods/log web-1'],
  ['POST', '/api/v1/namespaces/default/pods/web-1/eviction', 'create create /v1 default pods/eviction web-1'],
  ['GET', '/api/v1/namespaces/default/services/http:web:80/proxy/metrics', 'proxy get /v1 default services/proxy http:web:80'],
  ['GET', '/api/v1/proxy/namespaces/default/services/web/metrics', 'proxy proxy /v1 default services web'],
  ['GET', '/api/v1/namespaces', 'list list /v1 - namespaces -'],
  ['GET', '/api/v1/namespaces/kube-system', 'get get /v1 kube-system namespaces kube-system'],
  ['PUT', '/api/v1/namespaces/kube-system/finalize', 'update update /v1 kube-system namespaces/finalize kube-system'],
  ['GET', '/api/v1/namespaces/kube-system/status', 'get get /v1 kube-system namespaces/status kube-system'],
  ['GET', '/api/v1/nodes/node-1', 'get get /v1 - nodes node-1'],
  ['GET', '/apis/rbac.authorization.k8s.io/v1/clusterroles?limit=500', 'list list rbac.authorization.k8s.io/v1 - clusterroles -'],
  ['POST', '/api/v1/namespaces/ci/serviceaccounts/build/token', 'create create /v1 ci serviceaccounts/token build'],
  ['GET', '/apis/metrics.k8s.io/v1beta1/namespaces/default/pods', 'list list metrics.k8s.io/v1beta1 default pods -'],
  ['GET', '/api/v1/namespaces/default/secrets/db%2Dcreds', 'get get /v1 default secrets db-creds'],
  ['OPTIONS', '/api/v1/namespaces/default/pods', '- - /v1 default pods -'],
];

const NON_RESOURCE: Row[] = [
  ['GET', '/api?timeout=32s', 'get /api'],
  ['GET', '/api/', 'get /api'],
  ['GET', '/apis?timeout=32s', 'get /apis'],
  ['GET', '/api/v1?timeout=32s', 'get /api/v1'],
  ['GET', '/apis/apps', 'get /apis/apps'],
  ['GET', '/apis/apps/v1', 'get /apis/apps/v1'],
  ['GET', '/version?timeout=5s', 'get /version'],
  ['GET', '/openapi/v2?timeout=32s', 'get /openapi/v2'],
  ['GET', '/openapi/v3/apis/apps/v1?hash=0123ABCD', 'get /openapi/v3/apis/apps/v1'],
  ['GET', '/healthz', 'get /healthz'],
  ['POST', '/logs/kube-apiserver.log', 'post /logs/kube-apiserver.log'],
  ['GET', '/', 'get /'],
];

function summary(method: string, url: string): string {
  const i = parseRequestInfo(method, url);
  if (i.kind === 'nonResource') return `${i.verb} ${i.path}`;
  const dash = (s: string): string => s || '-';
  const res = i.subresource ? `${i.resource}/${i.subresource}` : i.resource;
  return `${dash(i.verb)} ${dash(i.apiVerb)} ${i.group}/${i.version} ${dash(i.namespace)} ${res} ${dash(i.name)}`;
}

describe('request info', () => {
  test('resource requests: the same verb, group, version, namespace, resource, subresource and name as the API server', () => {
    for (const [method, url, expected] of RESOURCE) {
      const info = parseRequestInfo(method, url);
      assert.equal(info.kind, 'resource', `${method} ${url}`);
      assert.equal(summary(method, url), expected, `${method} ${url}`);
    }
  });

  test('non-resource requests are named by path, with the lower-case method as verb', () => {
    for (const [method, url, expected] of NON_RESOURCE) {
      const info = parseRequestInfo(method, url);
      assert.equal(info.kind, 'nonResource', `${method} ${url}`);
      assert.equal(summary(method, url), expected, `${method} ${url}`);
    }
  });

  test('paths that could mean something else to the API server are refused', () => {
    for (const url of [
      '/api/v1/namespaces/default/secrets%2Fdb',
      '/api/v1/namespaces/../secrets',
      '/api/v1/namespaces/%2e%2e/secrets',
      '/api/v1//pods',
      '//api/v1/pods',
      '/api/v1/namespaces/default/pods/a%00b',
      '/api/v1/namespaces/default/pods/%zz',
      'api/v1/pods',
    ]) {
      assert.throws(() => parseRequestInfo('GET', url), RequestPathError, url);
    }
  });

  test('discovery reads are recognised; other non-resource URLs and writes are not', () => {
    const yes = ['/api', '/apis', '/api/v1', '/apis/apps/v1', '/version', '/openapi/v2', '/openapi/v3', '/openapi/v3/api/v1'];
    for (const p of yes) assert.ok(isDiscoveryRead(parseRequestInfo('GET', p)), p);
    for (const p of ['/healthz', '/metrics', '/logs/x', '/api/v1/pods', '/openapi/v2x']) assert.ok(!isDiscoveryRead(parseRequestInfo('GET', p)), p);
    assert.ok(!isDiscoveryRead(parseRequestInfo('POST', '/api')));
  });

  test('descriptions read as sentences', () => {
    assert.equal(describeRequest(parseRequestInfo('DELETE', '/api/v1/namespaces/default/pods/web-1')), 'delete pods "web-1" in namespace default');
    assert.equal(describeRequest(parseRequestInfo('GET', '/api/v1/pods')), 'list pods');
    assert.equal(describeRequest(parseRequestInfo('PATCH', '/apis/apps/v1/namespaces/prod/deployments/web/scale')), 'patch apps/deployments/scale "web" in namespace prod');
    assert.equal(describeRequest(parseRequestInfo('GET', '/api/v1/namespaces/kube-system')), 'get namespaces "kube-system"');
    assert.equal(describeRequest(parseRequestInfo('GET', '/healthz')), 'GET /healthz');
  });
});

test('a field selector naming one object: blanks around the value trimmed, line breaks and path characters refused, linear on long blank runs', async () => {
  const nameOf = (selector: string): string | undefined => {
    const info = parseRequestInfo('GET', `/api/v1/namespaces/default/pods?fieldSelector=${encodeURIComponent(selector)}`);
    assert.equal(info.kind, 'resource');
    return info.kind === 'resource' ? info.name : undefined;
  };
  assert.equal(nameOf(' metadata.name == web-1 '), 'web-1');
  assert.equal(nameOf('status.phase=Running,metadata.name=web-2'), 'web-2');
  assert.equal(nameOf('metadata.name=a\nb'), '', 'no single name');
  assert.equal(nameOf('metadata.name=a/b'), '', 'no single name');
  const blanks = ' '.repeat(100_000);
  const out = await answerWithin<string | undefined>(
    `import(workerData.info).then(({ parseRequestInfo }) => {
      const i = parseRequestInfo('GET', '/api/v1/namespaces/default/pods?fieldSelector=' + encodeURIComponent('metadata.name=a' + workerData.blanks + 'b' + workerData.blanks + ','));
      parentPort.postMessage(i.name);
    });`,
    { info: new URL('../../src/broker/kubernetes/request-info.js', import.meta.url).href, blanks },
  );
  assert.equal(out, `a${blanks}b`);
});

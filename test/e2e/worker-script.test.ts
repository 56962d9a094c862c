// A deployed Worker really serves HTTP (DESIGN.md "Deployed Workers"): an
// agent pays for a worker-script at provider cloud, and the runner answers at
// the resource's URL with what the agent's code produces, without the
// caller's credentials and without outbound network; a redeploy serves the
// new version at once, and a delete stops serving at once.
import { describe, expect, inject, it } from 'vitest';
import { agentAtProvider, asHuman, readJson, signedPaidCall, type ProviderAgent } from './support';

const urls = inject('urls');

type CloudAgent = ProviderAgent;

const cloudAgent = () => agentAtProvider(urls, 'cloud', ['worker-script'], 1000);

/** A paid call at cloud (§3.1). */
async function paidCall(agent: CloudAgent, method: 'POST' | 'DELETE', path: string, json?: unknown) {
  const res = await signedPaidCall(urls.cloud, agent.key, agent.token, method, path, json, crypto.randomUUID());
  return { status: res.status, body: await readJson(res) };
}

const deploy = (agent: CloudAgent, name: string, module: string) => paidCall(agent, 'POST', '/v1/resources', { service: 'worker-script', plan: 'standard', parameters: { name, module } });
const workerName = () => `e2e-${crypto.randomUUID().slice(0, 8)}`;
const servedVersion = async (url: string) => (await readJson(await fetch(url))).version as string;

/**
 * Shows what it was given, tries the network, and tries to set a cookie on the
 * shared origin. Besides example.com it fetches the orchestrator, which this
 * machine does reach: its failure is the runner's doing, not a sandbox's.
 */
const INSPECTOR = (version: string) => `
async function reach(url) {
  try {
    await fetch(url);
    return 'reached';
  } catch {
    return 'blocked';
  }
}
export default {
  async fetch(request) {
    const network = [await reach('https://example.com/'), await reach('${urls.orchestrator}/.well-known/agent-provisioning')];
    return Response.json(
      {
        version: '${version}',
        url: request.url,
        method: request.method,
        body: request.method === 'POST' ? await request.text() : null,
        cookie: request.headers.get('cookie'),
        authorization: request.headers.get('authorization'),
        custom: request.headers.get('x-custom'),
        network,
      },
      { headers: { 'set-cookie': 'oap_orchestrator_session=tossed; Path=/', 'x-served-by': 'agent-code' } },
    );
  },
};
`;

describe('a deployed worker-script', () => {
  it('answers at its URL with what its code produces, never sees the caller’s Cookie or Authorization, and cannot reach the network', async () => {
    const agent = await cloudAgent();
    const name = workerName();
    const created = await deploy(agent, name, INSPECTOR('v1'));
    expect(created.status, JSON.stringify(created.body)).toBe(201);
    expect(created.body).toMatchObject({ service: 'worker-script', status: 'active', name, url: `${urls.runner}/${name}/`, version: 1, module_sha256: expect.stringMatching(/^[0-9a-f]{64}$/) });

    const res = await fetch(`${created.body.url}items?x=1`, {
      method: 'POST',
      headers: { cookie: 'oap_orchestrator_session=secret', authorization: 'Bearer secret-token', 'x-custom': 'kept', 'content-type': 'text/plain' },
      body: 'payload',
    });
    expect(res.status).toBe(200);
    expect(res.headers.get('x-served-by')).toBe('agent-code');
    // Every deployed Worker shares the runner's origin (and, locally, the roles' host): it may set no cookie.
    expect(res.headers.get('set-cookie')).toBeNull();
    expect(await res.json()).toEqual({
      version: 'v1',
      url: `${urls.runner}/${name}/items?x=1`,
      method: 'POST',
      body: 'payload',
      cookie: null,
      authorization: null,
      custom: 'kept',
      network: ['blocked', 'blocked'],
    });
    expect((await fetch(`${urls.orchestrator}/.well-known/agent-provisioning`)).status).toBe(200);
  });

  it('serves a redeploy at once as a new version, and stops at once when deleted: the URL answers 404', async () => {
    const agent = await cloudAgent();
    const name = workerName();
    const first = await deploy(agent, name, INSPECTOR('v1'));
    expect(first.status, JSON.stringify(first.body)).toBe(201);
    expect((await servedVersion(first.body.url))).toBe('v1');

    const second = await deploy(agent, name, INSPECTOR('v2'));
    expect(second.status, JSON.stringify(second.body)).toBe(201);
    expect(second.body).toMatchObject({ name, version: 2, url: first.body.url });
    expect((await servedVersion(first.body.url))).toBe('v2');

    // Another account cannot take the name over (before any charge).
    const squatter = await cloudAgent();
    expect(await deploy(squatter, name, INSPECTOR('squat'))).toMatchObject({ status: 409, body: { code: 'invalid_parameters' } });
    expect((await readJson(await asHuman(squatter.human, 'GET', '/v1/charges'))).data).toEqual([]);

    // The replaced version's resource goes without touching what serves.
    expect((await paidCall(agent, 'DELETE', `/v1/resources/${first.body.resource_id}`)).status).toBe(200);
    expect((await servedVersion(first.body.url))).toBe('v2');

    const deleted = await paidCall(agent, 'DELETE', `/v1/resources/${second.body.resource_id}`);
    expect(deleted.status, JSON.stringify(deleted.body)).toBe(200);
    const gone = await fetch(first.body.url);
    expect(gone.status).toBe(404);
    expect(gone.headers.get('content-type')).toBe('application/problem+json');
    expect(await gone.json()).toMatchObject({ code: 'not_found' });
  });

  it('refuses a module that does not parse before any charge, naming the line', async () => {
    const agent = await cloudAgent();
    const refused = await deploy(agent, workerName(), 'export default {\n  fetch() { return new Response("x" }\n};');
    expect(refused).toMatchObject({ status: 422, body: { code: 'invalid_parameters', detail: expect.stringMatching(/at 2:\d+\.$/) } });
    expect((await readJson(await asHuman(agent.human, 'GET', '/v1/charges'))).data).toEqual([]);
  });

  it('answers 500 without the exception’s text when the code throws, and 404 for a name nobody deployed', async () => {
    const agent = await cloudAgent();
    const created = await deploy(agent, workerName(), 'export default { fetch() { throw new Error("internal detail of the agent"); } };');
    expect(created.status, JSON.stringify(created.body)).toBe(201);
    const failed = await fetch(created.body.url);
    expect(failed.status).toBe(500);
    expect(await failed.text()).not.toContain('internal detail');
    expect((await fetch(`${urls.runner}/${workerName()}/`)).status).toBe(404);
    expect((await fetch(`${urls.runner}/`)).status).toBe(404);
  });
});

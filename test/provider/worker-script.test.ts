// worker-script at provider cloud: the module check that runs before any money
// moves (size, parse, a default export with fetch, no import that cannot
// resolve), and what the runner reads through the WorkerDeployments
// entrypoint as names are deployed, redeployed, suspended and removed. Serving
// itself (the Worker Loader) is driven end to end in test/e2e/worker-script.test.ts.
import { createExecutionContext, runInDurableObject } from 'cloudflare:test';
import { env } from 'cloudflare:workers';
import { decodeJwt } from 'jose';
import { describe, expect, it } from 'vitest';
import { backendFor, ProvisionRefused } from '../../workers/provider/services';
import { checkWorkerModule, MODULE_MAX_BYTES } from '../../workers/provider/services/worker-module';
import { WorkerDeployments } from '../../workers/provider/worker-deployments';
import { useFakeOrchestrator } from '../support/fake-orchestrator';
import { agentWithToken, paidCall, type TokenAgent } from '../support/paid-calls';

useFakeOrchestrator();

const testEnv = env as unknown as TestEnv & { ORCHESTRATOR: Fetcher };
const deployments = new WorkerDeployments(createExecutionContext(), testEnv as never);
const workerName = () => `w-${crypto.randomUUID().slice(0, 8)}`;
const HELLO = 'export default { async fetch(request) { return new Response("hello"); } };';

const deploy = (agent: TokenAgent, name: string, module = HELLO) => paidCall(agent, 'POST', '/v1/resources', { service: 'worker-script', plan: 'standard', parameters: { name, module } });

function refusal(source: string): string {
  try {
    checkWorkerModule(source);
  } catch (error) {
    expect(error).toBeInstanceOf(ProvisionRefused);
    expect((error as ProvisionRefused).code).toBe('invalid_parameters');
    return (error as Error).message;
  }
  throw new Error('the module was accepted');
}

async function moneyTrail(agent: TokenAgent) {
  const calls = (await (await testEnv.ORCHESTRATOR.fetch(`http://127.0.0.1:8787/_test/calls?sub=${agent.sub}`)).json()) as unknown[];
  const local = await runInDurableObject(testEnv.LEDGER.get(testEnv.LEDGER.idFromName(agent.account)), (_, state) => ({
    holds: state.storage.sql.exec('SELECT id FROM holds').toArray().length,
    resources: state.storage.sql.exec('SELECT id FROM resources').toArray().length,
  }));
  return { orchestratorCalls: calls.length, ...local };
}

describe('the module check', () => {
  it.each([
    ['an object with a fetch method', 'export default { fetch(request, env, ctx) { return new Response("ok"); } };'],
    ['an async fetch method', 'export default { async fetch() { return new Response("ok"); } };'],
    ['an arrow function as fetch', 'export default { fetch: async () => new Response("ok") };'],
    ['a const object exported by name', 'const app = { fetch() { return new Response("ok"); } };\nexport default app;'],
    ['a shorthand fetch bound to a function', 'function fetch() { return new Response("ok"); }\nexport default { fetch };'],
    ['export { app as default }', 'const app = { fetch() { return new Response("ok"); } };\nexport { app as default };'],
    ['a WorkerEntrypoint class with fetch', 'import { WorkerEntrypoint } from "cloudflare:workers";\nexport default class extends WorkerEntrypoint { async fetch() { return new Response("ok"); } }'],
    ['node: built-ins and top-level await', 'import { createHash } from "node:crypto";\nconst seed = await Promise.resolve(1);\nexport default { fetch() { return new Response(createHash("sha256").update(String(seed)).digest("hex")); } };'],
    ['a handler built at run time (not decidable without running it)', 'const make = () => ({ fetch() { return new Response("ok"); } });\nexport default make();'],
  ])('accepts %s', (_, source) => {
    const checked = checkWorkerModule(source);
    expect(checked.bytes).toBe(new TextEncoder().encode(source).byteLength);
    expect(checked.sha256).toMatch(/^[0-9a-f]{64}$/);
  });

  it('refuses a syntax error, naming its line and column (1-based)', () => {
    const message = refusal('export default {\n  fetch() {\n    return new Response("x";\n  }\n};');
    expect(message).toMatch(/does not parse as an ES module: Unexpected token at 3:28\.$/);
  });

  it('refuses CommonJS-style and service-worker-style modules: no default export', () => {
    expect(refusal('addEventListener("fetch", (event) => event.respondWith(new Response("x")));')).toMatch(/has no default export; it must be `export default \{ fetch/);
    expect(refusal('module.exports = { fetch() {} };')).toMatch(/has no default export/);
  });

  it('refuses a default export without fetch, at the export’s position', () => {
    expect(refusal('const x = 1;\nexport default { get() { return new Response("x"); } };')).toMatch(/exports an object without a fetch method at 2:1; it must be `export default \{ fetch/);
    expect(refusal('export default function (request) { return new Response("x"); }')).toMatch(/exports a function as its default export/);
    expect(refusal('export default { fetch: "nope" };')).toMatch(/fetch is not a function/);
    expect(refusal('import { WorkerEntrypoint } from "cloudflare:workers";\nexport default class extends WorkerEntrypoint { run() {} }')).toMatch(/class without a fetch method/);
    expect(refusal('export default app;')).toMatch(/exports app as its default export, which the module does not define/);
    expect(refusal('const app = { handle() {} };\nexport default app;')).toMatch(/without a fetch method at 2:1;/);
  });

  it('refuses imports that cannot resolve in a one-module Worker, static or dynamic, at their position', () => {
    expect(refusal('import { Hono } from "hono";\nexport default { fetch() {} };')).toBe('The module imports "hono" at 1:1; it cannot resolve: a deployed Worker is one module, and only cloudflare:* and node:* modules are built in.');
    expect(refusal('export default { async fetch() { const m = await import("./other.js"); return m.default(); } };')).toMatch(/imports "\.\/other\.js" at 1:50;/);
    expect(refusal('const name = "x";\nexport default { async fetch() { await import(name); } };')).toMatch(/imports a computed specifier at 2:40;/);
    expect(refusal('export * from "lodash";\nexport default { fetch() {} };')).toMatch(/imports "lodash"/);
  });

  it('refuses a module nested deeper than the parser can descend, rather than failing with a 500', () => {
    expect(refusal(`export default { fetch() { return ${'['.repeat(100_000)}${']'.repeat(100_000)}; } };`)).toMatch(/does not parse as an ES module: Not enough stack space to parse input at 1:\d+\.$/);
  });

  it('checks a large flat module (an array of 100k elements) without exhausting the stack', () => {
    expect(checkWorkerModule(`const table = [${'0,'.repeat(100_000)}];\nexport default { fetch() { return new Response(String(table.length)); } };`).bytes).toBeGreaterThan(200_000);
  });

  it('refuses a module over 256 KiB of UTF-8, even when its characters fit the catalog’s maxLength', () => {
    const big = `// ${'€'.repeat(90_000)}\nexport default { fetch() {} };`; // ~90k characters, ~270k bytes
    expect(big.length).toBeLessThan(262_144);
    expect(refusal(big)).toMatch(new RegExp(`is \\d+ bytes; the limit is ${MODULE_MAX_BYTES} \\(256 KiB\\)`));
  });
});

describe('deploying through the saga', () => {
  it('a module that does not parse is refused with its line before any money moves: no hold, no charge, no resource', async () => {
    const agent = await agentWithToken();
    const res = await deploy(agent, workerName(), 'export default {\n  fetch() { return new Response( }\n};');
    expect(res.status).toBe(422);
    expect(res.body).toMatchObject({ code: 'invalid_parameters', detail: expect.stringMatching(/at 2:34\.$/) });
    expect(await moneyTrail(agent)).toEqual({ orchestratorCalls: 0, holds: 0, resources: 0 });
  });

  it('a module without a fetch handler is refused before any money moves', async () => {
    const agent = await agentWithToken();
    const res = await deploy(agent, workerName(), 'export const fetch = () => new Response("x");');
    expect(res).toMatchObject({ status: 422, body: { code: 'invalid_parameters', detail: expect.stringContaining('has no default export') } });
    expect(await moneyTrail(agent)).toEqual({ orchestratorCalls: 0, holds: 0, resources: 0 });
  });

  it('deploys version 1 at the runner’s URL, and the runner sees it', async () => {
    const agent = await agentWithToken();
    const name = workerName();
    const res = await deploy(agent, name);
    expect(res.status, JSON.stringify(res.body)).toBe(201);
    expect(res.body).toMatchObject({ service: 'worker-script', status: 'active', name, url: `https://workers.oap.example/${name}/`, version: 1, module_bytes: HELLO.length });
    expect(res.body.module_sha256).toMatch(/^[0-9a-f]{64}$/);
    // A one-time plan's receipt states no period: nothing renews it.
    expect(decodeJwt(res.body.receipt as string)).not.toHaveProperty('period_end');
    expect(await deployments.serving(name)).toEqual({ resource_id: res.body.resource_id, version: 1, suspended: false });
    expect(await deployments.source(res.body.resource_id, 1)).toBe(HELLO);
    expect(await deployments.serving('-')).toBeNull();
  });

  it('a redeploy by the same account is version 2 in a new resource; removing the replaced version leaves it serving', async () => {
    const agent = await agentWithToken();
    const name = workerName();
    const first = await deploy(agent, name);
    const second = await deploy(agent, name, 'export default { fetch() { return new Response("v2"); } };');
    expect(second.status, JSON.stringify(second.body)).toBe(201);
    expect(second.body).toMatchObject({ name, version: 2 });
    expect(second.body.resource_id).not.toBe(first.body.resource_id);
    expect(await deployments.serving(name)).toMatchObject({ resource_id: second.body.resource_id, version: 2 });
    // The replaced resource is retired: deleted in the ledger, by the system, with its reason.
    const retired = (await testEnv.LEDGER.get(testEnv.LEDGER.idFromName(agent.account)).getResource(first.body.resource_id)) as { status: string } | null;
    expect(retired?.status).toBe('deleted');
    // The replaced version's source is gone: a runner that cached nothing for it cannot load it.
    expect(await deployments.source(first.body.resource_id, 1)).toBeNull();
    await backendFor('worker-script')!.deprovision(testEnv as never, { resource_id: first.body.resource_id, account_id: agent.account });
    expect(await deployments.serving(name)).toMatchObject({ resource_id: second.body.resource_id, version: 2 });
  });

  it('a redeploy undone after provisioning (its saga failed) gives the name back to the version it replaced; once final, it does not', async () => {
    const agent = await agentWithToken();
    const backend = backendFor('worker-script')!;
    const name = workerName();
    const first = await deploy(agent, name);
    const undone = `res_undone_${crypto.randomUUID().slice(0, 8)}`;
    const made = await backend.provision(testEnv as never, { resource_id: undone, account_id: agent.account, service: 'worker-script', plan: 'standard', parameters: { name, module: 'export default { fetch() { return new Response("v2"); } };' } });
    expect(made.supersedes).toBe(first.body.resource_id);
    expect(await deployments.serving(name)).toMatchObject({ resource_id: undone, version: 2 });
    // What the saga does when anything fails after provisioning: the backend undoes what it made.
    await backend.deprovision(testEnv as never, { resource_id: undone, account_id: agent.account });
    expect(await deployments.serving(name)).toEqual({ resource_id: first.body.resource_id, version: 1, suspended: false });
    expect(await deployments.source(first.body.resource_id, 1)).toBe(HELLO);
    expect(await deployments.source(undone, 2)).toBeNull();

    // A redeploy that completes retires the version it replaced for good: removing the new one frees the name.
    const second = await deploy(agent, name, 'export default { fetch() { return new Response("v3"); } };');
    expect(second.status, JSON.stringify(second.body)).toBe(201);
    await backend.deprovision(testEnv as never, { resource_id: second.body.resource_id, account_id: agent.account });
    expect(await deployments.serving(name)).toBeNull();
  });

  it('another account’s name is refused with 409 before any money moves (name squatting across accounts)', async () => {
    const owner = await agentWithToken();
    const other = await agentWithToken();
    const name = workerName();
    expect((await deploy(owner, name)).status).toBe(201);
    const res = await deploy(other, name, 'export default { fetch() { return new Response("mine now"); } };');
    expect(res).toMatchObject({ status: 409, body: { code: 'invalid_parameters', detail: `The Worker name ${name} is taken.` } });
    expect(await moneyTrail(other)).toEqual({ orchestratorCalls: 0, holds: 0, resources: 0 });
    expect((await deployments.serving(name))?.version).toBe(1);
  });

  it('deprovision stops serving at once and frees the name; suspend stops serving and keeps it', async () => {
    const agent = await agentWithToken();
    const backend = backendFor('worker-script')!;
    const suspendedName = workerName();
    const suspended = await deploy(agent, suspendedName);
    await backend.suspend!(testEnv as never, { resource_id: suspended.body.resource_id, account_id: agent.account, service: 'worker-script', plan: 'standard', fields: {} });
    expect(await deployments.serving(suspendedName)).toMatchObject({ suspended: true });

    const removedName = workerName();
    const removed = await deploy(agent, removedName);
    await backend.deprovision(testEnv as never, { resource_id: removed.body.resource_id, account_id: agent.account });
    expect(await deployments.serving(removedName)).toBeNull();
    const other = await agentWithToken();
    expect((await deploy(other, removedName)).status).toBe(201);
  });
});

// The `oap` command line against the running Workers, as an agent (or a
// developer standing in for one) would use it.
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, inject, it } from 'vitest';
import { asHuman, signIn, signUpVerified } from './support';

const urls = inject('urls');

function oap(dir: string, ...args: string[]) {
  const run = spawnSync(process.execPath, ['agent/bin/oap.mjs', ...args, '--dir', dir], { encoding: 'utf8', timeout: 60_000 });
  return { status: run.status, stdout: run.stdout, stderr: run.stderr, json: () => JSON.parse(run.stdout) as { ok: boolean; data: any; error?: { code: string; message: string } } };
}

describe('oap', () => {
  it('init, catalog, mandate, add, ls, spend, audit: one JSON envelope each, exit codes that tell refusal from failure', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'oap-cli-'));
    try {
      const help = oap(dir, '--help');
      expect(help.status).toBe(0);
      expect(help.stdout).toContain('Examples');
      expect(oap(dir, 'ls', '--json')).toMatchObject({ status: 2 });

      const init = oap(dir, 'init', '--orchestrator', urls.orchestrator, '--name', 'cli agent', '--json');
      expect(init.status, init.stderr).toBe(0);
      expect(init.json()).toMatchObject({ ok: true, data: { key_thumbprint: expect.any(String) } });
      expect(statSync(join(dir, '.oap', 'agent.json')).mode & 0o777).toBe(0o600);

      const catalog = oap(dir, 'catalog', 'domain', '--json').json();
      expect(catalog.data).toContainEqual({ provider: 'cloud', service: 'domain', plan: 'com-1y', price: { amount: 1044, currency: 'usd' }, billing: 'year' });

      const requested = oap(dir, 'mandate', 'request', '--scope', 'cloud:domain', '--scope', 'data:database', '--limit', '12', '--no-wait', '--json');
      expect(requested.status, requested.stdout + requested.stderr).toBe(0);
      const pending = requested.json().data;
      expect(pending).toMatchObject({ status: 'pending', user_code: expect.stringMatching(/^[A-Z]{4}-[A-Z]{4}$/) });

      const email = `cli-${crypto.randomUUID().slice(0, 8)}@example.test`;
      await signUpVerified(urls.orchestrator, email, 'cli test password');
      const human = await signIn(urls.orchestrator, email, 'cli test password');
      expect((await asHuman(human, 'POST', `/v1/mandates/${pending.mandate_id}/approve`, { json: { user_code: pending.user_code } })).status).toBe(200);
      const decided = oap(dir, 'mandate', 'wait', '--json');
      expect(decided.json()).toMatchObject({ ok: true, data: { status: 'active' } });

      const name = `cli-${crypto.randomUUID().slice(0, 8)}.com`;
      const added = oap(dir, 'add', 'cloud/domain', '--plan', 'com-1y', '--config', JSON.stringify({ name }), '--json');
      expect(added.status, added.stdout).toBe(0);
      expect(added.json().data).toMatchObject({ status: 'active', name });

      // $12 a month does not fit a second $10.44 domain: a refusal (exit 3) with its code.
      const refused = oap(dir, 'add', 'cloud/domain', '--plan', 'com-1y', '--config', JSON.stringify({ name: `cli-${crypto.randomUUID().slice(0, 8)}.com` }), '--json');
      expect(refused.status).toBe(3);
      expect(refused.json()).toMatchObject({ ok: false, error: { code: 'spend_limit_exceeded' } });
      const bad = oap(dir, 'add', 'cloud/domain', '--plan', 'com-1y', '--config', '{not json', '--json');
      expect(bad.status).toBe(2);

      const listed = oap(dir, 'ls', '--json');
      expect(listed.status, listed.stdout + listed.stderr).toBe(0);
      expect(listed.json().data).toContainEqual(expect.objectContaining({ provider: 'cloud', service: 'domain', name }));
      expect(oap(dir, 'spend', '--json').json().data).toContainEqual(expect.objectContaining({ provider: 'cloud', spent: { amount: 1044, currency: 'usd' } }));
      const audit = oap(dir, 'audit', '--json').json();
      expect(audit.data.map((e: { action: string }) => e.action)).toEqual(expect.arrayContaining(['mandate.request', 'attestation.issue']));
      expect(oap(dir, 'spend').stdout).toContain('$10.44');

      // The yearly domain outlives the 30-day mandate unless it is extended: the same terms for longer, superseding it.
      expect(oap(dir, 'mandate', 'extend', '--days', '0', '--json').status).toBe(2);
      const extended = oap(dir, 'mandate', 'extend', '--days', '90', '--no-wait', '--json');
      expect(extended.status, extended.stdout + extended.stderr).toBe(0);
      const extension = extended.json().data;
      expect(extension).toMatchObject({ status: 'pending', supersedes: pending.mandate_id, spend_limit: { amount: 1200 } });
      expect((await asHuman(human, 'POST', `/v1/mandates/${extension.mandate_id}/approve`, { json: { user_code: extension.user_code } })).status).toBe(200);
      expect(oap(dir, 'mandate', 'wait', '--json').json()).toMatchObject({ ok: true, data: { mandate_id: extension.mandate_id, status: 'active' } });
      // Its resources and spend carry over: the chain is one mandate to its limit.
      expect(oap(dir, 'ls', '--json').json().data).toContainEqual(expect.objectContaining({ name }));
      // The agent asks for a year, and so does the human from the dashboard (its API here), who approves their own: the
      // agent's is denied, and waiting on it answers with the human's, now the mandate in force.
      expect(oap(dir, 'mandate', 'extend', '--no-wait', '--json').status).toBe(0);
      const byHuman = (await (await asHuman(human, 'POST', `/v1/mandates/${extension.mandate_id}/extend`, { json: { days: 365 } })).json()) as { mandate_id: string };
      expect((await asHuman(human, 'POST', `/v1/mandates/${byHuman.mandate_id}/approve`, { json: {} })).status).toBe(200);
      expect(oap(dir, 'mandate', 'wait', '--json').json()).toMatchObject({ ok: true, data: { mandate_id: byHuman.mandate_id, status: 'active' } });
      expect(JSON.parse(readFileSync(join(dir, '.oap', 'agent.json'), 'utf8'))).toMatchObject({ mandate_id: byHuman.mandate_id });
      expect(JSON.parse(readFileSync(join(dir, '.oap', 'agent.json'), 'utf8'))).not.toHaveProperty('pending_successor');
      expect(oap(dir, 'ls', '--json').json().data).toContainEqual(expect.objectContaining({ name }));
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('keeps credentials out of its output: env pull writes them to .env (0600), rotate replaces them, rm and down remove everything', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'oap-cli-'));
    try {
      oap(dir, 'init', '--orchestrator', urls.orchestrator, '--json');
      const pending = oap(dir, 'mandate', 'request', '--scope', 'cloud:domain', '--scope', 'data:database', '--limit', '30', '--no-wait', '--json').json().data;
      const email = `cli-env-${crypto.randomUUID().slice(0, 8)}@example.test`;
      await signUpVerified(urls.orchestrator, email, 'cli test password');
      const human = await signIn(urls.orchestrator, email, 'cli test password');
      expect((await asHuman(human, 'POST', `/v1/mandates/${pending.mandate_id}/approve`, { json: { user_code: pending.user_code } })).status).toBe(200);
      expect(oap(dir, 'mandate', 'wait', '--json').json().data.status).toBe('active');

      const dbName = `envdb${crypto.randomUUID().slice(0, 6)}`;
      const added = oap(dir, 'add', 'data/database', '--plan', 'free', '--config', JSON.stringify({ name: dbName }), '--json');
      expect(added.status, added.stdout + added.stderr).toBe(0);
      const database = added.json().data;
      expect(database).toMatchObject({ status: 'active', credentials_redacted: true });
      expect(database.credentials).toBeUndefined();
      expect(statSync(join(dir, '.oap', 'credentials.json')).mode & 0o777).toBe(0o600);
      const token = () => (JSON.parse(readFileSync(join(dir, '.oap', 'credentials.json'), 'utf8')) as Record<string, { credentials: { token: string } }>)[database.resource_id]!.credentials.token;
      const firstToken = token();
      expect(added.stdout).not.toContain(firstToken);

      const domainName = `cli-env-${crypto.randomUUID().slice(0, 8)}.com`;
      expect(oap(dir, 'add', 'cloud/domain', '--plan', 'com-1y', '--config', JSON.stringify({ name: domainName }), '--json').status).toBe(0);

      // .env keeps the developer's own lines; the oap block holds the credentials.
      writeFileSync(join(dir, '.env'), 'MY_OWN=1\n');
      const pulled = oap(dir, 'env', 'pull', '--json');
      expect(pulled.status, pulled.stdout).toBe(0);
      expect(pulled.stdout).not.toContain(firstToken);
      const variable = `DATABASE_${dbName.toUpperCase()}_TOKEN`;
      expect(pulled.json().data.variables).toContainEqual({ name: variable, resource_id: database.resource_id });
      expect(statSync(join(dir, '.env')).mode & 0o777).toBe(0o600);
      const env = readFileSync(join(dir, '.env'), 'utf8');
      expect(env).toContain('MY_OWN=1');
      expect(env).toContain(`${variable}="${firstToken}"`);

      const rotated = oap(dir, 'rotate', database.resource_id, '--json');
      expect(rotated.status, rotated.stdout).toBe(0);
      expect(rotated.json().data).toMatchObject({ resource_id: database.resource_id, credentials_redacted: true });
      expect(token()).not.toBe(firstToken);
      expect(rotated.stdout).not.toContain(token());
      oap(dir, 'env', 'pull');
      const envAfter = readFileSync(join(dir, '.env'), 'utf8');
      expect(envAfter).toContain(`${variable}="${token()}"`);
      expect(envAfter).not.toContain(firstToken);
      expect(envAfter.match(/# >>> oap/g)).toHaveLength(1);

      const removed = oap(dir, 'rm', database.resource_id, '--json');
      expect(removed.json()).toMatchObject({ ok: true, data: { provider: 'data', status: 'deleted' } });
      const down = oap(dir, 'down', '--json');
      expect(down.status, down.stdout).toBe(0);
      expect(down.json().data.removed).toEqual([expect.objectContaining({ provider: 'cloud', service: 'domain', status: 'deleted', name: domainName })]);
      const left = oap(dir, 'ls', '--json').json().data as { status: string }[];
      expect(left.length).toBeGreaterThanOrEqual(2);
      expect(left.every((r) => r.status === 'deleted')).toBe(true);
      expect(oap(dir, 'down', '--json').json().data).toEqual({ removed: [], failed: [] });
      // A deleted resource's credentials leave .env at the next pull.
      oap(dir, 'env', 'pull');
      expect(readFileSync(join(dir, '.env'), 'utf8')).not.toContain(variable);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }, 90_000);

  it('answers each refusal with its code in the envelope: exit 3 for what a human can lift, 4 for a rejected request', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'oap-cli-'));
    try {
      oap(dir, 'init', '--orchestrator', urls.orchestrator, '--json');
      const pending = oap(dir, 'mandate', 'request', '--scope', 'cloud:domain', '--limit', '12', '--no-wait', '--json').json().data;
      const email = `cli-codes-${crypto.randomUUID().slice(0, 8)}@example.test`;
      await signUpVerified(urls.orchestrator, email, 'cli test password');
      const human = await signIn(urls.orchestrator, email, 'cli test password');
      expect((await asHuman(human, 'POST', `/v1/mandates/${pending.mandate_id}/approve`, { json: { user_code: pending.user_code } })).status).toBe(200);
      expect(oap(dir, 'mandate', 'wait', '--json').json().data.status).toBe('active');

      const add = (target: string, plan: string, config: unknown) => oap(dir, 'add', target, '--plan', plan, '--config', JSON.stringify(config), '--json');
      const expectRefused = (run: ReturnType<typeof oap>, exit: number, code: string) => {
        expect({ exit: run.status, envelope: run.json() }, run.stderr).toMatchObject({ exit, envelope: { ok: false, error: { code, message: expect.any(String) } } });
      };
      const taken = `cli-codes-${crypto.randomUUID().slice(0, 8)}.com`;
      expect(add('cloud/domain', 'com-1y', { name: taken }).status).toBe(0);

      expectRefused(add('cloud/domain', 'com-1y', { name: 'paypal.com' }), 3, 'domain_protected');
      expectRefused(add('cloud/worker-script', 'standard', { name: 'not-allowed', module: 'export default { fetch() { return new Response("x") } }' }), 3, 'insufficient_scope');
      expectRefused(add('cloud/domain', 'com-1y', { name: `cli-codes-${crypto.randomUUID().slice(0, 8)}.com` }), 3, 'spend_limit_exceeded');
      expectRefused(add('cloud/domain', 'com-1y', { name: taken }), 4, 'domain_unavailable');
      expectRefused(add('cloud/domain', 'net-1y', { name: 'wrong-tld.com' }), 4, 'invalid_parameters');
      expectRefused(add('cloud/domain', 'com-1y', { name: 'x', extra: true }), 4, 'invalid_parameters');

      // The human revokes the mandate: the agent is refused from then on, and told so.
      expect((await asHuman(human, 'POST', `/v1/mandates/${pending.mandate_id}/revoke`, { json: {} })).status).toBe(200);
      const afterRevoke = add('cloud/domain', 'com-1y', { name: `cli-codes-${crypto.randomUUID().slice(0, 8)}.com` });
      expect(afterRevoke.status).toBe(3);
      expect(afterRevoke.json().error?.code).toMatch(/^(mandate_inactive|invalid_token)$/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }, 90_000);

  it('oap key gives the human what the dashboard needs to register the agent: its public key and a fresh proof of it', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'oap-cli-'));
    try {
      const init = oap(dir, 'init', '--orchestrator', urls.orchestrator, '--json').json().data;
      const key = oap(dir, 'key', '--json');
      expect(key.status).toBe(0);
      const { public_jwk, proof, key_thumbprint } = key.json().data;
      expect(key_thumbprint).toBe(init.key_thumbprint);
      expect(JSON.stringify(public_jwk)).not.toContain('"d"');
      const email = `cli-key-${crypto.randomUUID().slice(0, 8)}@example.test`;
      await signUpVerified(urls.orchestrator, email, 'cli test password');
      const human = await signIn(urls.orchestrator, email, 'cli test password');
      const registered = await asHuman(human, 'POST', '/v1/agents', { json: { name: 'cli agent', public_jwk }, headers: { dpop: proof } });
      expect(registered.status, await registered.clone().text()).toBe(201);
      const agentId = ((await registered.json()) as { agent_id: string }).agent_id;
      // Registered: its mandate request is its principal's at once, not a first contact from an unknown key.
      const requested = oap(dir, 'mandate', 'request', '--scope', 'cloud:domain', '--limit', '5', '--no-wait', '--json').json().data;
      expect(requested).toMatchObject({ status: 'pending', agent_id: agentId });
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

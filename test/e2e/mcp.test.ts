// `oap mcp`: the protocol's operations as MCP tools, driven by the official
// MCP client over stdio against the running Workers.
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StdioClientTransport } from '@modelcontextprotocol/sdk/client/stdio.js';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, inject, it } from 'vitest';
import { asHuman, signIn, signUpVerified } from './support';

const urls = inject('urls');

describe('oap mcp', () => {
  it('lists tools with prices, refuses paid tools without an active mandate, provisions with one', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'oap-mcp-'));
    const init = spawnSync(process.execPath, ['agent/bin/oap.mjs', 'init', '--orchestrator', urls.orchestrator, '--dir', dir], { encoding: 'utf8' });
    expect(init.status, init.stderr).toBe(0);
    const client = new Client({ name: 'test', version: '1.0.0' });
    await client.connect(new StdioClientTransport({ command: process.execPath, args: ['agent/bin/oap.mjs', 'mcp', '--dir', dir], stderr: 'pipe' }));
    try {
      const { tools } = await client.listTools();
      expect(tools.map((t) => t.name).sort()).toEqual(['audit', 'catalog', 'extend_mandate', 'list_resources', 'mandate_status', 'provision', 'remove_resource', 'request_mandate', 'spend', 'teardown']);
      const provision = tools.find((t) => t.name === 'provision')!;
      expect(provision.description).toContain('PAID');
      expect(provision.description).toContain('cloud/domain com-1y: $10.44');
      expect(provision.inputSchema.properties).toHaveProperty('service');
      expect(provision.inputSchema.properties).toHaveProperty('expected_price');

      const early = await client.callTool({ name: 'provision', arguments: { provider: 'cloud', service: 'domain', plan: 'com-1y', parameters: { name: 'too-early.com' } } });
      expect(early.isError).toBe(true);
      expect(JSON.stringify(early.content)).toContain('mandate_inactive');

      const requested = await client.callTool({
        name: 'request_mandate',
        arguments: { scope: [{ provider: 'cloud', services: ['domain'] }], monthly_limit_dollars: 30, days: 30, description: 'An MCP agent’s domain' },
      });
      const pending = (requested.structuredContent as { data: { mandate_id: string; user_code: string } }).data;
      const email = `mcp-${crypto.randomUUID().slice(0, 8)}@example.test`;
      await signUpVerified(urls.orchestrator, email, 'mcp test password');
      const human = await signIn(urls.orchestrator, email, 'mcp test password');
      expect((await asHuman(human, 'POST', `/v1/mandates/${pending.mandate_id}/approve`, { json: { user_code: pending.user_code } })).status).toBe(200);

      const name = `mcp-${crypto.randomUUID().slice(0, 8)}.com`;
      const done = await client.callTool({ name: 'provision', arguments: { provider: 'cloud', service: 'domain', plan: 'com-1y', parameters: { name } } });
      expect(done.isError ?? false).toBe(false);
      expect((done.structuredContent as { data: Record<string, unknown> }).data).toMatchObject({ status: 'active', name });
      const spend = await client.callTool({ name: 'spend', arguments: {} });
      expect(JSON.stringify(spend.structuredContent)).toContain('"amount":1044');

      // A yearly domain outlives a 30-day mandate: extended, the same terms for 90 days, in force once the human approves.
      const extended = await client.callTool({ name: 'extend_mandate', arguments: { days: 90 } });
      const successor = (extended.structuredContent as { data: { mandate_id: string; user_code: string; supersedes: string } }).data;
      expect(successor.supersedes).toBe(pending.mandate_id);
      const meanwhile = await client.callTool({ name: 'mandate_status', arguments: {} });
      expect((meanwhile.structuredContent as { data: Record<string, any> }).data).toMatchObject({ mandate_id: pending.mandate_id, status: 'active', pending_successor: { mandate_id: successor.mandate_id } });
      expect((await asHuman(human, 'POST', `/v1/mandates/${successor.mandate_id}/approve`, { json: { user_code: successor.user_code } })).status).toBe(200);
      const after = await client.callTool({ name: 'mandate_status', arguments: {} });
      expect((after.structuredContent as { data: Record<string, any> }).data).toMatchObject({ mandate_id: successor.mandate_id, status: 'active' });
      // The agent asks for a year, and so does the human from the dashboard (its API here), who approves their own: the
      // server's next read adopts the human's as the mandate in force, and the agent's, denied, is no longer pending.
      await client.callTool({ name: 'extend_mandate', arguments: { days: 365 } });
      const byHuman = (await (await asHuman(human, 'POST', `/v1/mandates/${successor.mandate_id}/extend`, { json: { days: 365 } })).json()) as { mandate_id: string };
      expect((await asHuman(human, 'POST', `/v1/mandates/${byHuman.mandate_id}/approve`, { json: {} })).status).toBe(200);
      const adopted = (await client.callTool({ name: 'mandate_status', arguments: {} })).structuredContent as { data: Record<string, any> };
      expect(adopted.data).toMatchObject({ mandate_id: byHuman.mandate_id, status: 'active', supersedes: successor.mandate_id });
      expect(adopted.data).not.toHaveProperty('pending_successor');

      const torn = await client.callTool({ name: 'teardown', arguments: {} });
      expect(torn.isError ?? false).toBe(false);
      expect((torn.structuredContent as { data: { removed: Record<string, unknown>[]; failed: unknown[] } }).data).toMatchObject({ removed: [{ provider: 'cloud', status: 'deleted', name }], failed: [] });
      const gone = await client.callTool({ name: 'remove_resource', arguments: { provider: 'cloud', resource_id: 'not-a-resource' } });
      expect(gone.isError).toBe(true);
    } finally {
      await client.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

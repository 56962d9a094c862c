// The main job, end to end (README "A session"): an agent starts from nothing
// with `oap`, its human approves in a browser, and in one session resources
// come up at two providers under one $20 limit, a Worker answers at its URL,
// credentials reach .env and nowhere else, a purchase past the limit is refused
// with the step-up URL, and `oap down` leaves nothing behind.
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium } from 'playwright-core';
import { describe, expect, inject, it } from 'vitest';
import { signUpVerified } from './support';

const urls = inject('urls');
const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';
const PASSWORD = 'session test password';

type Envelope = { ok: boolean; data: any; error?: { code: string; message: string } };

function oap(dir: string, ...args: string[]) {
  const run = spawnSync(process.execPath, ['agent/bin/oap.mjs', ...args, '--dir', dir], { encoding: 'utf8', timeout: 90_000 });
  return { status: run.status, stdout: run.stdout, stderr: run.stderr, json: () => JSON.parse(run.stdout) as Envelope };
}

/** `oap mandate request` as a person runs it: it prints where to approve, then waits for the decision. */
function requestMandate(dir: string, ...args: string[]) {
  const child = spawn(process.execPath, ['agent/bin/oap.mjs', 'mandate', 'request', ...args, '--dir', dir]);
  let stderr = '';
  let stdout = '';
  child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
  const exited = new Promise<number | null>((resolve) => child.on('exit', resolve));
  const prompt = (async () => {
    for (let i = 0; i < 300; i++) {
      const match = /open (\S+)\nand type the code ([A-Z]{4}-[A-Z]{4})/.exec(stderr);
      if (match) return { url: match[1]!, code: match[2]! };
      await new Promise((r) => setTimeout(r, 100));
    }
    throw new Error(`oap mandate request printed no approval URL: ${stderr}`);
  })();
  return { prompt, exited, output: () => ({ stdout, stderr }) };
}

const WORKER = `export default {
  async fetch(request) {
    return Response.json({ hello: 'from the agent', path: new URL(request.url).pathname });
  },
};`;

describe('one session across two providers', () => {
  it('init, mandate approved in a browser, domain + Worker + database, env pull, spend, a refusal past the limit, down', { timeout: 300_000 }, async () => {
    expect(existsSync(CHROMIUM), `Chromium is needed at ${CHROMIUM}`).toBe(true);
    const dir = mkdtempSync(join(tmpdir(), 'oap-session-'));
    const browser = await chromium.launch({ executablePath: CHROMIUM });
    try {
      expect(oap(dir, 'init', '--orchestrator', urls.orchestrator, '--name', 'launch agent').status).toBe(0);

      // The agent asks; the human signs in, types the code and approves in the browser.
      const mandate = requestMandate(dir, '--scope', 'cloud:domain,worker-script', '--scope', 'data:database', '--limit', '20', '--description', 'Launch the product site');
      const { url, code } = await mandate.prompt;
      const email = `session-${crypto.randomUUID().slice(0, 8)}@example.test`;
      await signUpVerified(urls.orchestrator, email, PASSWORD);
      const page = await (await browser.newContext({ javaScriptEnabled: false })).newPage();
      await page.goto(url);
      if (page.url().includes('/sign-in')) {
        await page.getByLabel('Email').fill(email);
        await page.getByLabel('Password').fill(PASSWORD);
        await page.getByRole('button', { name: 'Sign in' }).click();
      }
      await page.getByLabel('Code').fill(code);
      await page.getByRole('button', { name: 'Continue' }).click();
      expect(await page.locator('main').textContent()).toContain('Launch the product site');
      await page.getByRole('button', { name: 'Approve' }).click();
      expect(await page.locator('main').textContent()).toContain('You approved up to $20.00 a month');
      expect(await mandate.exited, JSON.stringify(mandate.output())).toBe(0);
      expect(mandate.output().stdout).toContain('is active: up to $20.00 a month');

      // A domain at cloud.
      const domainName = `launch-${crypto.randomUUID().slice(0, 8)}.com`;
      const domain = oap(dir, 'add', 'cloud/domain', '--plan', 'com-1y', '--config', JSON.stringify({ name: domainName }), '--json');
      expect(domain.status, domain.stdout + domain.stderr).toBe(0);
      expect(domain.json().data).toMatchObject({ service: 'domain', status: 'active', name: domainName });

      // A Worker at cloud, answering at its own URL.
      const workerName = `launch-${crypto.randomUUID().slice(0, 8)}`;
      const worker = oap(dir, 'add', 'cloud/worker-script', '--plan', 'standard', '--config', JSON.stringify({ name: workerName, module: WORKER }), '--json');
      expect(worker.status, worker.stdout + worker.stderr).toBe(0);
      const workerUrl = String(worker.json().data.url);
      expect(workerUrl.startsWith(urls.runner)).toBe(true);
      const answer = await fetch(`${workerUrl}hello`);
      expect(answer.status).toBe(200);
      expect(await answer.json()).toEqual({ hello: 'from the agent', path: `/${workerName}/hello` });

      // A database at data, provisioned asynchronously.
      const database = oap(dir, 'add', 'data/database', '--plan', 'free', '--config', JSON.stringify({ name: 'launchdb' }), '--json');
      expect(database.status, database.stdout + database.stderr).toBe(0);
      const db = database.json().data;
      expect(db).toMatchObject({ service: 'database', status: 'active', credentials_redacted: true, operation_id: expect.stringMatching(/^op_/) });

      // Credentials reach .env (0600), and work.
      const pulled = oap(dir, 'env', 'pull', '--json');
      expect(pulled.json().data.variables.map((v: { name: string }) => v.name).sort()).toEqual(['DATABASE_LAUNCHDB_TOKEN', 'DATABASE_LAUNCHDB_URL']);
      expect(statSync(join(dir, '.env')).mode & 0o777).toBe(0o600);
      const env = Object.fromEntries(
        readFileSync(join(dir, '.env'), 'utf8')
          .split('\n')
          .filter((l) => /^[A-Z_]+=/.test(l))
          .map((l) => [l.slice(0, l.indexOf('=')), JSON.parse(l.slice(l.indexOf('=') + 1)) as string]),
      );
      expect(pulled.stdout).not.toContain(env.DATABASE_LAUNCHDB_TOKEN);
      const query = await fetch(`${env.DATABASE_LAUNCHDB_URL}/query`, {
        method: 'POST',
        headers: { authorization: `Bearer ${env.DATABASE_LAUNCHDB_TOKEN}`, 'content-type': 'application/json' },
        body: JSON.stringify({ sql: 'SELECT 1 + 1 AS two' }),
      });
      expect(query.status).toBe(200);
      expect(await query.json()).toMatchObject({ columns: ['two'], rows: [[2]] });

      // Spend, against each limit, summed across providers.
      const spend = oap(dir, 'spend', '--json').json().data as { scope: string; provider?: string; spent: { amount: number }; limit: { amount: number } }[];
      expect(spend.find((s) => s.scope === 'mandate')).toMatchObject({ spent: { amount: 1044 }, limit: { amount: 2000 } });
      expect(spend.find((s) => s.provider === 'cloud')?.spent.amount).toBe(1044);
      expect(spend.find((s) => s.provider === 'data')?.spent.amount).toBe(0);
      expect(oap(dir, 'spend').stdout).toContain('mandate  $10.44 of $20.00 this month');

      // A second domain would cross the $20 limit: refused (exit 3), with where the human can approve more.
      const refused = oap(dir, 'add', 'cloud/domain', '--plan', 'com-1y', '--config', JSON.stringify({ name: `launch-${crypto.randomUUID().slice(0, 8)}.com` }));
      expect(refused.status).toBe(3);
      expect(refused.stderr).toMatch(new RegExp(`A human can approve more at ${urls.orchestrator}/\\S+`));

      // Down: everything the project provisioned, at every provider.
      const down = oap(dir, 'down', '--json');
      expect(down.status, down.stdout).toBe(0);
      expect(down.json().data.removed.map((r: { service: string }) => r.service).sort()).toEqual(['database', 'domain', 'worker-script']);
      expect((oap(dir, 'ls', '--json').json().data as { status: string }[]).every((r) => r.status === 'deleted')).toBe(true);
      expect((await fetch(`${workerUrl}hello`)).status).toBe(404);
      const afterDown = await fetch(`${env.DATABASE_LAUNCHDB_URL}/query`, {
        method: 'POST',
        headers: { authorization: `Bearer ${env.DATABASE_LAUNCHDB_TOKEN}`, 'content-type': 'application/json' },
        body: JSON.stringify({ sql: 'SELECT 1' }),
      });
      expect([401, 404]).toContain(afterDown.status);
    } finally {
      await browser.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

// `oap`: the agent's command line, a thin layer over agent/sdk.ts, in the
// manner of the CLIs agents already use. Every command takes --json and then
// prints one envelope: {"ok": true, "data": …} or {"ok": false, "error": {"code", "message"}}.
// Exit codes: 0 done, 1 failure, 2 usage, 3 refused (a limit, a mandate, a human's decision),
// 4 rejected (the request itself: parameters, a name that is taken or protected, a changed price).
import { chmod, mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { agentKeyFromJwk, dpopProof, generateAgentKey, OapClient, OapError, suspensionInWords, type Mandate } from './sdk';
import { mcpServer } from './mcp';
import { formatMoney } from '../workers/lib/pages/format';
import { describe as describeEvidence, pinsFrom, verifyEvidence } from './verify-evidence';

/** The agent's key, its orchestrator, the mandate in force, and one asked for to supersede it (until the human decides). */
type State = { orchestrator: string; private_jwk: Record<string, unknown>; name: string; mandate_id?: string; pending_successor?: string };

const HELP = `oap — provision infrastructure as an agent, paid through your human's orchestrator

Usage: oap <command> [options]

Commands
  init --orchestrator <url> [--name <name>]   create this agent's key (.oap/agent.json, mode 0600)
  key                                         this agent's public key, and a proof of it for the human's
                                              dashboard (Agents → Register), valid for a minute
  catalog [filter]                            services and prices at every provider
  mandate request --scope <p:s,s> [--scope …] --limit <dollars> [--days N] [--description …] [--no-wait]
                                              ask the human; prints the approval URL and code, waits for the decision
  mandate extend [--days N] [--no-wait]       ask for the same mandate for another N days (a year unless told),
                                              superseding it, so that recurring plans renew past its end
  mandate wait                                wait for the pending mandate's decision
  add <provider>/<service> --plan <id> [--config '<json>']
                                              provision a resource (paid, signed, idempotent)
  ls                                          resources at every provider of the mandate
  env pull [--file .env]                      write this project's credentials to .env (mode 0600)
  rotate <resource_id>                        new credentials for a resource (the old ones stop working)
  rm <resource_id>                            deprovision one resource
  down                                        remove everything the project provisioned, at every provider
  spend                                       spend this period at every provider of the mandate
  audit                                       this agent's own audit trail
  verify-evidence <file> [--orchestrator-jwks <file|url>] [--provider-jwks <file|url>]
                                              re-verify a dispute's evidence bundle offline; with the
                                              parties' published keys pinned, a bundle signed by others fails
  mcp                                         serve these operations as MCP tools on stdio

Exit codes
  0 done   1 failure (network, server)   2 usage   3 refused: a limit, a mandate, a human's decision
  4 rejected: the request itself (invalid parameters, a name taken or protected, a changed price)

Options
  --json        one JSON envelope on stdout: {"ok": true, "data": …} or {"ok": false, "error": {"code", "message"}}
  --dir <path>  where .oap/ lives (default: the current directory)
  --help        this text

Examples
  oap init --orchestrator http://127.0.0.1:8787
  oap mandate request --scope cloud:domain,worker-script --scope data:database --limit 50
  oap add cloud/domain --plan com-1y --config '{"name":"example-site.com"}'
  oap add data/database --plan free --config '{"name":"app-db"}'
  oap env pull && cat .env
  oap down --json
`;

class UsageError extends Error {}

async function loadState(dir: string): Promise<State> {
  try {
    return JSON.parse(await readFile(join(dir, '.oap', 'agent.json'), 'utf8')) as State;
  } catch {
    throw new UsageError('No agent here: run `oap init --orchestrator <url>` first.');
  }
}

async function saveState(dir: string, state: State) {
  await mkdir(join(dir, '.oap'), { recursive: true, mode: 0o700 });
  const path = join(dir, '.oap', 'agent.json');
  await writeFile(path, JSON.stringify(state, null, 2), { mode: 0o600 });
  await chmod(path, 0o600);
}

/**
 * Credentials are shown by a provider once (PROTOCOL.md §3.1), so the CLI
 * keeps them where only this user can read them, and prints none of them:
 * `oap env pull` writes them to a .env file when asked.
 */
type StoredCredentials = Record<string, { provider: string; service: string; name: string; credentials: Record<string, unknown> }>;

const credentialsPath = (dir: string) => join(dir, '.oap', 'credentials.json');

async function loadCredentials(dir: string): Promise<StoredCredentials> {
  try {
    return JSON.parse(await readFile(credentialsPath(dir), 'utf8')) as StoredCredentials;
  } catch {
    return {};
  }
}

async function saveCredentials(dir: string, stored: StoredCredentials) {
  await mkdir(join(dir, '.oap'), { recursive: true, mode: 0o700 });
  await writeFile(credentialsPath(dir), JSON.stringify(stored, null, 2), { mode: 0o600 });
  await chmod(credentialsPath(dir), 0o600);
}

/** Keeps a resource's credentials (if it returned any) and gives back the resource without them. */
async function keepCredentials(dir: string, provider: string, resource: Record<string, any>) {
  const { credentials, ...shown } = resource;
  if (!credentials) return shown;
  const stored = await loadCredentials(dir);
  stored[String(resource.resource_id)] = { provider, service: String(resource.service), name: String(resource.name ?? resource.resource_id), credentials };
  await saveCredentials(dir, stored);
  return { ...shown, credentials_redacted: true };
}

const ENV_BEGIN = '# >>> oap: credentials of this project’s resources (oap env pull)';
const ENV_END = '# <<< oap';

const envName = (...parts: string[]) => parts.join('_').toUpperCase().replace(/[^A-Z0-9]+/g, '_').replace(/^_+|_+$/g, '');

/** The .env with the oap block replaced (moved to the end), every other line kept. */
function withEnvBlock(existing: string, lines: string[]): string {
  const start = existing.indexOf(ENV_BEGIN);
  const end = start === -1 ? -1 : existing.indexOf(ENV_END, start);
  const before = start === -1 ? existing : existing.slice(0, start);
  const after = end === -1 ? '' : existing.slice(end + ENV_END.length).replace(/^\n/, '');
  const kept = (before + after).replace(/\n*$/, '');
  const block = [ENV_BEGIN, ...lines, ENV_END].join('\n');
  return kept ? `${kept}\n\n${block}\n` : `${block}\n`;
}

async function clientOf(state: State) {
  return new OapClient({ orchestrator: state.orchestrator, key: await agentKeyFromJwk(state.private_jwk), agentName: state.name });
}

function mandateOf(state: State): string {
  if (!state.mandate_id) throw new UsageError('No mandate yet: run `oap mandate request …` first.');
  return state.mandate_id;
}

/**
 * The mandate in force (OapClient.mandateInForce), kept as the state's if the one kept was superseded meanwhile (an
 * extension the human asked for from the dashboard): a successor still pending superseded the same mandate, and so
 * can no longer be approved.
 */
async function adoptMandateInForce(dir: string, state: State, client: OapClient, kept: string | Mandate = mandateOf(state)): Promise<Mandate> {
  const mandate = await client.mandateInForce(kept);
  if (mandate.mandate_id !== mandateOf(state)) {
    const { pending_successor: _moot, ...rest } = state;
    await saveState(dir, { ...rest, mandate_id: mandate.mandate_id });
  }
  return mandate;
}

/** A spinner on stderr while something waits (never on stdout, which may be JSON). */
function progress(json: boolean) {
  const frames = ['⠋', '⠙', '⠹', '⠸', '⠼', '⠴', '⠦', '⠧', '⠇', '⠏'];
  let i = 0;
  return (text: string) => {
    if (json || !process.stderr.isTTY) return;
    process.stderr.write(`\r${frames[i++ % frames.length]} ${text}   `);
  };
}

function scopeOf(specs: string[]) {
  return specs.map((spec) => {
    const [provider, services] = spec.split(':');
    if (!provider || !services) throw new UsageError(`--scope takes provider:service,service (got ${spec})`);
    return { provider, services: services.split(',').filter(Boolean) };
  });
}

const days = (text: string | undefined, fallback: number) => {
  if (text === undefined) return fallback;
  if (!/^[1-9]\d{0,2}$/.test(text) || Number(text) > 365) throw new UsageError('--days takes a whole number of days, 1 to 365');
  return Number(text);
};

const dollars = (text: string | undefined, flag: string) => {
  if (!text || !/^\d+(\.\d{1,2})?$/.test(text)) throw new UsageError(`${flag} takes an amount in dollars, such as 50 or 12.50`);
  return Math.round(Number(text) * 100);
};

/** The provider holding a resource the CLI has no record of: asked of every provider in the mandate's scope. */
async function providerOf(client: OapClient, mandate: Mandate, resourceId: string): Promise<string> {
  for (const provider of new Set((mandate.scope as { provider: string }[]).map((s) => s.provider))) {
    if ((await client.resources(mandate.mandate_id, provider)).some((r) => r.resource_id === resourceId)) return provider;
  }
  throw new OapError(404, 'not_found', `No resource ${resourceId} at any provider of this mandate.`);
}

export async function run(argv: string[]): Promise<{ code: number; data?: unknown; text?: string }> {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: {
      json: { type: 'boolean', default: false },
      help: { type: 'boolean', default: false },
      dir: { type: 'string', default: process.cwd() },
      orchestrator: { type: 'string' },
      name: { type: 'string' },
      scope: { type: 'string', multiple: true },
      limit: { type: 'string' },
      days: { type: 'string' },
      description: { type: 'string' },
      'no-wait': { type: 'boolean', default: false },
      plan: { type: 'string' },
      config: { type: 'string' },
      file: { type: 'string' },
      'orchestrator-jwks': { type: 'string' },
      'provider-jwks': { type: 'string' },
    },
  });
  const [command, sub, ...rest] = positionals;
  const dir = values.dir!;
  if (values.help || !command) return { code: command || values.help ? 0 : 2, text: HELP };
  const tick = progress(values.json!);

  switch (command) {
    case 'init': {
      if (!values.orchestrator) throw new UsageError('init needs --orchestrator <url>');
      const { privateJwk, key } = await generateAgentKey();
      await saveState(dir, { orchestrator: values.orchestrator.replace(/\/+$/, ''), private_jwk: privateJwk as Record<string, unknown>, name: values.name ?? 'oap agent' });
      return { code: 0, data: { orchestrator: values.orchestrator, key_thumbprint: key.thumbprint }, text: `Agent key created (${key.thumbprint}), kept in .oap/agent.json (0600).` };
    }
    case 'key': {
      const state = await loadState(dir);
      const key = await agentKeyFromJwk(state.private_jwk);
      // What the dashboard's registration form asks for: the public key, and a DPoP proof for POST /v1/agents.
      const proof = await dpopProof(key, 'POST', `${state.orchestrator}/v1/agents`);
      return {
        code: 0,
        data: { public_jwk: key.publicJwk, key_thumbprint: key.thumbprint, proof },
        text: `Public key (JWK):\n${JSON.stringify(key.publicJwk)}\n\nProof of possession (valid for a minute):\n${proof}\n\nPaste both at ${state.orchestrator}/dashboard/agents.`,
      };
    }
    case 'catalog': {
      const client = await clientOf(await loadState(dir));
      const filter = sub?.toLowerCase();
      const rows = (await client.catalogs()).flatMap((c) =>
        c.services.flatMap((s) =>
          (s.plans as { id: string; price: { amount: number; currency: string }; billing: string }[]).map((p) => ({ provider: c.provider, service: s.id as string, plan: p.id, price: p.price, billing: p.billing })),
        ),
      );
      const shown = filter ? rows.filter((r) => `${r.provider}/${r.service}/${r.plan}`.includes(filter)) : rows;
      return { code: 0, data: shown, text: shown.map((r) => `${`${r.provider}/${r.service}`.padEnd(24)} ${r.plan.padEnd(10)} $${(r.price.amount / 100).toFixed(2)} ${r.billing}`).join('\n') };
    }
    case 'mandate': {
      const state = await loadState(dir);
      const client = await clientOf(state);
      const askHuman = (pending: { approval_url: string; user_code?: string }) => {
        if (!values.json) process.stderr.write(`Ask your human to open ${pending.approval_url}\nand type the code ${pending.user_code}\n`);
      };
      if (sub === 'request') {
        const pending = await client.requestMandate({
          description: values.description ?? 'Provisioning for my project',
          scope: scopeOf(values.scope ?? []),
          spend_limit: { amount: dollars(values.limit, '--limit'), currency: 'usd', period: 'month' },
          expires_at: new Date(Date.now() + days(values.days, 30) * 86_400_000).toISOString(),
        });
        // A new mandate, not a successor: one asked for to supersede the old is forgotten.
        const { pending_successor: _forgotten, ...rest } = state;
        await saveState(dir, { ...rest, mandate_id: pending.mandate_id });
        askHuman(pending);
        if (values['no-wait']) return { code: 0, data: pending, text: `Mandate ${pending.mandate_id} is pending.` };
      } else if (sub === 'extend') {
        // The same terms for another --days (a year unless told). The mandate in force stays so until the human approves.
        const extended = await adoptMandateInForce(dir, state, client);
        const pending = await client.extendMandate(extended, { days: days(values.days, 365), ...(values.description ? { description: values.description } : {}) });
        await saveState(dir, { ...state, mandate_id: extended.mandate_id, pending_successor: pending.mandate_id });
        askHuman(pending);
        if (values['no-wait']) return { code: 0, data: pending, text: `Mandate ${pending.mandate_id}, superseding ${extended.mandate_id}, is pending.` };
      } else if (sub !== 'wait') throw new UsageError('mandate takes request, extend or wait');
      const current = await loadState(dir);
      const kept = mandateOf(current);
      const successor = current.pending_successor;
      /** The mandate kept, read now, was superseded: the mandate in force at the end of its links is the answer. */
      const inForce = async (superseded: Mandate) => {
        const mandate = await adoptMandateInForce(dir, current, client, superseded);
        const text = `Mandate ${mandate.mandate_id} is ${mandate.status} until ${mandate.expires_at}, superseding ${kept}.`;
        return { code: mandate.status === 'active' ? 0 : 3, data: mandate, text };
      };
      // The mandate kept was superseded meanwhile (the successor asked for was approved, or the human extended it
      // from the dashboard, which makes that successor moot): nothing to wait for.
      const keptNow = successor ? await client.mandate(kept) : null;
      if (keptNow?.status === 'superseded') return inForce(keptNow);
      const decided = await client.waitForDecision(successor ?? kept, { onPoll: (m) => tick(`waiting for the human (${m.status})`) });
      if (!successor && decided.status === 'superseded') return inForce(decided);
      if (successor) {
        // Denied because another superseded the mandate meanwhile (the human's own extension): that one is in force.
        const keptAfter = decided.status === 'active' ? null : await client.mandate(kept);
        if (keptAfter?.status === 'superseded') return inForce(keptAfter);
        // Approved, it is the mandate in force; otherwise the one it would have superseded still is.
        const { pending_successor: _decided, ...rest } = current;
        await saveState(dir, decided.status === 'active' ? { ...rest, mandate_id: successor } : rest);
        if (decided.status !== 'active') return { code: 3, data: decided, text: `The new mandate is ${decided.status}; ${kept} stays in force.` };
        return { code: 0, data: decided, text: `Mandate ${decided.mandate_id} is active until ${decided.expires_at}, superseding ${kept}.` };
      }
      if (decided.status !== 'active') return { code: 3, data: decided, text: `The mandate is ${decided.status}.` };
      return { code: 0, data: decided, text: `Mandate ${decided.mandate_id} is active: up to $${(decided.spend_limit.amount / 100).toFixed(2)} a month.` };
    }
    case 'add': {
      const state = await loadState(dir);
      const [provider, service] = (sub ?? '').split('/');
      if (!provider || !service || !values.plan) throw new UsageError('add takes <provider>/<service> --plan <id>');
      let parameters: Record<string, unknown> = {};
      try {
        parameters = values.config ? (JSON.parse(values.config) as Record<string, unknown>) : {};
      } catch {
        throw new UsageError('--config takes a JSON object');
      }
      const client = await clientOf(state);
      const provisioned = await client.provision((await adoptMandateInForce(dir, state, client)).mandate_id, provider, { service, plan: values.plan, parameters }, { onProgress: (s) => tick(`provisioning (${s})`) });
      const resource = await keepCredentials(dir, provider, provisioned);
      const where = typeof resource.url === 'string' ? ` at ${resource.url}` : '';
      const secret = resource.credentials_redacted ? '\nCredentials kept in .oap/credentials.json: run `oap env pull` to write them to .env.' : '';
      return { code: 0, data: resource, text: `${resource.resource_id} ${resource.service} ${resource.status}${where} (charge ${resource.charge_id})${secret}` };
    }
    case 'env': {
      if (sub !== 'pull') throw new UsageError('env takes pull');
      const state = await loadState(dir);
      const client = await clientOf(state);
      const stored = await loadCredentials(dir);
      // Only resources that still exist: a deleted database's old token is no use to anyone.
      const mandate = await adoptMandateInForce(dir, state, client);
      const providers = [...new Set((mandate.scope as { provider: string }[]).map((s) => s.provider))];
      const live = new Set((await Promise.all(providers.map((p) => client.resources(mandate.mandate_id, p)))).flat().filter((r) => r.status === 'active' || r.status === 'suspended').map((r) => String(r.resource_id)));
      const variables: { name: string; resource_id: string }[] = [];
      const lines: string[] = [];
      for (const [resourceId, entry] of Object.entries(stored)) {
        if (!live.has(resourceId)) continue;
        for (const [key, value] of Object.entries(entry.credentials)) {
          const name = envName(entry.service, entry.name, key);
          variables.push({ name, resource_id: resourceId });
          lines.push(`${name}=${JSON.stringify(String(value))}`);
        }
      }
      const file = join(dir, values.file ?? '.env');
      const existing = await readFile(file, 'utf8').catch(() => '');
      await writeFile(file, withEnvBlock(existing, lines), { mode: 0o600 });
      await chmod(file, 0o600);
      return { code: 0, data: { file, variables }, text: `Wrote ${variables.length} variable(s) to ${file} (mode 0600): ${variables.map((v) => v.name).join(', ') || 'none'}` };
    }
    case 'rotate':
    case 'rm': {
      if (!sub?.startsWith('res_')) throw new UsageError(`${command} takes a resource id (res_…); see oap ls`);
      const state = await loadState(dir);
      const client = await clientOf(state);
      const mandate = await adoptMandateInForce(dir, state, client);
      const mandateId = mandate.mandate_id;
      const stored = await loadCredentials(dir);
      const provider = stored[sub]?.provider ?? (await providerOf(client, mandate, sub));
      if (command === 'rm') {
        const removed = await client.deprovision(mandateId, provider, sub);
        delete stored[sub];
        await saveCredentials(dir, stored);
        return { code: 0, data: { provider, ...removed }, text: `${sub} ${removed.service} ${removed.status}` };
      }
      const rotated = await keepCredentials(dir, provider, await client.rotate(mandateId, provider, sub));
      return { code: 0, data: { provider, ...rotated }, text: `${sub}: new credentials kept in .oap/credentials.json (the old ones no longer work); run \`oap env pull\`.` };
    }
    case 'down': {
      const state = await loadState(dir);
      const client = await clientOf(state);
      const { removed, failed } = await client.teardown(await adoptMandateInForce(dir, state, client), { onProgress: (step) => tick(step) });
      const stored = await loadCredentials(dir);
      for (const r of removed) delete stored[String(r.resource_id)];
      await saveCredentials(dir, stored);
      const text = [
        ...removed.map((r) => `removed ${String(r.provider).padEnd(8)} ${r.resource_id} ${r.service}`),
        ...failed.map((f) => `NOT removed ${f.provider} ${f.resource_id}: ${f.message}`),
        removed.length + failed.length === 0 ? 'Nothing to remove.' : '',
      ].filter(Boolean).join('\n');
      return { code: failed.length ? 1 : 0, data: { removed, failed }, text };
    }
    case 'ls':
    case 'spend': {
      const state = await loadState(dir);
      const client = await clientOf(state);
      const mandate = await adoptMandateInForce(dir, state, client);
      const providers = (mandate.scope as { provider: string }[]).map((s) => s.provider);
      if (command === 'ls') {
        const rows: Record<string, any>[] = (await Promise.all(providers.map(async (p) => (await client.resources(mandate.mandate_id, p)).map((r) => ({ provider: p, ...r }))))).flat();
        return { code: 0, data: rows, text: rows.map((r) => `${String(r.provider).padEnd(8)} ${r.resource_id} ${r.service}/${r.plan} ${r.status}${r.suspension ? ` (${suspensionInWords(r as never)})` : ''}`).join('\n') || 'No resources.' };
      }
      const [mandateRow, ...rows] = await client.spend(mandate);
      const text = [
        `${'mandate'.padEnd(8)} ${formatMoney(mandateRow!.spent)} of ${formatMoney(mandateRow!.limit)} this month, across providers`,
        ...rows.map((r) => `${String(r.provider).padEnd(8)} ${formatMoney(r.spent)} of ${formatMoney(r.limit)} this period (the account's limit there)`),
      ];
      return { code: 0, data: [mandateRow, ...rows], text: text.join('\n') };
    }
    case 'audit': {
      const events = await (await clientOf(await loadState(dir))).audit();
      return { code: 0, data: events, text: events.map((e) => `${String(e.seq).padStart(5)} ${e.time} ${e.action} ${e.outcome}${e.reason ? ` (${e.reason})` : ''}`).join('\n') };
    }
    case 'mcp': {
      const state = await loadState(dir);
      await mcpServer(await clientOf(state), {
        get: () => state.mandate_id,
        set: async (id) => {
          state.mandate_id = id;
          await saveState(dir, state);
        },
        successor: () => state.pending_successor,
        setSuccessor: async (id) => {
          if (id === undefined) delete state.pending_successor;
          else state.pending_successor = id;
          await saveState(dir, state);
        },
      });
      // Serves until stdin closes.
      await new Promise<void>((resolve) => process.stdin.on('close', () => resolve()));
      return { code: 0 };
    }
    case 'verify-evidence': {
      if (!sub) throw new UsageError('verify-evidence takes a file');
      const bundle = JSON.parse(await readFile(sub, 'utf8'));
      const result = await verifyEvidence(bundle, await pinsFrom(values));
      return { code: result.verdict === 'within_scope' ? 0 : 3, data: result, text: describeEvidence(bundle, result) };
    }
    default:
      void rest;
      throw new UsageError(`Unknown command ${command}. See oap --help.`);
  }
}

export async function main(argv: string[]): Promise<number> {
  const json = argv.includes('--json');
  try {
    const result = await run(argv);
    if (process.stderr.isTTY && !json) process.stderr.write('\r\x1b[K');
    if (json) process.stdout.write(`${JSON.stringify({ ok: result.code === 0, data: result.data ?? null })}\n`);
    else if (result.text) process.stdout.write(`${result.text}\n`);
    return result.code;
  } catch (error) {
    const usage = error instanceof UsageError || (error as { code?: string }).code?.startsWith('ERR_PARSE_ARGS');
    const code = error instanceof OapError ? error.code : usage ? 'usage' : 'failure';
    const message = (error as Error).message;
    if (json) process.stdout.write(`${JSON.stringify({ ok: false, error: { code, message, ...(error instanceof OapError ? { status: error.status, details: error.body } : {}) } })}\n`);
    else process.stderr.write(`oap: ${message}${error instanceof OapError && error.body.step_up_url ? `\nA human can approve more at ${String(error.body.step_up_url)}` : ''}\n`);
    if (usage) return 2;
    if (error instanceof OapError && error.isRefusal) return 3;
    if (error instanceof OapError && error.status >= 400 && error.status < 500) return 4;
    return 1;
  }
}

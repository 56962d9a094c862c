// Re-verifies a dispute's evidence bundle offline: from the bundle and public
// keys alone. Reruns the adjudicator and prints each check, so a third party
// reaches the verdict on their own, and the thumbprint of every key it relied on.
// The bundle carries its parties' keys; a reader who got them elsewhere (their
// published /.well-known/jwks.json) pins them, and a bundle re-signed with other
// keys then fails. Nothing is fetched unless a pin is given as a URL.
//
//   npm run verify-evidence -- bundle.json [--orchestrator-jwks <file|https URL>] [--provider-jwks <file|https URL>]
//   (or: npx tsx agent/verify-evidence.ts …)
//
// Exit code: 0 when the recomputed verdict is within_scope, 1 otherwise, 2 when a file cannot be read.
import { readFile } from 'node:fs/promises';
import { parseArgs } from 'node:util';
import type { JSONWebKeySet } from 'jose';
import { adjudicate, EVIDENCE_FORMATS, type Adjudication, type EvidenceBundle, type PinnedKeys } from '../workers/lib/adjudicator';

export async function verifyEvidence(bundle: EvidenceBundle, pins: PinnedKeys = {}): Promise<Adjudication> {
  if (!EVIDENCE_FORMATS.includes(bundle.format)) throw new Error(`not an evidence bundle this verifier reads (${String(bundle.format)})`);
  return adjudicate(bundle, pins);
}

export function describe(bundle: EvidenceBundle, result: Adjudication): string {
  const mark = { pass: 'ok  ', fail: 'FAIL', missing: 'MISS' } as const;
  const trust = (k: Adjudication['keys'][number]) =>
    k.party === 'agent' ? 'bound by the signed mandate' : k.pinned === null ? 'not pinned: taken from the bundle' : k.pinned ? 'pinned' : 'NOT PINNED';
  const lines = [
    `charge ${bundle.charge.charge_id}: ${bundle.charge.amount} ${bundle.charge.currency} for ${bundle.charge.service}/${bundle.charge.plan} at ${bundle.charge.provider}, agent ${bundle.charge.agent_id}, mandate ${bundle.charge.mandate_id}`,
    `format ${result.format}${result.format === 'oap-evidence/1' ? ' (no chain proof: each event is checked alone)' : ''}`,
    ...result.findings.map((f) => `  ${mark[f.result]} ${f.check.padEnd(30)} ${f.evidence}`),
    'keys relied on (RFC 7638 thumbprints):',
    ...result.keys.map((k) => `  ${k.party.padEnd(12)} ${k.thumbprint}  ${trust(k)}; for ${k.used_for.join(', ')}`),
    `verdict: ${result.verdict}${result.failing_party ? ` (failing party: ${result.failing_party})` : ''}  [${result.adjudicator}]`,
  ];
  return lines.join('\n');
}

/** A JWKS from a file, or from an https URL (plain http only to loopback, for local development). */
async function readJwks(source: string): Promise<JSONWebKeySet> {
  const url = /^https?:\/\//i.test(source) ? new URL(source) : null;
  if (url && url.protocol === 'http:' && !['127.0.0.1', 'localhost', '[::1]'].includes(url.hostname)) throw new Error(`${source}: only https, or http to loopback`);
  const text = url ? await fetchText(url) : await readFile(source, 'utf8');
  const jwks = JSON.parse(text) as { keys?: unknown };
  if (!Array.isArray(jwks.keys)) throw new Error(`${source} is not a JWKS (no "keys" array)`);
  return jwks as JSONWebKeySet;
}

async function fetchText(url: URL): Promise<string> {
  const res = await fetch(url, { redirect: 'error', signal: AbortSignal.timeout(10_000) });
  if (!res.ok) throw new Error(`${url} answered ${res.status}`);
  return res.text();
}

/** The key sets a reader pins, from the `--orchestrator-jwks` and `--provider-jwks` options (a file or a URL each). */
export async function pinsFrom(values: { 'orchestrator-jwks'?: string; 'provider-jwks'?: string }): Promise<PinnedKeys> {
  return {
    ...(values['orchestrator-jwks'] ? { orchestrator: await readJwks(values['orchestrator-jwks']) } : {}),
    ...(values['provider-jwks'] ? { provider: await readJwks(values['provider-jwks']) } : {}),
  };
}

async function main(argv: string[]): Promise<number> {
  let args: ReturnType<typeof parse>;
  try {
    args = parse(argv);
  } catch (error) {
    console.error(`${(error as Error).message}\nusage: verify-evidence <bundle.json> [--orchestrator-jwks <file|url>] [--provider-jwks <file|url>]`);
    return 2;
  }
  const path = args.positionals[0];
  if (!path) {
    console.error('usage: verify-evidence <bundle.json> [--orchestrator-jwks <file|url>] [--provider-jwks <file|url>]');
    return 2;
  }
  let bundle: EvidenceBundle;
  let pins: PinnedKeys;
  try {
    bundle = JSON.parse(await readFile(path, 'utf8')) as EvidenceBundle;
    pins = await pinsFrom(args.values);
  } catch (error) {
    console.error(`cannot read ${path} or a pinned key set: ${(error as Error).message}`);
    return 2;
  }
  let result: Adjudication;
  try {
    result = await verifyEvidence(bundle, pins);
  } catch (error) {
    console.error(`${path}: ${(error as Error).message}`);
    return 2;
  }
  console.log(describe(bundle, result));
  return result.verdict === 'within_scope' ? 0 : 1;
}

function parse(argv: string[]) {
  return parseArgs({ args: argv, allowPositionals: true, options: { 'orchestrator-jwks': { type: 'string' }, 'provider-jwks': { type: 'string' } } });
}

if (process.argv[1] && import.meta.url.endsWith(process.argv[1].split('/').at(-1)!)) {
  main(process.argv.slice(2)).then((code) => process.exit(code));
}

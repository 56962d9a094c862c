// Re-verifies a dispute's evidence bundle offline: from the bundle and the
// public keys it carries alone, nothing fetched. Reruns the adjudicator and
// prints each check, so a third party reaches the verdict on their own.
//
//   npm run verify-evidence -- bundle.json      (or: npx tsx agent/verify-evidence.ts bundle.json)
//
// Exit code: 0 when the recomputed verdict is within_scope, 1 otherwise, 2 when the file cannot be read.
import { readFile } from 'node:fs/promises';
import { adjudicate, EVIDENCE_FORMAT, type Adjudication, type EvidenceBundle } from '../workers/lib/adjudicator';

export async function verifyEvidence(bundle: EvidenceBundle): Promise<Adjudication> {
  if (bundle.format !== EVIDENCE_FORMAT) throw new Error(`not an evidence bundle (${String(bundle.format)})`);
  return adjudicate(bundle);
}

export function describe(bundle: EvidenceBundle, result: Adjudication): string {
  const mark = { pass: 'ok  ', fail: 'FAIL', missing: 'MISS' } as const;
  const lines = [
    `charge ${bundle.charge.charge_id}: ${bundle.charge.amount} ${bundle.charge.currency} for ${bundle.charge.service}/${bundle.charge.plan} at ${bundle.charge.provider}, agent ${bundle.charge.agent_id}, mandate ${bundle.charge.mandate_id}`,
    ...result.findings.map((f) => `  ${mark[f.result]} ${f.check.padEnd(30)} ${f.evidence}`),
    `verdict: ${result.verdict}${result.failing_party ? ` (failing party: ${result.failing_party})` : ''}  [${result.adjudicator}]`,
  ];
  return lines.join('\n');
}

async function main(path: string | undefined) {
  if (!path) {
    console.error('usage: verify-evidence <bundle.json>');
    return 2;
  }
  let bundle: EvidenceBundle;
  try {
    bundle = JSON.parse(await readFile(path, 'utf8')) as EvidenceBundle;
  } catch (error) {
    console.error(`cannot read ${path}: ${(error as Error).message}`);
    return 2;
  }
  const result = await verifyEvidence(bundle);
  console.log(describe(bundle, result));
  return result.verdict === 'within_scope' ? 0 : 1;
}

if (process.argv[1] && import.meta.url.endsWith(process.argv[1].split('/').at(-1)!)) {
  main(process.argv[2]).then((code) => process.exit(code));
}

// `npm run deploy:check`: bundles every Worker exactly as `wrangler deploy`
// would, without uploading, so a config or import that cannot deploy fails here.
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ROLES, ROOT } from './dev-cluster.mjs';

let failed = 0;
for (const role of ROLES) {
  const outdir = mkdtempSync(join(tmpdir(), `oap-deploy-${role.id}-`));
  const args = ['deploy', '--dry-run', '--outdir', outdir, '-c', role.config];
  if (role.env) args.push('--env', role.env);
  const result = spawnSync(join(ROOT, 'node_modules', '.bin', 'wrangler'), args, {
    cwd: ROOT,
    encoding: 'utf8',
    env: { ...process.env, WRANGLER_SEND_METRICS: 'false' },
  });
  rmSync(outdir, { recursive: true, force: true });
  const size = /Total Upload: ([^\n]+)/.exec(result.stdout)?.[1] ?? '?';
  if (result.status === 0) console.log(`ok   ${role.id.padEnd(12)} ${size}`);
  else {
    failed++;
    console.log(`FAIL ${role.id}\n${result.stdout}\n${result.stderr}`);
  }
}
process.exit(failed ? 1 : 0);

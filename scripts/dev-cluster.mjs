// Runs the three roles and the runner locally, each as its own `wrangler dev`
// process with its own port, persistence folder and .dev.vars (DESIGN.md:
// wrangler dev with several configs exposes only the first Worker on a port).
// Used by `npm start` and by the end-to-end tests.
import { spawn, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { generateSigningKeys } from './signing-key.mjs';

export const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const WRANGLER = join(ROOT, 'node_modules', '.bin', 'wrangler');

/**
 * The roles, in start order. `devVars` is where wrangler looks for the role's
 * local secrets; the runner has none, and no D1 to migrate. `probe` answers
 * once the role serves.
 */
export const ROLES = [
  { id: 'orchestrator', config: 'workers/orchestrator/wrangler.toml', env: undefined, devVars: 'workers/orchestrator/.dev.vars', offset: 0 },
  { id: 'cloud', config: 'wrangler.toml', env: undefined, devVars: '.dev.vars', offset: 1 },
  { id: 'data', config: 'wrangler.toml', env: 'data', devVars: '.dev.vars.data', offset: 2 },
  // Serves the Workers agents deploy at cloud; its probe passes once its binding to cloud is connected.
  { id: 'runner', config: 'workers/runner/wrangler.toml', env: undefined, devVars: null, migrations: false, probe: '/.well-known/oap-runner', offset: 3 },
];

/** @returns {{ orchestrator: string, cloud: string, data: string, runner: string }} */
export function urlsFor(portBase) {
  const url = (offset) => `http://127.0.0.1:${portBase + offset}`;
  return { orchestrator: url(0), cloud: url(1), data: url(2), runner: url(3) };
}

function parseVars(text) {
  const vars = {};
  for (const line of text.split('\n')) {
    const match = /^([A-Z0-9_]+)=(.*)$/.exec(line.trim());
    if (match) vars[match[1]] = match[2].replace(/^'(.*)'$/, '$1');
  }
  return vars;
}

/**
 * Writes a role's .dev.vars on first start: its signing keys, and DEV_SEED,
 * the switch that seeds demo accounts (it exists only here, never in a
 * deployed Worker). Later starts keep the keys and the demo password.
 */
export function ensureDevVars(role) {
  const path = join(ROOT, role.devVars);
  const vars = existsSync(path) ? parseVars(readFileSync(path, 'utf8')) : {};
  let changed = false;
  const want = (key, make) => {
    if (!vars[key]) {
      vars[key] = make();
      changed = true;
    }
  };
  want('SIGNING_KEYS', generateSigningKeys);
  want('DEV_SEED', () => 'true');
  want('PASSWORD_PEPPER', () => randomBytes(32).toString('base64url'));
  if (role.id === 'orchestrator') want('DEMO_PASSWORD', () => `demo-${randomBytes(6).toString('base64url')}`);
  else want('EXISTING_PASSWORD', () => `existing-${randomBytes(6).toString('base64url')}`);
  if (changed) {
    const body = Object.entries(vars)
      .map(([k, v]) => `${k}='${v}'`)
      .join('\n');
    writeFileSync(path, `# Local development only (written by npm start; ignored by git).\n${body}\n`, { mode: 0o600 });
  }
  return vars;
}

/** Variables that depend on where the roles listen; passed with --var so the .dev.vars stay port-free. */
function urlVars(role, urls) {
  if (role.id === 'runner') return {};
  const vars = { PUBLIC_BASE_URL: urls[role.id] };
  if (role.id === 'orchestrator') {
    vars.PROVIDERS = JSON.stringify([
      { id: 'cloud', name: 'OAP Cloud', url: urls.cloud },
      { id: 'data', name: 'OAP Data', url: urls.data },
    ]);
  }
  else vars.TRUSTED_ORCHESTRATORS = JSON.stringify([urls.orchestrator]);
  if (role.id === 'cloud') vars.WORKERS_BASE_URL = urls.runner;
  return vars;
}

function wrangler(args, options = {}) {
  return spawnSync(WRANGLER, args, { cwd: ROOT, encoding: 'utf8', env: { ...process.env, WRANGLER_SEND_METRICS: 'false' }, ...options });
}

export function applyMigrations(role, stateDir) {
  const args = ['d1', 'migrations', 'apply', 'DB', '--local', '--persist-to', join(stateDir, role.id), '-c', role.config];
  if (role.env) args.push('--env', role.env);
  const result = wrangler(args, { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, CI: 'true', WRANGLER_SEND_METRICS: 'false' } });
  if (result.status !== 0) throw new Error(`migrations for ${role.id} failed:\n${result.stdout}\n${result.stderr}`);
}

async function waitUntilServing(url, child, timeoutMs, probe = '/.well-known/agent-provisioning') {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (child.exitCode !== null) throw new Error(`${url} exited with code ${child.exitCode} before serving`);
    try {
      const res = await fetch(`${url}${probe}`);
      if (res.ok) return;
    } catch {
      // not listening yet
    }
    await new Promise((r) => setTimeout(r, 250));
  }
  throw new Error(`${url} did not answer within ${timeoutMs} ms`);
}

/**
 * Starts the three roles and the runner. Resolves once each answers its probe.
 * `log(role, line)` receives their output (wrangler's `logLevel`: every request at
 * `info`); `stop()` ends them.
 * @param {{ portBase?: number, stateDir?: string, log?: (role: string, line: string) => void, timeoutMs?: number, logLevel?: 'debug' | 'info' | 'log' | 'warn' | 'error' }} [options]
 * @returns {Promise<{ urls: { orchestrator: string, cloud: string, data: string, runner: string }, children: import('node:child_process').ChildProcess[], stop: () => Promise<void> }>}
 */
export async function startCluster({ portBase = 8787, stateDir = join(ROOT, '.wrangler', 'state'), log = () => {}, timeoutMs = 90_000, logLevel = 'warn' } = {}) {
  const urls = urlsFor(portBase);
  const children = [];
  const stop = async () => {
    await Promise.all(
      children.map(
        (child) =>
          new Promise((done) => {
            if (child.exitCode !== null || child.signalCode !== null) return done();
            child.once('exit', done);
            child.kill('SIGTERM');
            setTimeout(() => child.kill('SIGKILL'), 5000).unref();
          }),
      ),
    );
  };
  try {
    for (const role of ROLES) {
      if (role.devVars) ensureDevVars(role);
      if (role.migrations !== false) applyMigrations(role, stateDir);
      const args = ['dev', '-c', role.config, '--ip', '127.0.0.1', '--port', String(portBase + role.offset), '--persist-to', join(stateDir, role.id)];
      args.push('--inspector-port', String(portBase + 1000 + role.offset), '--show-interactive-dev-session=false', '--log-level', logLevel);
      if (role.env) args.push('--env', role.env);
      for (const [k, v] of Object.entries(urlVars(role, urls))) args.push('--var', `${k}:${v}`);
      const child = spawn(WRANGLER, args, {
        cwd: ROOT,
        stdio: ['ignore', 'pipe', 'pipe'],
        // The runner reaches cloud through wrangler's dev registry; one registry per
        // cluster, so the e2e cluster's runner never binds to `npm start`'s cloud.
        env: { ...process.env, WRANGLER_SEND_METRICS: 'false', CLOUDFLARE_CF_FETCH_ENABLED: 'false', FORCE_COLOR: '0', WRANGLER_REGISTRY_PATH: join(stateDir, 'registry') },
      });
      children.push(child);
      for (const stream of [child.stdout, child.stderr]) {
        let buffered = '';
        stream.setEncoding('utf8');
        stream.on('data', (chunk) => {
          buffered += chunk;
          const lines = buffered.split('\n');
          buffered = lines.pop();
          for (const line of lines) if (line.trim()) log(role.id, line);
        });
      }
    }
    await Promise.all(ROLES.map((role, i) => waitUntilServing(urls[role.id], children[i], timeoutMs, role.probe)));
  } catch (error) {
    await stop();
    throw error;
  }
  return { urls, children, stop };
}

export function demoCredentials() {
  const vars = parseVars(readFileSync(join(ROOT, ROLES[0].devVars), 'utf8'));
  return { email: 'demo@oap.local', password: vars.DEMO_PASSWORD };
}

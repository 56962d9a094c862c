// The runner (DESIGN.md "Deployed Workers"): serves each deployed Worker at
// <origin>/<name>/…. The name is looked up at the provider on every request,
// so a delete or a suspension stops serving at once. Each version runs in its
// own isolate (the loader caches by id, and the id carries the version), with
// no outbound network and without the caller's credentials.
import type { ServedVersion, WorkerDeployments } from '../provider/worker-deployments';

type RunnerBindings = { LOADER: WorkerLoader; DEPLOYMENTS: Service<WorkerDeployments> };

/** Polled by scripts/dev-cluster.mjs: answers once the provider is reachable over the binding. */
const HEALTH_PATH = '/.well-known/oap-runner';

/** The catalog's pattern for worker-script names. */
const NAME_IN_PATH = /^\/([a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?)(?:\/|$)/;

/** What agents' modules run under: nodejs_compat, so the node:* imports the module check allows resolve. */
const AGENT_RUNTIME = { compatibilityDate: '2026-11-01', compatibilityFlags: ['nodejs_compat'], limits: { cpuMs: 50 } };

/**
 * Never shown to an agent's code: the caller's session cookie and bearer
 * token at whatever else answers on this host (cookies ignore ports, so a
 * browser sends a role's cookies to 127.0.0.1:8790 too).
 */
const CREDENTIAL_HEADERS = ['cookie', 'authorization', 'proxy-authorization'];

function problem(status: number, code: 'not_found' | 'internal_error', detail: string): Response {
  const title = status === 404 ? 'Not Found' : 'Internal Server Error';
  return Response.json({ type: `https://oap.dev/problems/${code}`, title, status, detail, code }, { status, headers: { 'content-type': 'application/problem+json' } });
}

async function serve(request: Request, env: RunnerBindings, name: string, served: ServedVersion): Promise<Response> {
  let removed = false;
  const worker = env.LOADER.get(`${served.resource_id}:${served.version}`, async () => {
    const source = await env.DEPLOYMENTS.source(served.resource_id, served.version);
    if (source === null) {
      removed = true; // deleted or replaced since the lookup
      throw new Error(`${name} version ${served.version} is no longer deployed`);
    }
    // globalOutbound null: fetch() and connect() fail. No plan sells egress yet; one that does passes a Fetcher here.
    return { ...AGENT_RUNTIME, mainModule: 'worker.js', modules: { 'worker.js': source }, env: {}, globalOutbound: null };
  });
  const headers = new Headers(request.headers);
  for (const header of CREDENTIAL_HEADERS) headers.delete(header);
  let response: Response;
  try {
    response = await worker.getEntrypoint().fetch(new Request(request, { headers }));
  } catch (error) {
    if (removed) return problem(404, 'not_found', `No Worker named ${name} is serving.`);
    // The agent's exception stays in this Worker's logs; the caller learns only that it failed.
    console.error(`worker ${name} v${served.version} (${served.resource_id}) failed:`, error);
    return problem(500, 'internal_error', 'The Worker threw an exception.');
  }
  // Every deployed Worker shares this origin, and the cookies it could set would reach
  // the other Workers' paths and, locally, the roles on other ports; it never sees
  // cookies anyway (stripped above), so it may not set any.
  if (!response.headers.has('set-cookie')) return response;
  const stripped = new Response(response.body, response);
  stripped.headers.delete('set-cookie');
  return stripped;
}

export default {
  async fetch(request, env): Promise<Response> {
    const path = new URL(request.url).pathname;
    if (path === HEALTH_PATH) {
      await env.DEPLOYMENTS.serving('-'); // no Worker has this name: a round trip to the provider's D1
      return Response.json({ status: 'ok' });
    }
    const name = NAME_IN_PATH.exec(path)?.[1];
    const served = name ? await env.DEPLOYMENTS.serving(name) : null;
    // A suspended Worker answers as a missing one: its account's billing is nobody else's business.
    if (!name || !served || served.suspended) return problem(404, 'not_found', name ? `No Worker named ${name} is serving.` : 'No Worker is deployed here.');
    return serve(request, env, name, served);
  },
} satisfies ExportedHandler<RunnerBindings>;

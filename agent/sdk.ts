// The OAP agent SDK: a typed client of the whole protocol for an agent that
// holds one Ed25519 key. Runs in Node and in Workers (fetch, Web Crypto, jose).
// Every request to the orchestrator is proved with a DPoP proof of the key
// (§2.4); provider tokens are DPoP-bound (§2.3); paid calls are signed with
// RFC 9421 and carry an Idempotency-Key (§3.1). Errors are OapError, with the
// protocol's stable code.
import { calculateJwkThumbprint, exportJWK, generateKeyPair, importJWK, SignJWT, type JWK } from 'jose';
import { signRequest } from '../workers/lib/http-signatures';
import { linkOn } from '../workers/lib/links';
import { extendsBeyond, extensionEnd } from '../workers/lib/mandate-extensions';

export type AgentKeyPair = { privateKey: CryptoKey; publicJwk: { kty: 'OKP'; crv: 'Ed25519'; x: string }; thumbprint: string };

/**
 * What a provider says of a suspended resource, as an agent may pass it on to a human: a code as the protocol words
 * them, and a link only to a page of the party it names (not another site's, put there by a provider).
 */
export function shownSuspension(suspension: unknown, origins: { orchestrator: string; provider: string }): { suspension?: Record<string, unknown> } {
  if (typeof suspension !== 'object' || suspension === null) return {};
  const { code, by, step_up_url, since } = suspension as Record<string, unknown>;
  if (typeof code !== 'string' || !/^[a-z_]{1,64}$/.test(code) || (by !== 'provider' && by !== 'orchestrator')) return {};
  return { suspension: { code, by, step_up_url: linkOn(step_up_url, origins[by]), since: typeof since === 'string' ? since : null } };
}

/** A suspension as kept by `shownSuspension`, said for a human: refused where, and where a human lifts it ('' for none). */
export function suspensionInWords(resource: { provider: string; suspension?: Record<string, unknown> }): string {
  const s = resource.suspension;
  if (!s) return '';
  const where = s.by === 'provider' ? resource.provider : 'the orchestrator';
  return `${String(s.code)} at ${where}${s.step_up_url ? `; a human can lift it at ${String(s.step_up_url)}` : ''}`;
}

/** A protocol error: `code` is one of PROTOCOL.md's codes (or an OAuth error at token endpoints). */
export class OapError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
    readonly body: Record<string, unknown> = {},
  ) {
    super(message);
    this.name = 'OapError';
  }
  /** Refusals a human can lift (a limit, a mandate): as opposed to faults. */
  get isRefusal() {
    return this.status === 402 || this.status === 403 || this.code === 'account_link_required';
  }
}

/** A fresh agent key; `privateJwk` is what an agent keeps (with 0600 permissions, say). */
export async function generateAgentKey(): Promise<{ key: AgentKeyPair; privateJwk: JWK }> {
  const { privateKey } = await generateKeyPair('Ed25519', { extractable: true });
  const privateJwk = await exportJWK(privateKey);
  return { key: await agentKeyFromJwk(privateJwk), privateJwk };
}

export async function agentKeyFromJwk(privateJwk: JWK): Promise<AgentKeyPair> {
  const publicJwk = { kty: 'OKP' as const, crv: 'Ed25519' as const, x: String(privateJwk.x) };
  return {
    privateKey: (await importJWK({ ...privateJwk, alg: 'EdDSA' }, 'EdDSA')) as CryptoKey,
    publicJwk,
    thumbprint: await calculateJwkThumbprint(publicJwk),
  };
}

async function sha256b64url(text: string): Promise<string> {
  const digest = new Uint8Array(await crypto.subtle.digest('SHA-256', new TextEncoder().encode(text)));
  return btoa(String.fromCharCode(...digest)).replaceAll('+', '-').replaceAll('/', '_').replace(/=+$/, '');
}

export async function dpopProof(key: AgentKeyPair, method: string, url: string, accessToken?: string): Promise<string> {
  const u = new URL(url);
  return new SignJWT({ htm: method, htu: `${u.origin}${u.pathname}`, jti: crypto.randomUUID(), ...(accessToken ? { ath: await sha256b64url(accessToken) } : {}) })
    .setProtectedHeader({ alg: 'EdDSA', typ: 'dpop+jwt', jwk: key.publicJwk })
    .setIssuedAt()
    .sign(key.privateKey);
}

async function parse(res: Response): Promise<Record<string, any>> {
  const text = await res.text();
  let body: Record<string, any> = {};
  try {
    body = text ? (JSON.parse(text) as Record<string, any>) : {};
  } catch {
    body = { detail: text };
  }
  if (!res.ok) throw new OapError(res.status, String(body.code ?? body.error ?? 'http_error'), String(body.detail ?? body.error_description ?? res.statusText), body);
  return body;
}

export type Money = { amount: number; currency: string };
export type MandateRequest = {
  description: string;
  scope: { provider: string; services: string[]; max_per_charge?: Money }[];
  spend_limit: Money & { period: 'month' };
  expires_at: string;
  share_email?: boolean;
  supersedes?: string;
};
export type Mandate = Record<string, any> & {
  mandate_id: string;
  status: string;
  approval_url: string;
  interval?: number;
  user_code?: string;
  agent_id: string | null;
  /** For a superseded mandate, the one that superseded it. */
  superseded_by?: string | null;
};

type ProviderSession = { id: string; base: string; accessToken: string; expiresAt: number; accountId: string };

export type ClientOptions = { orchestrator: string; key: AgentKeyPair; agentName?: string; fetch?: typeof fetch };

/** An agent's view of one orchestrator and the providers it knows. */
export class OapClient {
  readonly orchestrator: string;
  readonly key: AgentKeyPair;
  #fetch: typeof fetch;
  #agentName: string;
  #providers = new Map<string, string>();
  /**
   * The price each paid call signed under an Idempotency-Key the caller chose: its retry signs the same body, and
   * so is answered the first time's outcome rather than 422 should the catalog have moved in between (bounded).
   */
  #signedPrices = new Map<string, Money>();
  #tokens = new Map<string, ProviderSession>();

  constructor(options: ClientOptions) {
    this.orchestrator = options.orchestrator.replace(/\/+$/, '');
    this.key = options.key;
    this.#fetch = options.fetch ?? ((input, init) => fetch(input, init));
    this.#agentName = options.agentName ?? 'oap agent';
  }

  /** The orchestrator's request for an agent: a fresh DPoP proof by the key. */
  async #orchestrator(method: string, path: string, body?: unknown) {
    const url = `${this.orchestrator}${path}`;
    return parse(
      await this.#fetch(url, {
        method,
        headers: { dpop: await dpopProof(this.key, method, url), accept: 'application/json', ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
        ...(body === undefined ? {} : { body: JSON.stringify(body) }),
      }),
    );
  }

  // ── Discovery (§1) ──

  async discover(): Promise<{ orchestrator: Record<string, any>; providers: Record<string, any>[] }> {
    const orchestrator = await parse(await this.#fetch(`${this.orchestrator}/.well-known/agent-provisioning`));
    const providers = await Promise.all(
      (orchestrator.providers as string[]).map(async (base) => {
        const doc = await parse(await this.#fetch(`${base}/.well-known/agent-provisioning`));
        this.#providers.set(String(doc.id), base);
        return doc;
      }),
    );
    return { orchestrator, providers };
  }

  async catalogs(): Promise<{ provider: string; services: Record<string, any>[] }[]> {
    if (this.#providers.size === 0) await this.discover();
    return Promise.all([...this.#providers.values()].map(async (base) => (await parse(await this.#fetch(`${base}/v1/catalog`))) as { provider: string; services: Record<string, any>[] }));
  }

  async #providerBase(id: string): Promise<string> {
    if (!this.#providers.has(id)) await this.discover();
    const base = this.#providers.get(id);
    if (!base) throw new OapError(404, 'not_found', `No provider ${id} at this orchestrator.`);
    return base;
  }

  // ── Mandates (§2.1) ──

  /** Asks for a mandate. An unregistered key makes first contact, naming itself. */
  async requestMandate(request: MandateRequest): Promise<Mandate> {
    return (await this.#orchestrator('POST', '/v1/mandates', { ...request, agent: { name: this.#agentName, public_jwk: this.key.publicJwk } })) as Mandate;
  }

  async mandate(id: string): Promise<Mandate> {
    return (await this.#orchestrator('GET', `/v1/mandates/${id}`)) as Mandate;
  }

  /**
   * The mandate in force of `id`'s chain: `id` itself, or, once it has been superseded (an extension or a re-approval,
   * asked for by this agent or by its human from the dashboard), the approved mandate at the end of its
   * `superseded_by` links. Whatever its status: a revoked or expired end of the chain is what is in force.
   */
  async mandateInForce(mandate: string | Mandate): Promise<Mandate> {
    // A mandate the caller has just read is not read again.
    let current = typeof mandate === 'string' ? await this.mandate(mandate) : mandate;
    // A chain grows by one link per approval; the bound only guards against a cycle no orchestrator should serve.
    for (let links = 0; current.status === 'superseded' && current.superseded_by && links < 1000; links++) current = await this.mandate(current.superseded_by);
    return current;
  }

  /**
   * Asks for a mandate that supersedes an active one: the same terms, ending `days` from now (at most a year, the
   * longest a mandate lasts, and a day at least past the active one's end). Recurring plans bought under a mandate renew only while its chain has an active link,
   * and one that has ended can no longer be superseded: this is how they go on past its end. The human approves it
   * like any request; until then the one it supersedes stays in force.
   */
  async extendMandate(mandate: string | Mandate, options: { days?: number; description?: string } = {}): Promise<Mandate> {
    // A mandate the caller has just read is not read again.
    const current = typeof mandate === 'string' ? await this.mandate(mandate) : mandate;
    const id = current.mandate_id;
    if (current.status !== 'active') throw new OapError(409, 'mandate_inactive', `Mandate ${id} is ${current.status}: only an active mandate can be extended.`);
    const days = Math.min(options.days ?? 365, 365);
    const end = extensionEnd(days);
    if (!extendsBeyond(end, current.expires_at)) throw new OapError(422, 'invalid_request', `Mandate ${id} runs until ${current.expires_at}: ${days} days from now would not extend it by a day.`);
    return this.requestMandate({
      description: options.description ?? current.description,
      scope: current.scope,
      spend_limit: current.spend_limit,
      expires_at: new Date(end).toISOString(),
      share_email: current.share_email,
      supersedes: id,
    });
  }

  /** Polls a pending mandate at its interval until the human decides; `onPoll` sees each read. */
  async waitForDecision(id: string, options: { timeoutMs?: number; onPoll?: (m: Mandate) => void; sleep?: (ms: number) => Promise<void> } = {}): Promise<Mandate> {
    const sleep = options.sleep ?? ((ms: number) => new Promise<void>((r) => setTimeout(r, ms)));
    const deadline = Date.now() + (options.timeoutMs ?? 10 * 60_000);
    let interval = 5;
    for (;;) {
      let mandate: Mandate;
      try {
        mandate = await this.mandate(id);
      } catch (error) {
        if (error instanceof OapError && error.code === 'slow_down') {
          interval += 5; // RFC 8628 §3.5
          await sleep(interval * 1000);
          continue;
        }
        throw error;
      }
      options.onPoll?.(mandate);
      if (mandate.status !== 'pending') return mandate;
      if (Date.now() > deadline) throw new OapError(408, 'timeout', 'The human did not decide in time.');
      interval = mandate.interval ?? interval;
      await sleep(interval * 1000);
    }
  }

  // ── Tokens (§2.2, §2.3) ──

  async #token(mandateId: string, provider: string): Promise<ProviderSession> {
    const key = `${mandateId} ${provider}`;
    const cached = this.#tokens.get(key);
    if (cached && cached.expiresAt > Date.now() + 30_000) return cached;
    const base = await this.#providerBase(provider);
    const { attestation } = await this.#orchestrator('POST', '/v1/attestations', { mandate_id: mandateId, provider });
    const tokenUrl = `${base}/oauth/token`;
    const issued = await parse(
      await this.#fetch(tokenUrl, {
        method: 'POST',
        headers: { 'content-type': 'application/x-www-form-urlencoded', dpop: await dpopProof(this.key, 'POST', tokenUrl) },
        body: new URLSearchParams({ grant_type: 'urn:ietf:params:oauth:grant-type:jwt-bearer', assertion: String(attestation) }).toString(),
      }),
    );
    const session = { id: provider, base, accessToken: String(issued.access_token), expiresAt: Date.now() + Number(issued.expires_in) * 1000, accountId: String(issued.account_id) };
    this.#tokens.set(key, session);
    return session;
  }

  async #provider(mandateId: string, provider: string, method: string, path: string) {
    const session = await this.#token(mandateId, provider);
    const url = `${session.base}${path}`;
    return parse(await this.#fetch(url, { method, headers: { authorization: `DPoP ${session.accessToken}`, dpop: await dpopProof(this.key, method, url, session.accessToken), accept: 'application/json' } }));
  }

  /** A paid call (§3.1): signed over the exact body, retried with the same Idempotency-Key by the caller. */
  async #paid(mandateId: string, provider: string, method: 'POST' | 'PATCH' | 'DELETE', path: string, body: unknown, idempotencyKey: string) {
    const session = await this.#token(mandateId, provider);
    const url = `${session.base}${path}`;
    // DELETE and rotate carry no body; the signature then covers the digest of the empty body.
    const text = body === undefined ? '' : JSON.stringify(body);
    const signed = await signRequest({ method, targetUri: url, body: text, privateKey: this.key.privateKey, keyid: this.key.thumbprint });
    const res = await this.#fetch(url, {
      method,
      headers: {
        authorization: `DPoP ${session.accessToken}`,
        dpop: await dpopProof(this.key, method, url, session.accessToken),
        'idempotency-key': idempotencyKey,
        ...(body === undefined ? {} : { 'content-type': 'application/json' }),
        ...signed,
      },
      ...(body === undefined ? {} : { body: text }),
    });
    return { status: res.status, body: await parse(res) };
  }

  // ── Resources (§3.1) ──

  /**
   * Provisions `service` at `provider` on `plan`. The agent signs the price it
   * agrees to: `expected_price` as given (the price it was shown), or else the
   * catalog's as read just before the call. A provider whose price is no longer
   * that answers `409 price_changed` instead of charging another amount, and a
   * dispute holds the charge to it. A retry in another process under the same
   * `idempotencyKey` passes the price the first try signed. Async services are
   * followed to the end; the credentials come back once, here.
   */
  async provision(
    mandateId: string,
    provider: string,
    input: { service: string; plan: string; parameters?: Record<string, unknown>; expected_price?: Money },
    options: { idempotencyKey?: string; onProgress?: (status: string) => void; pollMs?: number } = {},
  ): Promise<Record<string, any>> {
    const signedBefore = options.idempotencyKey ? `${provider} ${options.idempotencyKey}` : null;
    const expected_price = input.expected_price ?? (signedBefore ? this.#signedPrices.get(signedBefore) : undefined) ?? (await this.#catalogPrice(provider, input.service, input.plan));
    if (signedBefore) {
      if (this.#signedPrices.size >= 256) this.#signedPrices.delete(this.#signedPrices.keys().next().value!);
      this.#signedPrices.set(signedBefore, expected_price);
    }
    const { status, body } = await this.#paid(mandateId, provider, 'POST', '/v1/resources', { parameters: {}, ...input, expected_price }, options.idempotencyKey ?? crypto.randomUUID());
    if (status !== 202) return body;
    for (;;) {
      const operation = await this.#provider(mandateId, provider, 'GET', `/v1/operations/${body.operation_id}`);
      options.onProgress?.(String(operation.status));
      if (operation.status === 'succeeded') return { ...operation.resource, charge_id: operation.charge_id, operation_id: operation.operation_id };
      if (operation.status === 'failed') throw new OapError(502, String(operation.error?.code ?? 'provision_failed'), String(operation.error?.message ?? 'provisioning failed'), operation);
      await new Promise((r) => setTimeout(r, options.pollMs ?? 500));
    }
  }

  /**
   * The agent's resources at `provider`, optionally only those of one mandate or status (every page). A suspended
   * one says why (`suspension`), for the agent to tell its human: kept only as the protocol words it, its link only
   * to a page of the orchestrator or of that provider.
   */
  async resources(mandateId: string, provider: string, filter: { mandate_id?: string; status?: string } = {}) {
    const all: Record<string, any>[] = [];
    for (let after: string | undefined; ; ) {
      const query = new URLSearchParams({ limit: '100', ...filter, ...(after ? { starting_after: after } : {}) });
      const page = await this.#provider(mandateId, provider, 'GET', `/v1/resources?${query}`);
      all.push(...(page.data as Record<string, any>[]));
      if (!page.has_more || page.data.length === 0) break;
      after = String(page.data.at(-1).resource_id);
    }
    const origins = { orchestrator: new URL(this.orchestrator).origin, provider: new URL(await this.#providerBase(provider)).origin };
    return all.map(({ suspension, ...resource }) => (suspension === undefined ? resource : { ...resource, ...shownSuspension(suspension, origins) }));
  }

  /** Deprovisions one resource: serving stops, credentials die, recurring billing stops. */
  async deprovision(mandateId: string, provider: string, resourceId: string, options: { idempotencyKey?: string } = {}) {
    return (await this.#paid(mandateId, provider, 'DELETE', `/v1/resources/${resourceId}`, undefined, options.idempotencyKey ?? crypto.randomUUID())).body;
  }

  /** New credentials for a resource, returned here once; the old ones stop working. */
  async rotate(mandateId: string, provider: string, resourceId: string, options: { idempotencyKey?: string } = {}) {
    return (await this.#paid(mandateId, provider, 'POST', `/v1/resources/${resourceId}/rotate`, undefined, options.idempotencyKey ?? crypto.randomUUID())).body;
  }

  /**
   * Moves a resource to another plan along `allowed_updates`, charged or credited pro rata. The agent signs the new
   * plan's full price (`expected_price`, from the provider's catalog unless given): later renewals charge exactly that.
   */
  async changePlan(mandateId: string, provider: string, resourceId: string, plan: string, options: { idempotencyKey?: string; expectedPrice?: Money } = {}) {
    const expected_price = options.expectedPrice ?? (await this.#planPrice(mandateId, provider, resourceId, plan));
    return (await this.#paid(mandateId, provider, 'PATCH', `/v1/resources/${resourceId}`, { plan, expected_price }, options.idempotencyKey ?? crypto.randomUUID())).body;
  }

  /** The catalog price of `plan` of the service `resourceId` is of. */
  async #planPrice(mandateId: string, provider: string, resourceId: string, plan: string): Promise<Money> {
    const resource = await this.#provider(mandateId, provider, 'GET', `/v1/resources/${resourceId}`);
    return this.#catalogPrice(provider, String(resource.service), plan);
  }

  /** The price `provider`'s catalog names for `plan` of `service`, read now. */
  async #catalogPrice(provider: string, service: string, plan: string): Promise<Money> {
    const catalog = await parse(await this.#fetch(`${await this.#providerBase(provider)}/v1/catalog`));
    const price = (catalog.services as { id: string; plans: { id: string; price: Money }[] }[]).find((s) => s.id === service)?.plans.find((p) => p.id === plan)?.price;
    if (!price) throw new OapError(422, 'invalid_parameters', `${service} has no plan ${plan} at ${provider}.`);
    return price;
  }

  /**
   * Removes everything this agent provisioned under the mandate (or one it
   * supersedes), at every provider in its scope; returns what was removed and
   * what could not be.
   */
  async teardown(mandateOrId: string | Mandate, options: { onProgress?: (step: string) => void } = {}) {
    const mandate = typeof mandateOrId === 'string' ? await this.mandate(mandateOrId) : mandateOrId;
    const mandateId = mandate.mandate_id;
    const chain = await this.#chainOf(mandate);
    const providers = [...new Set((mandate.scope as { provider: string }[]).map((s) => s.provider))];
    const removed: Record<string, any>[] = [];
    const failed: { provider: string; resource_id: string; code: string; message: string }[] = [];
    for (const provider of providers) {
      const live = (await this.resources(mandateId, provider)).filter((r) => chain.has(String(r.mandate_id)) && (r.status === 'active' || r.status === 'suspended'));
      for (const resource of live) {
        options.onProgress?.(`removing ${provider}/${resource.service} ${resource.resource_id}`);
        try {
          removed.push({ provider, ...(await this.deprovision(mandateId, provider, String(resource.resource_id))) });
        } catch (error) {
          if (!(error instanceof OapError)) throw error;
          failed.push({ provider, resource_id: String(resource.resource_id), code: error.code, message: error.message });
        }
      }
    }
    return { removed, failed };
  }

  /** A mandate and those it supersedes, back to the first: what was bought under any of them goes on under it. */
  async #chainOf(mandate: Mandate): Promise<Set<string>> {
    const ids = new Set([mandate.mandate_id]);
    for (let link = mandate; typeof link.supersedes === 'string' && !ids.has(link.supersedes) && ids.size < 100; ) {
      ids.add(link.supersedes);
      link = await this.mandate(link.supersedes);
    }
    return ids;
  }

  async usage(mandateId: string, provider: string) {
    return this.#provider(mandateId, provider, 'GET', '/v1/usage');
  }

  /**
   * What was spent this period against each limit on the agent: the mandate's (across
   * providers, at the orchestrator) first, then each provider account's own.
   */
  async spend(mandate: Mandate): Promise<Record<string, any>[]> {
    const providers = (mandate.scope as { provider: string }[]).map((s) => s.provider);
    const accounts = await Promise.all(providers.map(async (provider) => ({ scope: 'provider', provider, ...(await this.usage(mandate.mandate_id, provider)) })));
    const spent = mandate.spent ?? { amount: 0, currency: mandate.spend_limit.currency };
    return [{ scope: 'mandate', mandate_id: mandate.mandate_id, spent, limit: mandate.spend_limit }, ...accounts];
  }

  /** The agent's own audit trail at the orchestrator (JSON Lines). */
  async audit(): Promise<Record<string, any>[]> {
    const url = `${this.orchestrator}/v1/audit`;
    const res = await this.#fetch(url, { headers: { dpop: await dpopProof(this.key, 'GET', url) } });
    if (!res.ok) await parse(res);
    return (await res.text())
      .split('\n')
      .filter(Boolean)
      .map((line) => JSON.parse(line) as Record<string, any>);
  }
}

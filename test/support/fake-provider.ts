// Plays a provider against the orchestrator under test: signs its request
// tokens (oap-provider+jwt) with the key the test configuration publishes for
// "cloud" and "data", and builds charge requests around an agent's signed call.
import { env } from 'cloudflare:workers';
import { decodeJwt, importJWK, SignJWT } from 'jose';
import { signRequest } from '../../workers/lib/http-signatures';
import type { AgentKey } from './agent-keys';
import { call, ORCHESTRATOR, type Agent } from './orchestrator-client';

export const PROVIDER_URL = { cloud: 'http://127.0.0.1:8788', data: 'http://127.0.0.1:8789' } as const;
type ProviderId = keyof typeof PROVIDER_URL;

let key: Promise<{ key: CryptoKey; kid: string }> | undefined;
function providerKey() {
  key ??= (async () => {
    const jwk = JSON.parse((env as unknown as { TEST_PROVIDER_KEY: string }).TEST_PROVIDER_KEY) as { kid: string };
    return { key: (await importJWK({ ...jwk, alg: 'EdDSA' }, 'EdDSA')) as CryptoKey, kid: jwk.kid };
  })();
  return key;
}

async function sha256b64url(text: string) {
  const digest = new Uint8Array(await crypto.subtle.digest('SHA-256', new TextEncoder().encode(text)));
  return btoa(String.fromCharCode(...digest)).replaceAll('+', '-').replaceAll('/', '_').replace(/=+$/, '');
}

export async function providerToken(provider: ProviderId, method: string, path: string, body: string, overrides: Record<string, unknown> = {}) {
  const { key: signingKey, kid } = await providerKey();
  const now = Math.floor(Date.now() / 1000);
  // htu is the URL without its query, as in DPoP (RFC 9449 §4.2).
  // iat and exp are claims like the others, so that a test can bend them too.
  return new SignJWT({ htm: method, htu: `${ORCHESTRATOR}${path.split('?')[0]}`, body_sha256: await sha256b64url(body), jti: crypto.randomUUID(), iat: now, exp: now + 60, ...overrides })
    .setProtectedHeader({ alg: 'EdDSA', typ: 'oap-provider+jwt', kid })
    .setIssuer(PROVIDER_URL[provider])
    .setAudience(ORCHESTRATOR)
    .sign(signingKey);
}

/** A provider's authenticated call to the orchestrator. */
export async function asProvider(provider: ProviderId, method: string, path: string, body?: unknown, tokenOverrides: Record<string, unknown> = {}) {
  const text = body === undefined ? '' : JSON.stringify(body);
  return call(path, {
    method,
    headers: { authorization: `Bearer ${await providerToken(provider, method, path, text, tokenOverrides)}`, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
    ...(body === undefined ? {} : { body: text }),
  });
}

/** The pairwise subject the orchestrator gave this principal at `provider` (read from a fresh attestation). */
export async function subjectAt(agent: Agent, mandateId: string, provider: ProviderId) {
  const res = await agent.request('POST', '/v1/attestations', { mandate_id: mandateId, provider });
  if (res.status !== 200) throw new Error(`attestation failed: ${res.status} ${await res.text()}`);
  return decodeJwt(((await res.json()) as { attestation: string }).attestation).sub!;
}

/** An agent's signed paid call as a provider forwards it (`agent_request`): `method target` with `body`, signed by the agent's key. */
export async function signedAgentRequest(agentKey: AgentKey, method: string, targetUri: string, body: string) {
  const signed = await signRequest({ method, targetUri, body, privateKey: agentKey.privateKey, keyid: agentKey.jkt });
  return { method, target_uri: targetUri, body, content_digest: signed['content-digest'], signature_input: signed['signature-input'], signature: signed.signature };
}

/** What a provider sends to authorize: the agent's signed POST /v1/resources and the charge around it. */
export async function chargeBody(
  agentKey: AgentKey,
  /** `expected`: the price the agent signs, the amount charged unless given; null signs none (the catalog's price then holds). */
  input: { provider: ProviderId; mandate_id: string; agent_id: string; sub: string; service: string; plan: string; amount: number; key?: string; expected?: number | null },
) {
  const targetUri = `${PROVIDER_URL[input.provider]}/v1/resources`;
  const expected = input.expected === undefined ? input.amount : input.expected;
  const signedBody = JSON.stringify({ service: input.service, plan: input.plan, parameters: {}, ...(expected === null ? {} : { expected_price: { amount: expected, currency: 'usd' } }) });
  return {
    mandate_id: input.mandate_id,
    principal_sub: input.sub,
    agent_id: input.agent_id,
    service: input.service,
    plan: input.plan,
    amount: input.amount,
    currency: 'usd',
    description: `${input.service} ${input.plan}`,
    resource_ref: null,
    idempotency_key: input.key ?? crypto.randomUUID(),
    token_jti: `tok_${crypto.randomUUID()}`,
    agent_request: await signedAgentRequest(agentKey, 'POST', targetUri, signedBody),
  };
}

/** A receipt as the provider signs it on capture (§4). */
export async function providerReceipt(provider: ProviderId, claims: Record<string, unknown>, signWith?: CryptoKey) {
  const { key: signingKey, kid } = await providerKey();
  return new SignJWT({ time: new Date().toISOString(), ...claims })
    .setProtectedHeader({ alg: 'EdDSA', typ: 'oap-receipt+jwt', kid })
    .setIssuer(PROVIDER_URL[provider])
    .setIssuedAt()
    .sign(signWith ?? signingKey);
}

/** A head of an account's chain as the provider signs it (workers/lib/audit-heads.ts). */
export async function providerAuditHead(provider: ProviderId, head: { account: string; seq: number; hash: string }) {
  const { key: signingKey, kid } = await providerKey();
  const time = new Date().toISOString();
  const jws = await new SignJWT({ sub: head.account, seq: head.seq, hash: head.hash, time })
    .setProtectedHeader({ alg: 'EdDSA', typ: 'oap-audit-head+jwt', kid })
    .setIssuer(PROVIDER_URL[provider])
    .setIssuedAt()
    .sign(signingKey);
  return { seq: head.seq, hash: head.hash, time, jws };
}

export type AuthorizedCharge = { charge_id: string; decision: { mandate_status: string; constraint_results: unknown[] } };

/**
 * The provider's capture of an authorized charge, with the receipt §4 lists
 * (`receipt`: 'valid', 'none' for no receipt at all, or claims to change in it).
 */
export async function captureWithReceipt(
  provider: ProviderId,
  authorized: AuthorizedCharge,
  charge: { agent_id: string; mandate_id: string; amount: number; resource_id: string },
  receipt: 'valid' | 'none' | Record<string, unknown> = 'valid',
) {
  const claims = {
    charge_id: authorized.charge_id,
    resource_id: charge.resource_id,
    agent_id: charge.agent_id,
    mandate_id: charge.mandate_id,
    amount: charge.amount,
    currency: 'usd',
    mandate_status_at_decision: authorized.decision.mandate_status,
    constraint_results: authorized.decision.constraint_results,
    ...(typeof receipt === 'object' ? receipt : {}),
  };
  const body = receipt === 'none' ? {} : { receipt: await providerReceipt(provider, claims) };
  return asProvider(provider, 'POST', `/v1/charges/${authorized.charge_id}/capture`, body);
}

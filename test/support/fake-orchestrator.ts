// The test plays the trusted orchestrator (PROTOCOL.md §2.2, §2.5): its own
// Ed25519 key, its JWKS served through a fetch mock, and the attestations
// (ID-JAG) and Security Event Tokens it signs, each field bendable so that a
// refusal test changes exactly one thing.
import { exports } from 'cloudflare:workers';
import { calculateJwkThumbprint, exportJWK, generateKeyPair, type JWK } from 'jose';
import { afterEach, beforeEach, vi, type MockInstance } from 'vitest';
import { clearIssuerKeys } from '../../workers/lib/jwks-cache';
import { dpopProof, type AgentKey, type ProofOptions } from './agent-keys';

export const ORCHESTRATOR = 'http://127.0.0.1:8787';
export const PROVIDER = 'http://127.0.0.1:8788';
export const TOKEN_ENDPOINT = `${PROVIDER}/oauth/token`;
export const JWT_BEARER = 'urn:ietf:params:oauth:grant-type:jwt-bearer';
export const EVENT = (type: 'mandate.revoked' | 'agent.revoked' | 'charge.refunded') => `https://oap.dev/events/${type}`;

export type SigningKey = { privateKey: CryptoKey; publicKey: CryptoKey; publicJwk: JWK & { kid: string }; kid: string };

/**
 * An Ed25519 key pair whose kid is its RFC 7638 thumbprint. The published JWK
 * names no `alg` (optional in RFC 7517), so either Ed25519 alg name may sign.
 */
export async function newSigningKey(): Promise<SigningKey> {
  const { privateKey, publicKey } = await generateKeyPair('Ed25519', { extractable: true });
  const exported = await exportJWK(publicKey);
  const kid = await calculateJwkThumbprint(exported);
  return { privateKey: privateKey as CryptoKey, publicKey: publicKey as CryptoKey, kid, publicJwk: { kty: 'OKP', crv: 'Ed25519', x: exported.x!, kid, use: 'sig' } };
}

/** The orchestrator's key for this test file. */
export const orchestratorKey = await newSigningKey();

export const call = (path: string, init?: RequestInit) => exports.default.fetch(new Request(`${PROVIDER}${path}`, init));

// ── The fetch mock ─────────────────────────────────────────────────────────

const served = new Map<string, () => object>();
/** Every URL the Worker fetched through the mock, in order. */
export const fetched: string[] = [];
let spy: MockInstance<typeof fetch> | undefined;

/** Serves `jwks` at `url` for the rest of the test (e.g. an untrusted issuer's). */
export function serveJwks(url: string, jwks: () => object) {
  served.set(url, jwks);
}

/**
 * Call once at the top of a test file: before each test the JWKS cache is
 * emptied and GET <orchestrator>/.well-known/jwks.json answers with the public
 * key; every other request goes to the real fetch. The Worker runs in the same
 * isolate as the tests, so the global mock applies to it.
 */
export function useFakeOrchestrator() {
  beforeEach(() => {
    clearIssuerKeys();
    served.clear();
    fetched.length = 0;
    serveJwks(`${ORCHESTRATOR}/.well-known/jwks.json`, () => ({ keys: [orchestratorKey.publicJwk] }));
    const original = globalThis.fetch;
    spy = vi.spyOn(globalThis, 'fetch').mockImplementation(async (input: RequestInfo | URL, init?: RequestInit) => {
      const request = new Request(input, init);
      const jwks = request.method === 'GET' ? served.get(request.url) : undefined;
      if (!jwks) return original(input, init);
      fetched.push(request.url);
      return new Response(JSON.stringify(jwks()), { status: 200, headers: { 'content-type': 'application/jwk-set+json' } });
    });
  });
  afterEach(() => {
    spy?.mockRestore();
    spy = undefined;
  });
}

/**
 * A P-256 key the orchestrator also signs with (PROTOCOL.md §2.2 allows ES256), published in its JWKS beside the
 * Ed25519 key for the rest of the test; its kid is for the ES256 header.
 */
export async function publishEs256OrchestratorKey(): Promise<{ privateKey: CryptoKey; kid: string }> {
  const { privateKey, publicKey } = (await crypto.subtle.generateKey({ name: 'ECDSA', namedCurve: 'P-256' }, true, ['sign', 'verify'])) as CryptoKeyPair;
  const { x, y } = (await crypto.subtle.exportKey('jwk', publicKey)) as JsonWebKey;
  const kid = `es256-${crypto.randomUUID()}`;
  serveJwks(`${ORCHESTRATOR}/.well-known/jwks.json`, () => ({ keys: [orchestratorKey.publicJwk, { kty: 'EC', crv: 'P-256', x, y, kid, use: 'sig' }] }));
  return { privateKey, kid };
}

// ── Compact JWS, built by hand so that any header can be sent ─────────────

export function b64url(data: string | Uint8Array): string {
  const bytes = typeof data === 'string' ? new TextEncoder().encode(data) : data;
  let binary = '';
  for (const b of bytes) binary += String.fromCharCode(b);
  return btoa(binary).replaceAll('+', '-').replaceAll('/', '_').replace(/=+$/, '');
}

/** `undefined` in `overrides` removes the field. */
function merged(base: Record<string, unknown>, overrides: Record<string, unknown> = {}): Record<string, unknown> {
  const out: Record<string, unknown> = { ...base, ...overrides };
  for (const [k, v] of Object.entries(overrides)) if (v === undefined) delete out[k];
  return out;
}

/** Ed25519 (or ES256 with a P-256 key) over `header.payload`, whatever the header says. */
export async function signCompact(header: Record<string, unknown>, payload: Record<string, unknown>, key: CryptoKey = orchestratorKey.privateKey): Promise<string> {
  const input = `${b64url(JSON.stringify(header))}.${b64url(JSON.stringify(payload))}`;
  const algorithm = key.algorithm.name === 'ECDSA' ? { name: 'ECDSA', hash: 'SHA-256' } : 'Ed25519';
  const signature = new Uint8Array(await crypto.subtle.sign(algorithm, key, new TextEncoder().encode(input)));
  return `${input}.${b64url(signature)}`;
}

// ── Attestations (ID-JAG, §2.2) ────────────────────────────────────────────

const randomId = (prefix: string) => `${prefix}${crypto.randomUUID().replaceAll('-', '')}`;
export const now = () => Math.floor(Date.now() / 1000);

export type Money = { amount: number; currency: 'usd' };

export type AttestationOptions = {
  /** The agent whose key the attestation binds (cnf.jkt). */
  agent: AgentKey;
  sub?: string;
  agentId?: string;
  mandateId?: string;
  maxPerCharge?: Money | null;
  email?: string;
  emailVerified?: boolean;
  /** Replace (or with `undefined` remove) any claim. */
  claims?: Record<string, unknown>;
  /** Replace (or with `undefined` remove) any protected header field. */
  header?: Record<string, unknown>;
  /** Sign with another key than the orchestrator's. */
  signWith?: CryptoKey;
};

export type Attestation = { jwt: string; claims: Record<string, unknown>; header: Record<string, unknown>; sub: string; agentId: string; mandateId: string; jti: string };

export async function signAttestation(options: AttestationOptions): Promise<Attestation> {
  const sub = options.sub ?? randomId('pw_');
  const agentId = options.agentId ?? randomId('agt_');
  const mandateId = options.mandateId ?? randomId('mdt_');
  const iat = now();
  const jti = randomId('att_');
  const base: Record<string, unknown> = {
    iss: ORCHESTRATOR,
    aud: PROVIDER,
    sub,
    client_id: agentId,
    act: { sub: agentId },
    cnf: { jkt: options.agent.jkt },
    authorization_details: [
      {
        type: 'oap_mandate',
        mandate_id: mandateId,
        services: ['domain', 'worker-script'],
        max_per_charge: options.maxPerCharge === undefined ? null : options.maxPerCharge,
        spend_limit: { amount: 5000, currency: 'usd', period: 'month' },
        expires_at: new Date(Date.now() + 30 * 24 * 3600 * 1000).toISOString(),
      },
    ],
    jti,
    iat,
    exp: iat + 300,
    ...(options.email !== undefined ? { email: options.email, email_verified: options.emailVerified ?? false } : {}),
  };
  const claims = merged(base, options.claims);
  const header = merged({ alg: 'EdDSA', typ: 'oauth-id-jag+jwt', kid: orchestratorKey.kid }, options.header);
  const jwt = await signCompact(header, claims, options.signWith ?? orchestratorKey.privateKey);
  return { jwt, claims, header, sub, agentId, mandateId, jti: String(claims.jti) };
}

// ── Security Event Tokens (RFC 8417, §2.5) ────────────────────────────────

export type SecurityEventOptions = { claims?: Record<string, unknown>; header?: Record<string, unknown>; signWith?: CryptoKey };

export async function signSecurityEvent(events: Record<string, Record<string, unknown>>, options: SecurityEventOptions = {}): Promise<{ jwt: string; jti: string }> {
  const jti = randomId('set_');
  const claims = merged({ iss: ORCHESTRATOR, aud: PROVIDER, jti, iat: now(), sub: randomId('pw_'), events }, options.claims);
  const header = merged({ alg: 'EdDSA', typ: 'secevent+jwt', kid: orchestratorKey.kid }, options.header);
  return { jwt: await signCompact(header, claims, options.signWith ?? orchestratorKey.privateKey), jti: String(claims.jti) };
}

export function postSecurityEvent(set: string, contentType = 'application/secevent+jwt') {
  return call('/v1/events', { method: 'POST', headers: { 'content-type': contentType, accept: 'application/json' }, body: set });
}

// ── The token request (RFC 7523 + RFC 9449, §2.3) ──────────────────────────

export type TokenRequestOptions = {
  /** Extra or replaced form fields; `undefined` removes one. */
  form?: Record<string, string | undefined>;
  /** Send no DPoP header at all. */
  noProof?: boolean;
  /** The proof's signer, if not the agent. */
  proofKey?: AgentKey;
};

export async function tokenRequest(agentKey: AgentKey, attestation: string | Attestation, proofOptions: ProofOptions = {}, options: TokenRequestOptions = {}): Promise<Response> {
  const assertion = typeof attestation === 'string' ? attestation : attestation.jwt;
  const fields = merged({ grant_type: JWT_BEARER, assertion }, options.form) as Record<string, string>;
  const headers: Record<string, string> = { 'content-type': 'application/x-www-form-urlencoded' };
  if (!options.noProof) headers.dpop = await dpopProof(options.proofKey ?? agentKey, 'POST', TOKEN_ENDPOINT, proofOptions);
  return call('/oauth/token', { method: 'POST', headers, body: new URLSearchParams(fields).toString() });
}

export type IssuedToken = {
  access_token: string;
  token_type: string;
  expires_in: number;
  scope: string;
  authorization_details: Record<string, unknown>[];
  account_id: string;
  account_created: boolean;
};

/** The happy path in one call: a fresh attestation traded for a token. */
export async function obtainToken(options: AttestationOptions): Promise<{ attestation: Attestation; token: IssuedToken }> {
  const attestation = await signAttestation(options);
  const res = await tokenRequest(options.agent, attestation);
  if (res.status !== 200) throw new Error(`token request failed: ${res.status} ${await res.text()}`);
  return { attestation, token: (await res.json()) as IssuedToken };
}

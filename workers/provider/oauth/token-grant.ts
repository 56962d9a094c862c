// The JWT bearer grant (RFC 7523) with a DPoP proof (RFC 9449): an agent
// trades an orchestrator's attestation for an access token bound to its key.
// Every check of PROTOCOL.md §2.3, in order, each refusal audited.
import { decodeJwt, jwtVerify, type JWTPayload } from 'jose';
import { DpopRefused, verifyDpopProof } from '../../lib/dpop';
import { checkJwsHeader, JwsRefused, ORCHESTRATOR_ALGS } from '../../lib/jws';
import { issuerKeys } from '../../lib/jwks-cache';
import { MandateDetailSchema, type MandateDetail } from '../../lib/schemas/mandates';
import { publishedCatalog } from '../catalog';
import { ledgerOf, providerConfig, SYSTEM_CHAIN, type ProviderBindings } from '../env';
import { accountLinkedTo, grantLookup, humanAccountByEmail, openLinkRequest, provisionAccount } from '../store/accounts';
import { ACCESS_TOKEN_LIFETIME_S, signAccessToken } from './access-tokens';
import { OAuthError } from '../../lib/oauth-error';

export const JWT_BEARER = 'urn:ietf:params:oauth:grant-type:jwt-bearer';
const CLOCK_SKEW_S = 60;
const MAX_ASSERTION_LIFETIME_S = 300;

export type TokenRequest = { grant_type?: string; assertion?: string; scope?: string; client_id?: string; dpop?: string };

export type TokenResponse = {
  access_token: string;
  token_type: 'DPoP';
  expires_in: number;
  scope: string;
  authorization_details: MandateDetail[];
  account_id: string;
  account_created: boolean;
};

type Attested = { iss: string; sub: string; agent_id: string; jkt: string; jti: string; exp: number; detail: MandateDetail; email: string | null; email_verified: boolean };

const invalidGrant = (description: string) => new OAuthError(400, 'invalid_grant', description);

/** Refusals before the account is known are written to the provider's own chain. */
async function refuse(env: ProviderBindings, error: OAuthError, context: { agent?: string; mandate?: string } = {}): Promise<never> {
  await ledgerOf(env, SYSTEM_CHAIN).recordRefusal(SYSTEM_CHAIN, {
    actor: { type: context.agent ? 'agent' : 'system', id: context.agent ?? 'unknown' },
    action: 'token.issue',
    reason: error.error,
    mandate_id: context.mandate,
    related: [error.description.slice(0, 200)],
  });
  throw error;
}

async function verifyAttestation(env: ProviderBindings, assertion: string): Promise<Attested> {
  const config = providerConfig(env);
  try {
    const header = checkJwsHeader(assertion, { algorithms: ORCHESTRATOR_ALGS });
    if (header.typ !== 'oauth-id-jag+jwt') throw new JwsRefused('typ must be oauth-id-jag+jwt');
  } catch (error) {
    return refuse(env, invalidGrant(`The assertion is refused: ${(error as Error).message}.`));
  }
  let unverified: JWTPayload;
  try {
    unverified = decodeJwt(assertion);
  } catch {
    return refuse(env, invalidGrant('The assertion is not a JWT.'));
  }
  const iss = typeof unverified.iss === 'string' ? unverified.iss : '';
  if (!config.TRUSTED_ORCHESTRATORS.includes(iss)) return refuse(env, invalidGrant('The assertion comes from an issuer this provider does not trust.'));

  let payload: JWTPayload;
  try {
    ({ payload } = await jwtVerify(assertion, issuerKeys(iss), {
      typ: 'oauth-id-jag+jwt',
      algorithms: ORCHESTRATOR_ALGS,
      issuer: iss,
      audience: config.PUBLIC_BASE_URL,
      clockTolerance: CLOCK_SKEW_S,
      requiredClaims: ['exp', 'iat', 'jti', 'sub'],
    }));
  } catch (error) {
    const code = (error as { code?: string }).code ?? '';
    const reason =
      code === 'ERR_JWT_EXPIRED' ? 'it has expired' : code === 'ERR_JWT_CLAIM_VALIDATION_FAILED' ? `claim check failed (${(error as Error).message})` : 'its signature does not verify';
    return refuse(env, invalidGrant(`The assertion is refused: ${reason}.`));
  }
  const now = Math.floor(Date.now() / 1000);
  if (payload.iat! > now + CLOCK_SKEW_S) return refuse(env, invalidGrant('The assertion is issued in the future.'));
  if (payload.exp! - payload.iat! > MAX_ASSERTION_LIFETIME_S) return refuse(env, invalidGrant('The assertion lives longer than 300 s.'));

  const agentId = typeof payload.client_id === 'string' ? payload.client_id : '';
  const act = payload.act as { sub?: unknown } | undefined;
  const jkt = (payload.cnf as { jkt?: unknown } | undefined)?.jkt;
  const details = Array.isArray(payload.authorization_details) ? payload.authorization_details : [];
  // Fail closed: exactly one entry, of the one type we understand.
  const detail = details.length === 1 ? MandateDetailSchema.safeParse(details[0]) : null;
  if (!agentId || act?.sub !== agentId || typeof jkt !== 'string' || !detail?.success) {
    return refuse(env, invalidGrant('The assertion lacks client_id, act, cnf.jkt or a single oap_mandate authorization detail.'), { agent: agentId || undefined });
  }
  return {
    iss,
    sub: payload.sub!,
    agent_id: agentId,
    jkt,
    jti: payload.jti!,
    exp: payload.exp!,
    detail: detail.data,
    email: typeof payload.email === 'string' ? payload.email.toLowerCase() : null,
    email_verified: payload.email_verified === true,
  };
}

/** Scopes are those of the services the mandate allows here; a narrower `scope` may be asked for. */
function grantedScope(env: ProviderBindings, detail: MandateDetail, requested: string | undefined): string[] {
  const services = publishedCatalog(providerConfig(env)).catalog.services.filter((s) => detail.services.includes(s.id));
  const allowed = [...new Set(services.flatMap((s) => s.scopes))].sort();
  if (requested === undefined || requested.trim() === '') return allowed;
  const asked = [...new Set(requested.split(' ').filter(Boolean))];
  const beyond = asked.filter((s) => !allowed.includes(s));
  if (beyond.length) throw new OAuthError(400, 'invalid_scope', `Not allowed by the mandate: ${beyond.join(' ')}.`);
  return asked.sort();
}

export async function exchangeAttestation(env: ProviderBindings, request: TokenRequest): Promise<TokenResponse> {
  const config = providerConfig(env);
  if (request.grant_type !== JWT_BEARER) throw new OAuthError(400, 'unsupported_grant_type', `Only ${JWT_BEARER} is supported.`);
  if (!request.assertion) throw new OAuthError(400, 'invalid_request', 'assertion is required.');

  const attested = await verifyAttestation(env, request.assertion);
  const context = { agent: attested.agent_id, mandate: attested.detail.mandate_id };
  if (request.client_id !== undefined && request.client_id !== attested.agent_id) {
    return refuse(env, new OAuthError(400, 'invalid_client', 'client_id differs from the assertion’s.'), context);
  }
  let proof;
  try {
    proof = await verifyDpopProof(request.dpop, { method: 'POST', url: `${config.PUBLIC_BASE_URL}/oauth/token` });
  } catch (error) {
    return refuse(env, new OAuthError(400, 'invalid_dpop_proof', error instanceof DpopRefused ? error.message : 'invalid proof'), context);
  }
  if (proof.jkt !== attested.jkt) return refuse(env, new OAuthError(400, 'invalid_dpop_proof', 'The DPoP proof is not signed by the key the assertion is bound to.'), context);
  // A proof is single use per key, whichever principal's attestation comes with it: checked in the
  // key's own ledger, before anything (an account) can be created. The grant lookup only reads, so
  // it runs meanwhile rather than after.
  const [proofIsFresh, lookup] = await Promise.all([
    ledgerOf(env, `key:${proof.jkt}`).consumeNonce(`dpop:${proof.jkt}:${proof.jti}`, Date.now() + 5 * 60 * 1000),
    grantLookup(env.DB, attested.iss, attested.sub, { mandate: attested.detail.mandate_id, agent: attested.agent_id }),
  ]);
  if (!proofIsFresh) return refuse(env, new OAuthError(400, 'invalid_dpop_proof', 'This DPoP proof was already used.'), context);
  if (Date.parse(attested.detail.expires_at) <= Date.now()) return refuse(env, invalidGrant('The mandate has expired.'), context);
  if (lookup.revoked) return refuse(env, invalidGrant('The mandate or the agent has been revoked.'), context);
  let scope: string[];
  try {
    scope = grantedScope(env, attested.detail, request.scope);
  } catch (error) {
    return refuse(env, error as OAuthError, context);
  }

  // The account: linked already, or an existing human's account that needs the human's consent, or a new one.
  let account = lookup.account;
  let created = false;
  if (!account && attested.email && attested.email_verified) {
    const existing = await humanAccountByEmail(env.DB, attested.email);
    if (existing && existing.email_verified === 1 && !(await accountLinkedTo(env.DB, existing.id, attested.iss))) {
      const link = await openLinkRequest(env.DB, {
        iss: attested.iss,
        sub: attested.sub,
        email: attested.email,
        account_id: existing.id,
        agent_id: attested.agent_id,
        mandate_id: attested.detail.mandate_id,
      });
      await ledgerOf(env, existing.id).recordRefusal(existing.id, {
        actor: { type: 'agent', id: attested.agent_id },
        action: 'token.issue',
        reason: 'account_link_required',
        mandate_id: attested.detail.mandate_id,
        related: [link.id],
      });
      throw new OAuthError(400, 'account_link_required', 'An account with this verified email exists: its owner must confirm the link.', {
        link_url: `${config.PUBLIC_BASE_URL}/link/${link.id}`,
      });
    }
  }
  if (!account) {
    const provisioned = await provisionAccount(env.DB, attested.iss, attested.sub, attested.email, attested.email_verified);
    account = { account_id: provisioned.account_id, linked_via: 'auto' };
    created = provisioned.created;
  }

  const tokenJti = `tok_${crypto.randomUUID().replaceAll('-', '')}`;
  const now = Math.floor(Date.now() / 1000);
  const exp = Math.min(now + ACCESS_TOKEN_LIFETIME_S, Math.floor(Date.parse(attested.detail.expires_at) / 1000));
  // Signed while the ledger records the issue (its single-use checks, its audit event): the token leaves only if it is recorded.
  const [recorded, accessToken] = await Promise.all([
    ledgerOf(env, account.account_id).recordTokenIssue(account.account_id, {
      iss: attested.iss,
      assertion_jti: attested.jti,
      assertion_exp_ms: attested.exp * 1000,
      dpop_jkt: proof.jkt,
      agent_id: attested.agent_id,
      mandate_id: attested.detail.mandate_id,
      token_jti: tokenJti,
      scope: scope.join(' '),
      account_created: created,
    }),
    signAccessToken(env, {
      jti: tokenJti,
      account_id: account.account_id,
      agent_id: attested.agent_id,
      orchestrator: attested.iss,
      jkt: attested.jkt,
      scope,
      detail: attested.detail,
      exp,
    }),
  ]);
  if (!recorded.ok) throw new OAuthError(400, recorded.code, recorded.detail);
  return {
    access_token: accessToken,
    token_type: 'DPoP',
    expires_in: exp - now,
    scope: scope.join(' '),
    authorization_details: [attested.detail],
    account_id: account.account_id,
    account_created: created,
  };
}

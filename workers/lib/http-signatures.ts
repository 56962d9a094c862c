// RFC 9421 HTTP message signatures as OAP uses them on paid calls (PROTOCOL.md
// §3.1): the agent signs ("@method" "@target-uri" "content-digest") with its
// Ed25519 key, with created, expires, nonce, keyid (the key's thumbprint) and
// tag="oap"; Content-Digest is RFC 9530 sha-256. Verification rebuilds the
// signature base from what was received and checks it against the agent's key.
import { parseDictionary, serializeInnerList, type InnerList } from 'structured-headers';
import type { JWK } from 'jose';
import { base64url } from './jws';

export const COVERED_COMPONENTS = ['@method', '@target-uri', 'content-digest'] as const;
export const SIGNATURE_TAG = 'oap';
const MAX_FUTURE_S = 60;
const MAX_LIFETIME_S = 300;

const toBase64 = (bytes: Uint8Array) => btoa(String.fromCharCode(...bytes));
const fromBase64 = (text: string) => Uint8Array.from(atob(text), (c) => c.charCodeAt(0));

/** RFC 9530: `sha-256=:<base64>:` of the body bytes. */
export async function contentDigest(body: string | Uint8Array): Promise<string> {
  const bytes = typeof body === 'string' ? new TextEncoder().encode(body) : body;
  return `sha-256=:${toBase64(new Uint8Array(await crypto.subtle.digest('SHA-256', bytes)))}:`;
}

export type SignatureParams = { created: number; expires: number; nonce: string; keyid: string; tag: string; alg?: string };

function signatureParamsValue(params: SignatureParams): string {
  const list: InnerList = [
    COVERED_COMPONENTS.map((c) => [c, new Map()] as [string, Map<string, never>]),
    new Map<string, string | number>([
      ['created', params.created],
      ['expires', params.expires],
      ['nonce', params.nonce],
      ['keyid', params.keyid],
      ...(params.alg ? ([['alg', params.alg]] as [string, string][]) : []),
      ['tag', params.tag],
    ]),
  ] as unknown as InnerList;
  return serializeInnerList(list);
}

/** RFC 9421 §2.5: one line per covered component, then "@signature-params". */
export function signatureBase(request: { method: string; targetUri: string; contentDigest: string }, paramsValue: string): string {
  return [
    `"@method": ${request.method.toUpperCase()}`,
    `"@target-uri": ${request.targetUri}`,
    `"content-digest": ${request.contentDigest}`,
    `"@signature-params": ${paramsValue}`,
  ].join('\n');
}

/** Signs a request as an agent does (the SDK and tests use this). */
export async function signRequest(input: {
  method: string;
  targetUri: string;
  body: string;
  privateKey: CryptoKey;
  keyid: string;
  now?: number;
  nonce?: string;
  lifetimeS?: number;
  /** The Content-Digest to send (several digests, say), the body's sha-256 unless given. */
  contentDigest?: string;
}): Promise<{ 'content-digest': string; 'signature-input': string; signature: string }> {
  const created = input.now ?? Math.floor(Date.now() / 1000);
  const params = { created, expires: created + (input.lifetimeS ?? MAX_LIFETIME_S), nonce: input.nonce ?? base64url(crypto.getRandomValues(new Uint8Array(16))), keyid: input.keyid, alg: 'ed25519', tag: SIGNATURE_TAG };
  const digest = input.contentDigest ?? (await contentDigest(input.body));
  const paramsValue = signatureParamsValue(params);
  const base = signatureBase({ method: input.method, targetUri: input.targetUri, contentDigest: digest }, paramsValue);
  const signature = new Uint8Array(await crypto.subtle.sign('Ed25519', input.privateKey, new TextEncoder().encode(base)));
  return { 'content-digest': digest, 'signature-input': `sig1=${paramsValue}`, signature: `sig1=:${toBase64(signature)}:` };
}

export class SignatureRefused extends Error {}

export type VerifiedSignature = { params: SignatureParams; base: string; label: string };

/**
 * Whether a Content-Digest (an RFC 9530 dictionary, whatever its spacing; digests by other algorithms a sender adds
 * are ignored) holds the body's sha-256, once.
 */
async function digestMatches(header: string, body: string): Promise<boolean> {
  // A dictionary keeps the last of a repeated key: two sha-256 members would leave the stored evidence ambiguous.
  if (header.split(',').filter((member) => /^\s*sha-256\s*(=|;|$)/.test(member)).length !== 1) return false;
  let claimed;
  try {
    claimed = parseDictionary(header).get('sha-256')?.[0];
  } catch {
    return false;
  }
  return claimed instanceof ArrayBuffer && `sha-256=:${toBase64(new Uint8Array(claimed))}:` === (await contentDigest(body));
}

/**
 * Verifies the agent's signature over a received request: the `oap`-tagged
 * signature must cover exactly our components, be fresh, name `expectedKeyId`,
 * and verify with `publicJwk`; Content-Digest must match the body.
 */
export async function verifyRequestSignature(
  request: { method: string; targetUri: string; body: string; contentDigest: string | undefined; signatureInput: string | undefined; signature: string | undefined },
  publicJwk: JWK,
  expectedKeyId: string,
  now = Math.floor(Date.now() / 1000),
): Promise<VerifiedSignature> {
  if (!request.contentDigest || !request.signatureInput || !request.signature) throw new SignatureRefused('Content-Digest, Signature-Input and Signature are required');
  if (!(await digestMatches(request.contentDigest, request.body))) throw new SignatureRefused('Content-Digest has no sha-256 of the body');
  let inputs, signatures;
  try {
    inputs = parseDictionary(request.signatureInput);
    signatures = parseDictionary(request.signature);
  } catch {
    throw new SignatureRefused('Signature-Input or Signature is not a structured field dictionary');
  }
  const entry = [...inputs.entries()].find(([, value]) => Array.isArray(value[0]) && (value[1] as Map<string, unknown>).get('tag') === SIGNATURE_TAG);
  if (!entry) throw new SignatureRefused('no signature tagged "oap"');
  const [label, value] = entry;
  const components = (value[0] as [unknown, unknown][]).map(([item]) => item);
  if (components.length !== COVERED_COMPONENTS.length || components.some((c, i) => c !== COVERED_COMPONENTS[i])) {
    throw new SignatureRefused(`the signature must cover ${COVERED_COMPONENTS.map((c) => `"${c}"`).join(' ')}`);
  }
  const raw = value[1] as Map<string, unknown>;
  const params: SignatureParams = {
    created: Number(raw.get('created')),
    expires: Number(raw.get('expires')),
    nonce: String(raw.get('nonce') ?? ''),
    keyid: String(raw.get('keyid') ?? ''),
    tag: SIGNATURE_TAG,
    ...(raw.has('alg') ? { alg: String(raw.get('alg')) } : {}),
  };
  if (!Number.isInteger(params.created) || !Number.isInteger(params.expires)) throw new SignatureRefused('created and expires are required');
  if (params.created > now + MAX_FUTURE_S) throw new SignatureRefused('created is in the future');
  if (params.expires <= now) throw new SignatureRefused('the signature has expired');
  if (params.expires - params.created > MAX_LIFETIME_S) throw new SignatureRefused('expires is more than 300 s after created');
  if (params.nonce.length < 8) throw new SignatureRefused('a nonce is required');
  if (params.alg !== undefined && params.alg !== 'ed25519') throw new SignatureRefused('alg must be ed25519');
  if (params.keyid !== expectedKeyId) throw new SignatureRefused('keyid is not the key this token is bound to');
  const signed = signatures.get(label);
  const bytes = signed && !Array.isArray(signed[0]) && signed[0] instanceof ArrayBuffer ? new Uint8Array(signed[0]) : null;
  if (!bytes) throw new SignatureRefused(`no Signature for ${label}`);
  const base = signatureBase({ method: request.method, targetUri: request.targetUri, contentDigest: request.contentDigest }, serializeInnerList(value as InnerList));
  const key = await crypto.subtle.importKey('jwk', { kty: 'OKP', crv: 'Ed25519', x: String(publicJwk.x) }, { name: 'Ed25519' }, false, ['verify']);
  if (!(await crypto.subtle.verify('Ed25519', key, bytes, new TextEncoder().encode(base)))) throw new SignatureRefused('the signature does not verify');
  return { params, base, label };
}

export { fromBase64 };

// The agent's RFC 9421 signature over a paid call (workers/lib/http-signatures.ts),
// and its Content-Digest as RFC 9530 writes it: a dictionary, of which the
// sha-256 member must be the body's, whatever else a sender adds.
import { describe, expect, it } from 'vitest';
import { contentDigest, signRequest, SignatureRefused, verifyRequestSignature } from '../../workers/lib/http-signatures';
import { newAgentKey } from '../support/agent-keys';

const url = 'https://cloud.example/v1/resources';
const body = JSON.stringify({ service: 'domain', plan: 'com-1y', parameters: { name: 'digest.com' } });

async function verify(digest: string | undefined, sentBody = body) {
  const key = await newAgentKey();
  const signed = await signRequest({ method: 'POST', targetUri: url, body, privateKey: key.privateKey, keyid: key.jkt, ...(digest ? { contentDigest: digest } : {}) });
  return verifyRequestSignature({ method: 'POST', targetUri: url, body: sentBody, contentDigest: signed['content-digest'], signatureInput: signed['signature-input'], signature: signed.signature }, key.jwk, key.jkt);
}

describe('Content-Digest (RFC 9530)', () => {
  it('takes the sha-256 member of the dictionary, beside other algorithms and in any spacing', async () => {
    const sha256 = (await contentDigest(body)).slice('sha-256='.length);
    const sha512 = `:${btoa(String.fromCharCode(...new Uint8Array(await crypto.subtle.digest('SHA-512', new TextEncoder().encode(body)))))}:`;
    expect((await verify(undefined)).params.tag).toBe('oap');
    expect((await verify(`sha-512=${sha512},sha-256=${sha256}`)).params.tag).toBe('oap');
    expect((await verify(`sha-256=${sha256} ,  sha-512=${sha512}`)).params.tag).toBe('oap');
  });

  it('refuses a digest without sha-256, of another body, or not a dictionary', async () => {
    const other = await contentDigest('{}');
    const sha512 = `:${btoa(String.fromCharCode(...new Uint8Array(await crypto.subtle.digest('SHA-512', new TextEncoder().encode(body)))))}:`;
    const right = (await contentDigest(body)).slice('sha-256='.length);
    const wrong = other.slice('sha-256='.length);
    // No sha-256, another body's, not a byte sequence, a boolean, a list; and two sha-256 members, the right one last.
    for (const digest of [`sha-512=${sha512}`, other, 'sha-256=not-bytes', 'sha-256', `sha-256=(${right})`, `sha-256=${wrong}, sha-256=${right}`]) {
      await expect(verify(digest), digest).rejects.toThrow(SignatureRefused);
    }
    // The body sent is not the one digested and signed.
    await expect(verify(undefined, '{"service":"domain"}')).rejects.toThrow(SignatureRefused);
  });
});

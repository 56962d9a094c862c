// Signed chain heads (issue: evidence): the role signs (principal, seq, hash,
// time) with its published key. Whoever holds one can later tell that a trail
// was cut short or rewritten before that point, without trusting the role.
import { z } from '@hono/zod-openapi';
import { signJwt } from './jws';
import { loadSigningKeys } from './signing-keys';

export const SignedHeadSchema = z
  .object({ seq: z.number().int(), hash: z.string(), time: z.string(), jws: z.string().openapi({ description: 'Compact JWS, typ oap-audit-head+jwt, by the role’s key' }) })
  .openapi('SignedAuditHead');

export type SignedHead = z.infer<typeof SignedHeadSchema>;

export async function signAuditHead(env: { SIGNING_KEYS?: string; PUBLIC_BASE_URL?: string }, head: { principal: string; seq: number; hash: string }) {
  const time = new Date().toISOString();
  const jws = await signJwt(await loadSigningKeys(env.SIGNING_KEYS), 'oap-audit-head+jwt', {
    iss: env.PUBLIC_BASE_URL,
    sub: head.principal,
    seq: head.seq,
    hash: head.hash,
    time,
    iat: Math.floor(Date.parse(time) / 1000),
  });
  return { time, jws };
}

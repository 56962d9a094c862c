// Pairwise subject identifiers (PROTOCOL.md §2.2): a principal is known to each
// provider by a `sub` of its own, random, so providers cannot join their records.
import { randomToken } from '../../lib/jws';

export async function pairwiseSubject(db: D1Database, principalId: string, providerId: string): Promise<string> {
  await db
    .prepare('INSERT OR IGNORE INTO pairwise_subjects (principal_id, provider_id, sub) VALUES (?1, ?2, ?3)')
    .bind(principalId, providerId, `sub_${randomToken(18)}`)
    .run();
  const row = await db
    .prepare('SELECT sub FROM pairwise_subjects WHERE principal_id = ?1 AND provider_id = ?2')
    .bind(principalId, providerId)
    .first<{ sub: string }>();
  return row!.sub;
}

export async function principalOfSubject(db: D1Database, providerId: string, sub: string): Promise<string | null> {
  const row = await db.prepare('SELECT principal_id FROM pairwise_subjects WHERE provider_id = ?1 AND sub = ?2').bind(providerId, sub).first<{ principal_id: string }>();
  return row?.principal_id ?? null;
}

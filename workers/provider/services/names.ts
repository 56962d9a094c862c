// Names a service hands out once across every account of this provider (a
// domain, a Worker's name), claimed in D1 by the resource that holds them.
import type { ProviderBindings } from '../env';

/** Claims `name` for the resource; true if it now holds it (also when it already did: a repeated saga step). */
export async function claimName(env: ProviderBindings, kind: string, name: string, holder: { account_id: string; resource_id: string }) {
  const result = await claimNameStatement(env.DB, kind, name, holder).run();
  return result.meta.changes === 1;
}

/** The claim as a statement, for a service that commits more with it in one batch (a domain's label keys). */
export function claimNameStatement(db: D1Database, kind: string, name: string, holder: { account_id: string; resource_id: string }) {
  return db
    .prepare(
      `INSERT INTO service_names (kind, name, account_id, resource_id, created_at) VALUES (?1, ?2, ?3, ?4, ?5)
       ON CONFLICT (kind, name) DO UPDATE SET name = name WHERE resource_id = excluded.resource_id`,
    )
    .bind(kind, name, holder.account_id, holder.resource_id, new Date().toISOString());
}

export async function nameHolder(env: ProviderBindings, kind: string, name: string) {
  return env.DB.prepare('SELECT account_id, resource_id FROM service_names WHERE kind = ?1 AND name = ?2').bind(kind, name).first<{ account_id: string; resource_id: string }>();
}

export async function releaseNames(env: ProviderBindings, resourceId: string) {
  await env.DB.prepare('DELETE FROM service_names WHERE resource_id = ?1').bind(resourceId).run();
}

// Names a service hands out once across every account of this provider (a
// domain, a Worker's name), claimed in D1 by the resource that holds them.
import type { ProviderBindings } from '../env';

/**
 * Claims `name` for the resource, as a statement for a batch (a domain commits its label keys with it);
 * a repeated saga step finds the name already its own.
 */
export function claimNameStatement(db: D1Database, kind: string, name: string, holder: { account_id: string; resource_id: string }) {
  return db
    .prepare(
      `INSERT INTO service_names (kind, name, account_id, resource_id, created_at) VALUES (?1, ?2, ?3, ?4, ?5)
       ON CONFLICT (kind, name) DO UPDATE SET name = name WHERE resource_id = excluded.resource_id`,
    )
    .bind(kind, name, holder.account_id, holder.resource_id, new Date().toISOString());
}

export async function releaseNames(env: ProviderBindings, resourceId: string) {
  await env.DB.prepare('DELETE FROM service_names WHERE resource_id = ?1').bind(resourceId).run();
}

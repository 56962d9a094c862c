// D1 queries for the Workers agents deploy (worker_deployments, one row per
// name): written by the worker-script backend, read by the runner through the
// WorkerDeployments entrypoint on every request it serves. The version a
// redeploy replaced waits in worker_deployments_replaced until the redeploy is
// final, so that undoing the redeploy puts it back.

export type Deployment = {
  name: string;
  account_id: string;
  resource_id: string;
  version: number;
  module_sha256: string;
  module_bytes: number;
  suspended_at: string | null;
};

const DEPLOYMENT_COLUMNS = 'name, account_id, resource_id, version, module_sha256, module_bytes, suspended_at';

export function deploymentByName(db: D1Database, name: string) {
  return db.prepare(`SELECT ${DEPLOYMENT_COLUMNS} FROM worker_deployments WHERE name = ?1`).bind(name).first<Deployment>();
}

/**
 * Puts the module behind `name` for the resource, and returns the row that now
 * holds the name. A first deploy is version 1; a redeploy by the account that
 * holds the name takes the row over with the next version (a new isolate at
 * the runner) and keeps the version it replaces; the same resource again (a
 * saga step repeated) changes nothing; another account's name is left alone,
 * and its row comes back.
 */
export async function deployModule(
  db: D1Database,
  deployment: { name: string; account_id: string; resource_id: string; module: string; module_sha256: string; module_bytes: number },
): Promise<Deployment> {
  const [, , current] = await db.batch<Deployment>([
    db
      .prepare(
        `INSERT INTO worker_deployments_replaced (resource_id, name, previous_resource_id, version, module, module_sha256, module_bytes, suspended_at, deployed_at)
         SELECT ?3, name, resource_id, version, module, module_sha256, module_bytes, suspended_at, deployed_at FROM worker_deployments
         WHERE name = ?1 AND account_id = ?2 AND resource_id != ?3
         ON CONFLICT (resource_id) DO NOTHING`,
      )
      .bind(deployment.name, deployment.account_id, deployment.resource_id),
    db
      .prepare(
        `INSERT INTO worker_deployments (name, account_id, resource_id, version, module, module_sha256, module_bytes, suspended_at, deployed_at)
         VALUES (?1, ?2, ?3, 1, ?4, ?5, ?6, NULL, ?7)
         ON CONFLICT (name) DO UPDATE SET resource_id = excluded.resource_id, version = worker_deployments.version + 1, module = excluded.module,
           module_sha256 = excluded.module_sha256, module_bytes = excluded.module_bytes, suspended_at = NULL, deployed_at = excluded.deployed_at
         WHERE worker_deployments.account_id = excluded.account_id AND worker_deployments.resource_id != excluded.resource_id`,
      )
      .bind(deployment.name, deployment.account_id, deployment.resource_id, deployment.module, deployment.module_sha256, deployment.module_bytes, new Date().toISOString()),
    db.prepare(`SELECT ${DEPLOYMENT_COLUMNS} FROM worker_deployments WHERE name = ?1`).bind(deployment.name),
  ]);
  return current!.results[0]!;
}

/** The source of one version; null once it was replaced or removed. */
export async function moduleOf(db: D1Database, resourceId: string, version: number): Promise<string | null> {
  const row = await db.prepare('SELECT module FROM worker_deployments WHERE resource_id = ?1 AND version = ?2').bind(resourceId, version).first<{ module: string }>();
  return row?.module ?? null;
}

/**
 * Removes what the resource serves, if it still holds its name (a replaced
 * version holds nothing). A redeploy removed before it was final gives the
 * name back to the version it replaced; a replaced version removed for good
 * (retired, or deleted) can no longer come back.
 */
export async function removeDeployment(db: D1Database, resourceId: string) {
  await db.batch([
    db
      .prepare(
        `UPDATE worker_deployments SET resource_id = r.previous_resource_id, version = r.version, module = r.module, module_sha256 = r.module_sha256,
           module_bytes = r.module_bytes, suspended_at = r.suspended_at, deployed_at = r.deployed_at
         FROM worker_deployments_replaced r WHERE r.resource_id = ?1 AND worker_deployments.resource_id = ?1`,
      )
      .bind(resourceId),
    db.prepare('DELETE FROM worker_deployments WHERE resource_id = ?1').bind(resourceId),
    db.prepare('DELETE FROM worker_deployments_replaced WHERE resource_id = ?1 OR previous_resource_id = ?1').bind(resourceId),
  ]);
}

export async function suspendDeployment(db: D1Database, resourceId: string) {
  await db.prepare('UPDATE worker_deployments SET suspended_at = ?2 WHERE resource_id = ?1 AND suspended_at IS NULL').bind(resourceId, new Date().toISOString()).run();
}

export async function resumeDeployment(db: D1Database, resourceId: string) {
  await db.prepare('UPDATE worker_deployments SET suspended_at = NULL WHERE resource_id = ?1').bind(resourceId).run();
}

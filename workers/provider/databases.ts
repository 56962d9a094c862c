// A database's data plane: the agent's SQL, run in the resource's object with
// the credential it was given (services/database.ts makes and ends databases).
import type { QueryResult, SqlParam } from '../../durable-objects/database-store';
import { ProblemError } from '../lib/problem';
import type { ProviderBindings } from './env';
import { credentialHash, databaseStore } from './services/database';

const RESOURCE_ID = /^res_[0-9A-Z]{26}$/;

/** RFC 6750 §3: the challenge names the error only when a credential was sent. */
const challenge = (error?: string) => ({ 'WWW-Authenticate': `Bearer realm="database"${error ? `, error="${error}"` : ''}` });

const notFound = () => new ProblemError(404, 'not_found', 'No such database.');

/**
 * The Bearer credential of the request, checked against the database's
 * current one. Returns its hash, which is all the object ever compares.
 */
export async function authorizeDatabase(env: ProviderBindings, resourceId: string, authorization: string | undefined): Promise<string> {
  if (!authorization) throw new ProblemError(401, 'invalid_token', 'The database credential is required: Authorization: Bearer <token>.', {}, challenge());
  const token = /^Bearer +(dbt_[A-Za-z0-9_-]{1,128})$/i.exec(authorization.trim())?.[1];
  if (!token) throw new ProblemError(401, 'invalid_token', 'The database credential is not valid.', {}, challenge('invalid_token'));
  const store = RESOURCE_ID.test(resourceId) ? databaseStore(env, resourceId) : null;
  if (!store) throw notFound();
  const hash = credentialHash(token);
  const access = await store.authorize(hash);
  if (access === 'not_found') throw notFound();
  if (access === 'invalid_token') throw new ProblemError(401, 'invalid_token', 'The database credential is not valid (rotated, or never issued for this database).', {}, challenge('invalid_token'));
  return hash;
}

export async function queryDatabase(env: ProviderBindings, resourceId: string, hash: string, sql: string, params: SqlParam[]): Promise<Omit<QueryResult, 'ok'>> {
  const result = await databaseStore(env, resourceId)!.query(hash, sql, params);
  if (result.ok) {
    const { ok: _, ...body } = result;
    return body;
  }
  switch (result.reason) {
    case 'not_found':
      throw notFound();
    case 'invalid_token':
      // Rotated or deleted between the check and the statement.
      throw new ProblemError(401, 'invalid_token', result.detail, {}, challenge('invalid_token'));
    case 'quota_exceeded':
      throw new ProblemError(403, 'quota_exceeded', `${result.detail} Reads and deletes still work; a larger plan raises the quota.`, { quota: result.quota, usage: result.usage });
    case 'suspended':
      // PROTOCOL.md §3.2: a resource is suspended when a renewal would pass a spend limit.
      throw new ProblemError(402, 'spend_limit_exceeded', result.detail);
    case 'sql_error':
    case 'result_too_large':
      throw new ProblemError(422, 'invalid_request', result.detail);
  }
}

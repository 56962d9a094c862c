// D1 queries of held domains for the squatting guard (PROTOCOL.md §3.3): a
// claim that indexes the label's deletion neighbourhood in the same
// transaction, and the held names whose neighbourhoods meet a given one
// (d1-migrations/provider/0006_domain_skeletons.sql). Lists travel as one JSON
// bind read with json_each, so no query nears D1's limit on bound parameters.
import { claimNameStatement } from '../services/names';

export type HeldDomain = { name: string; account_id: string; seq: number };

/**
 * Claims `name` for the resource and indexes `neighbourhood` for it; the keys
 * are written only if the claim is this resource's, so a lost race leaves
 * nothing behind. Returns the claim's `seq` and the held look-alikes of other
 * accounts (null: another resource holds the name). `seq` orders claims by
 * commit (D1 has one writer), so two look-alikes claimed at once can tell
 * which came first.
 */
export async function claimDomain(db: D1Database, name: string, neighbourhood: string[], holder: { account_id: string; resource_id: string }): Promise<{ seq: number; near: HeldDomain[] } | null> {
  const [, , own, near] = await db.batch([
    claimNameStatement(db, 'domain', name, holder),
    db
      .prepare(
        `INSERT INTO domain_label_keys (neighbour, name)
         SELECT value, ?2 FROM json_each(?1)
         WHERE EXISTS (SELECT 1 FROM service_names WHERE kind = 'domain' AND name = ?2 AND resource_id = ?3)
         ON CONFLICT DO NOTHING`,
      )
      .bind(JSON.stringify(neighbourhood), name, holder.resource_id),
    db.prepare(`SELECT rowid AS seq FROM service_names WHERE kind = 'domain' AND name = ?1 AND resource_id = ?2`).bind(name, holder.resource_id),
    // In the same transaction: the look-alikes other accounts hold, to tell which of two racing claims came first.
    heldNearStatement(db, neighbourhood, holder.account_id),
  ]);
  const seq = (own?.results[0] as { seq: number } | undefined)?.seq;
  return seq === undefined ? null : { seq, near: (near?.results ?? []) as HeldDomain[] };
}

/**
 * Held domains whose neighbourhood shares a key with `neighbourhood`, except
 * those of `exceptAccount`. Written as nested IN lookups so that SQLite probes
 * the key index first: as a join, it chose to scan every held domain.
 */
export async function heldNear(db: D1Database, neighbourhood: string[], exceptAccount: string | null): Promise<HeldDomain[]> {
  const { results } = await heldNearStatement(db, neighbourhood, exceptAccount).all<HeldDomain>();
  return results;
}

function heldNearStatement(db: D1Database, neighbourhood: string[], exceptAccount: string | null) {
  return db
    .prepare(
      `SELECT name, account_id, rowid AS seq FROM service_names
       WHERE kind = 'domain'
         AND name IN (SELECT name FROM domain_label_keys WHERE neighbour IN (SELECT value FROM json_each(?1)))
         AND (?2 IS NULL OR account_id != ?2)`,
    )
    .bind(JSON.stringify(neighbourhood), exceptAccount);
}

/** Whether `name` is held by anyone, and the held look-alikes of other accounts: one round trip for the guard. */
export async function domainLookup(db: D1Database, name: string, neighbourhood: string[], exceptAccount: string | null): Promise<{ taken: boolean; near: HeldDomain[] }> {
  const [holder, near] = await db.batch([db.prepare(`SELECT 1 AS x FROM service_names WHERE kind = 'domain' AND name = ?1`).bind(name), heldNearStatement(db, neighbourhood, exceptAccount)]);
  return { taken: (holder?.results.length ?? 0) > 0, near: (near?.results ?? []) as HeldDomain[] };
}

/** Which of `names` (ASCII) some account holds. */
export async function takenDomains(db: D1Database, names: string[]): Promise<Set<string>> {
  const { results } = await db
    .prepare(`SELECT name FROM service_names WHERE kind = 'domain' AND name IN (SELECT value FROM json_each(?1))`)
    .bind(JSON.stringify(names))
    .all<{ name: string }>();
  return new Set(results.map((r) => r.name));
}

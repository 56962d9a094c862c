// §4: every refusal of a paid call is in the account's trail. Most are recorded
// by the route (token-auth.ts auditRefusals); these the account's ledger has
// recorded already, with the state they refused, and are not recorded twice.

const recorded = new WeakSet<Error>();

/** Marks `error` as a refusal the ledger recorded already (a limit, the service's own check, the orchestrator's decline). */
export function recordedAlready<E extends Error>(error: E): E {
  recorded.add(error);
  return error;
}

export const isRecordedAlready = (error: Error) => recorded.has(error);

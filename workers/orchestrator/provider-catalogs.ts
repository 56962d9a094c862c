// The prices each provider publishes (PROTOCOL.md §1: "Prices in the catalog
// are the prices charged"). An agent that signs a creation without
// `expected_price` agrees to the published price, so §3.1's "at this price"
// holds the charge to the provider's catalog; how a plan is billed bounds how
// often it renews (renewal-periods.ts). A copy of each catalog is kept
// for a minute and revalidated with its ETag; a charge that disagrees with the
// copy is checked once more against a fresh read, so that a price the
// provider has just changed is not refused for an old copy.
import { z } from '@hono/zod-openapi';
import { ProblemError } from '../lib/problem';
import { MoneySchema, type Money } from '../lib/schemas/money';
import { type Billing, PlanSchema } from '../lib/schemas/catalog';
import { type OrchestratorBindings, providerBinding, providerOf } from './env';

const MAX_AGE_MS = 60_000;
const RETRY_AFTER_S = 30;

/** Only what prices and bills a plan is read: a catalog otherwise not to this orchestrator's liking still prices its plans. */
const PlansSchema = z.object({
  services: z.array(z.object({ id: z.string(), plans: z.array(z.object({ id: z.string(), price: MoneySchema, billing: PlanSchema.shape.billing.optional().catch(undefined) })) })),
});

type Plan = { price: Money; billing: Billing | null };
type Copy = { etag: string | null; fetchedAt: number; plans: Map<string, Plan> };
const copies = new Map<string, Copy>();
/** When each provider's catalog last could not be read: a best-effort read does not try again before RETRY_AFTER_S. */
const failures = new Map<string, number>();

const unavailable = (providerId: string) =>
  new ProblemError(503, 'internal_error', `The catalog of provider ${providerId} could not be read, so the charge could not be checked against it; try again later.`, {}, { 'Retry-After': String(RETRY_AFTER_S) });

async function read(env: OrchestratorBindings, providerId: string, previous: Copy | undefined): Promise<Copy> {
  try {
    const copy = await fetchCopy(env, providerId, previous);
    failures.delete(providerId);
    return copy;
  } catch (error) {
    failures.set(providerId, Date.now());
    throw error;
  }
}

async function fetchCopy(env: OrchestratorBindings, providerId: string, previous: Copy | undefined): Promise<Copy> {
  const provider = providerOf(env, providerId);
  if (!provider) throw unavailable(providerId);
  const binding = providerBinding(env, provider);
  let res: Response;
  try {
    res = await (binding ?? globalThis).fetch(`${provider.url}/v1/catalog`, {
      headers: { accept: 'application/json', ...(previous?.etag ? { 'if-none-match': previous.etag } : {}) },
      redirect: 'manual',
      signal: AbortSignal.timeout(5_000),
    });
  } catch {
    throw unavailable(providerId);
  }
  let copy: Copy;
  if (res.status === 304 && previous) {
    await res.body?.cancel();
    copy = { ...previous, fetchedAt: Date.now() };
  } else {
    const parsed = res.ok ? PlansSchema.safeParse(await res.json().catch(() => null)) : null;
    if (!res.ok) await res.body?.cancel();
    if (!parsed?.success) throw unavailable(providerId);
    const plans = new Map(parsed.data.services.flatMap((s) => s.plans.map((p) => [`${s.id}/${p.id}`, { price: p.price, billing: p.billing ?? null }] as const)));
    copy = { etag: res.headers.get('etag'), fetchedAt: Date.now(), plans };
  }
  copies.set(providerId, copy);
  return copy;
}

const isFresh = (copy: Copy | undefined): copy is Copy => copy !== undefined && Date.now() - copy.fetchedAt < MAX_AGE_MS;

/**
 * Whether `amount` is what `providerId` publishes for `service`/`plan`. Throws
 * a 503 problem when the catalog cannot be read.
 */
export async function isPublishedPrice(env: OrchestratorBindings, providerId: string, service: string, plan: string, amount: Money): Promise<boolean> {
  const matches = (copy: Copy) => {
    const price = copy.plans.get(`${service}/${plan}`)?.price;
    return price !== undefined && price.amount === amount.amount && price.currency === amount.currency;
  };
  const kept = copies.get(providerId);
  const fresh = isFresh(kept);
  const copy = fresh ? kept : await read(env, providerId, kept);
  if (matches(copy)) return true;
  // A copy kept from before may predate a price change: a disagreement is settled by the catalog as it is now.
  return fresh ? matches(await read(env, providerId, kept)) : false;
}

/**
 * How `providerId` bills `service`/`plan` (null when its catalog does not say, or no longer lists the plan). Throws a
 * 503 problem when the catalog cannot be read; `bestEffort` answers null instead, at once while a read failed lately.
 */
export async function planBilling(env: OrchestratorBindings, providerId: string, service: string, plan: string, options: { bestEffort?: boolean } = {}): Promise<Billing | null> {
  const kept = copies.get(providerId);
  if (isFresh(kept)) return kept.plans.get(`${service}/${plan}`)?.billing ?? null;
  if (options.bestEffort && Date.now() - (failures.get(providerId) ?? -Infinity) < RETRY_AFTER_S * 1000) return null;
  try {
    return (await read(env, providerId, kept)).plans.get(`${service}/${plan}`)?.billing ?? null;
  } catch (error) {
    if (options.bestEffort) return null;
    throw error;
  }
}

/** For tests: forget every kept catalog. */
export function forgetProviderCatalogs() {
  copies.clear();
  failures.clear();
}

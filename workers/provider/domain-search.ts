// GET /v1/domains/search: names a registrar would suggest for some keywords,
// across this provider's TLDs, each judged as a registration by an account
// holding nothing would be (PROTOCOL.md §3.3), with its one-year price.
import { ProblemError } from '../lib/problem';
import type { DomainSuggestion } from '../lib/schemas/domains';
import { publishedCatalog } from './catalog';
import { providerConfig, type ProviderBindings } from './env';
import { protectedNames, tldOfPlan } from './services/domain';
import { comparisonKey, deletionNeighbourhood, labelOf, normalizeDomain, searchKeywords, squattingVerdict, suggestNames, type DomainName } from './services/domain-names';
import { heldNear, takenDomains } from './store/domain-labels';

export async function searchDomains(env: ProviderBindings, query: string, limit: number): Promise<DomainSuggestion[]> {
  const service = publishedCatalog(providerConfig(env)).catalog.services.find((s) => s.id === 'domain');
  if (!service) throw new ProblemError(404, 'not_found', 'This provider registers no domains.');
  const plans = new Map(service.plans.filter((p) => p.id.endsWith('-1y')).map((p) => [tldOfPlan(p.id)!, p]));
  const tlds = [...plans.keys()];
  const keywords = searchKeywords(query, tlds);
  if (!keywords) throw badQuery('The query holds no letters or digits to build a name from.');

  const candidates: DomainName[] = [];
  const seen = new Set<string>();
  for (const name of suggestNames(keywords, tlds)) {
    if (candidates.length === limit) break;
    let domain: DomainName;
    try {
      domain = normalizeDomain(name);
    } catch {
      continue; // a suggestion that is not a valid name (a label over 63 octets) is simply not offered
    }
    if (seen.has(domain.ascii)) continue;
    seen.add(domain.ascii);
    candidates.push(domain);
  }
  if (candidates.length === 0) throw badQuery('No valid domain name can be made from these keywords.');

  // Two queries for the whole page: exact holders, and held look-alikes of every label.
  const labels = [...new Set(candidates.map((d) => d.label))];
  const neighbourhood = [...new Set(labels.flatMap((label) => deletionNeighbourhood(comparisonKey(label))))];
  const [taken, held] = await Promise.all([takenDomains(env.DB, candidates.map((d) => d.ascii)), heldNear(env.DB, neighbourhood, null)]);
  const heldLabels = [...new Set(held.map((h) => labelOf(h.name)))];
  const guard = protectedNames(env);
  const refused = new Map(labels.map((label) => [label, squattingVerdict(label, guard, heldLabels) !== null]));

  return candidates.map((domain) => {
    const plan = plans.get(domain.tld)!;
    const reason = taken.has(domain.ascii) ? ('taken' as const) : refused.get(domain.label) ? ('protected' as const) : undefined;
    return { name: domain.ascii, name_unicode: domain.unicode, available: reason === undefined, ...(reason ? { reason } : {}), price: plan.price, plan: plan.id };
  });
}

function badQuery(detail: string) {
  return new ProblemError(422, 'invalid_parameters', detail, { errors: [{ path: '/q', message: detail }] });
}

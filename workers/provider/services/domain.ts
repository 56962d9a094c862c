// `domain` (provider cloud): a name registered for a year, unique across
// accounts, and refused when it imitates a protected name or a name another
// account holds (PROTOCOL.md §3.3; the rules themselves are in domain-names.ts).
import { providerConfig, type ProviderBindings } from '../env';
import { claimDomain, domainLookup } from '../store/domain-labels';
import {
  comparisonKey,
  DEFAULT_PROTECTED_NAMES,
  deletionNeighbourhood,
  InvalidDomainName,
  labelOf,
  normalizeDomain,
  squattingVerdict,
  type DomainName,
  type SquattingVerdict,
} from './domain-names';
import { releaseNames } from './names';
import { ProvisionRefused, registerBackend, type ProvisionContext } from './registry';

const YEAR_MS = 365 * 24 * 3600 * 1000;

/** §3.3: plan ids are `<tld>-<years>y`. */
export function tldOfPlan(plan: string): string | null {
  return /^([a-z0-9-]+)-\d+y$/.exec(plan)?.[1] ?? null;
}

export function protectedNames(env: ProviderBindings): readonly string[] {
  return providerConfig(env).PROTECTED_NAMES ?? DEFAULT_PROTECTED_NAMES;
}

function requestedDomain(ctx: ProvisionContext): DomainName {
  let domain: DomainName;
  try {
    domain = normalizeDomain(String(ctx.parameters.name));
  } catch (error) {
    if (error instanceof InvalidDomainName) throw new ProvisionRefused('invalid_parameters', error.message);
    throw error;
  }
  const tld = tldOfPlan(ctx.plan);
  if (domain.tld !== tld) throw new ProvisionRefused('invalid_parameters', `Plan ${ctx.plan} registers .${tld} names; ${domain.unicode} is not one.`);
  return domain;
}

const unavailable = (domain: DomainName) => new ProvisionRefused('domain_unavailable', `${domain.unicode} is not available.`, 409);

function squattingRefusal(domain: DomainName, verdict: SquattingVerdict) {
  const how = verdict.reason === 'equal' ? 'looks the same as' : 'is one edit away from';
  // A held name is not repeated back: the refusal says only that one exists.
  const what = verdict.against === 'protected' ? `the protected name "${verdict.matched}"` : 'a domain another account holds';
  return new ProvisionRefused('domain_protected', `${domain.unicode} ${how} ${what}.`, 403);
}

registerBackend('domain', {
  describe: {
    name: 'Domain registration',
    description: 'Registers a domain name for one year, renewed yearly. The plan names the TLD; names are checked against protected and held names before any charge.',
    parameters_schema: {
      type: 'object',
      required: ['name'],
      additionalProperties: false,
      properties: { name: { type: 'string', minLength: 3, maxLength: 253, description: 'The full domain, label.tld; IDNs as punycode or Unicode.' } },
    },
    scopes: ['domains:write'],
    provisioning: 'sync',
  },
  // Runs before velocity and before anything is reserved (provisioning.ts), so a refusal costs nothing.
  async check(env: ProviderBindings, ctx) {
    const domain = requestedDomain(ctx);
    const { taken, near } = await domainLookup(env.DB, domain.ascii, deletionNeighbourhood(comparisonKey(domain.label)), ctx.account_id);
    if (taken) throw unavailable(domain);
    const verdict = squattingVerdict(domain.label, protectedNames(env), near.map((h) => labelOf(h.name)));
    if (verdict) throw squattingRefusal(domain, verdict);
  },
  async provision(env, ctx) {
    const domain = requestedDomain(ctx);
    const neighbourhood = deletionNeighbourhood(comparisonKey(domain.label));
    const claim = await claimDomain(env.DB, domain.ascii, neighbourhood, ctx);
    if (claim === null) throw unavailable(domain);
    // Two accounts can pass `check` with look-alikes at the same moment; both
    // claims are indexed now, and the later one gives way (its charge is voided).
    const earlier = claim.near.filter((h) => h.seq < claim.seq);
    const verdict = squattingVerdict(domain.label, [], earlier.map((h) => labelOf(h.name)));
    if (verdict) {
      await releaseNames(env, ctx.resource_id);
      throw squattingRefusal(domain, verdict);
    }
    return { fields: { name: domain.ascii, name_unicode: domain.unicode, expires_at: new Date(Date.now() + YEAR_MS).toISOString() }, credentials: null };
  },
  async deprovision(env, ref) {
    await releaseNames(env, ref.resource_id);
  },
  async renew(_env, ref, until) {
    return { ...ref.fields, expires_at: until.toISOString() };
  },
});

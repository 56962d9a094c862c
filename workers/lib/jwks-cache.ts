// Verification keys of trusted issuers (orchestrators at a provider), cached
// per isolate. A `kid` the cache does not know triggers a refetch, at most
// once per 30 s per issuer (PROTOCOL.md §2.3), so a rotated key is picked up
// at once and a flood of unknown kids cannot hammer the issuer.
import { createRemoteJWKSet, customFetch } from 'jose';

const sets = new Map<string, ReturnType<typeof createRemoteJWKSet>>();

export const JWKS_COOLDOWN_MS = 30_000;
export const JWKS_MAX_AGE_MS = 10 * 60_000;

/**
 * The issuer's JWKS, at `<base>/.well-known/jwks.json` as its discovery
 * document says; `fetcher` is a service binding when one reaches the issuer.
 */
export function issuerKeys(issuer: string, base = issuer, fetcher?: Fetcher) {
  let set = sets.get(issuer);
  if (!set) {
    set = createRemoteJWKSet(new URL(`${base}/.well-known/jwks.json`), {
      cooldownDuration: JWKS_COOLDOWN_MS,
      cacheMaxAge: JWKS_MAX_AGE_MS,
      timeoutDuration: 5_000,
      ...(fetcher ? { [customFetch]: (url: string, init: RequestInit) => fetcher.fetch(url, init) } : {}),
    });
    sets.set(issuer, set);
  }
  return set;
}

/** For tests: forget every cached set. */
export function clearIssuerKeys() {
  sets.clear();
}

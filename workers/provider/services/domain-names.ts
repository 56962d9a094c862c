// Domain names as the `domain` service judges them (PROTOCOL.md §3.3): IDNA
// normalization, the TR39 comparison key, the one-edit test, the squatting
// verdict and registrar-style suggestions. Pure (no I/O), so the guard can be
// reasoned about and tested apart from D1.
import { toUnicode } from 'punycode.js';
import confusablesData from 'unhomoglyph/data.json';

/**
 * Unicode's confusables.txt (v13.0.0) as source → prototype. Since UTS #39
 * v8.0 that file holds only the MA table (SL, SA and ML were dropped), and
 * unhomoglyph keeps every line's first two fields: this is exactly the MA
 * mapping that `skeleton` is defined on. It maps some characters to
 * uppercase prototypes (0 → O, 1 → l), which is why §3.3 lowercases after it.
 */
const PROTOTYPES = new Map<string, string>(Object.entries(confusablesData as Record<string, string>));

/** Brands refused, with their homoglyphs and one-edit neighbours, unless PROTECTED_NAMES replaces the list. */
export const DEFAULT_PROTECTED_NAMES: readonly string[] = [
  'google', 'youtube', 'paypal', 'microsoft', 'outlook', 'apple', 'icloud', 'amazon', 'facebook', 'instagram',
  'whatsapp', 'twitter', 'linkedin', 'cloudflare', 'github', 'gitlab', 'stripe', 'netflix', 'spotify', 'dropbox',
  'adobe', 'salesforce', 'oracle', 'samsung', 'mastercard', 'coinbase', 'binance', 'openai', 'anthropic', 'wellsfargo',
  'docusign',
];

export type DomainName = {
  /** The registrable form: lowercase, IDN labels as punycode (`xn--mnchen-3ya.com`). */
  ascii: string;
  /** The same name with IDN labels decoded (`münchen.com`). */
  unicode: string;
  /** The second-level label in Unicode form: what the squatting guard compares. */
  label: string;
  /** The top-level label, ASCII. */
  tld: string;
};

export class InvalidDomainName extends Error {}

// Label separators UTS #46 maps to '.', besides '.' itself.
const DOTS = '.\u3002\uFF0E\uFF61';
// Only letters, marks, digits, hyphens and dots get to the URL parser: it would
// otherwise read '/', '@', ':' or '%' as URL syntax rather than refuse them.
const ACCEPTED_INPUT = new RegExp(`^[\\p{L}\\p{M}\\p{N}\\-${DOTS}]+$`, 'u');
// RFC 1035 §2.3.1 (LDH) and RFC 1123 §2.1: letters, digits, inner hyphens, 1–63 octets.
const LDH_LABEL = /^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$/;
// An approximation of RFC 5892's PVALID: letters, marks and digits. UTS #46 as
// URL parsers apply it lets symbols and emoji through; IDNA2008 registries do not.
const IDN_LABEL = /^[\p{L}\p{M}\p{N}-]+$/u;

/**
 * `label.tld`, given in Unicode or punycode, to its ASCII and Unicode forms.
 * The URL parser applies UTS #46 (case folding, width mapping, NFC, punycode
 * validity); the checks after it add what UTS #46 leaves to the registry.
 */
export function normalizeDomain(input: string): DomainName {
  if (input.length === 0 || input.length > 253) throw new InvalidDomainName('A domain is 1 to 253 characters.');
  if (!ACCEPTED_INPUT.test(input)) throw new InvalidDomainName('A domain holds only letters, digits, hyphens and dots.');
  const ascii = hostnameOf(input);
  const labels = ascii.split('.');
  if (labels.length !== 2) throw new InvalidDomainName('Only second-level names are registered here: label.tld.');
  for (const label of labels) {
    if (!LDH_LABEL.test(label)) throw new InvalidDomainName(`"${label}" is not a valid label: 1–63 letters, digits or inner hyphens.`);
    // RFC 5891 §4.2.3.1: hyphens in positions 3 and 4 are reserved for A-labels.
    if (label.slice(2, 4) === '--' && !label.startsWith('xn--')) throw new InvalidDomainName(`"${label}" has "--" in positions 3–4, reserved for IDNs.`);
  }
  let unicode: string;
  try {
    unicode = toUnicode(ascii);
  } catch {
    throw new InvalidDomainName(`${ascii} holds invalid punycode.`);
  }
  // An A-label must be the encoding of a valid U-label (RFC 5890 §2.3.2.1):
  // xn--google- decodes to "google" and would otherwise pass as a new name.
  if (hostnameOf(unicode) !== ascii) throw new InvalidDomainName(`${ascii} is not the canonical form of ${unicode}.`);
  const label = unicode.split('.')[0]!;
  if (!IDN_LABEL.test(label)) throw new InvalidDomainName(`"${label}" holds symbols that IDNA2008 does not allow.`);
  return { ascii, unicode, label, tld: labels[1]! };
}

function hostnameOf(name: string): string {
  try {
    return new URL(`http://${name}`).hostname;
  } catch {
    throw new InvalidDomainName(`${name} is not a valid internationalized domain name.`);
  }
}

/** The Unicode form of a stored (ASCII) domain's label. */
export function labelOf(ascii: string): string {
  return toUnicode(ascii.split('.')[0]!);
}

const codePoints = (s: string) => Array.from(s);

/**
 * UTS #39 §4 skeleton: NFD, drop default-ignorable code points (a step later
 * revisions added; IDNA refuses most of them anyway), map each code point to
 * its prototype, NFD again. One pass, as defined: a few prototypes decompose
 * into marks that map further (ǆ → dž → d z ̌ → d z ̆), and a second pass would
 * make keys that UTS #39 does not.
 */
export function skeleton(s: string): string {
  const nfd = s.normalize('NFD').replace(/\p{Default_Ignorable_Code_Point}/gu, '');
  let mapped = '';
  for (const c of nfd) mapped += PROTOTYPES.get(c) ?? c;
  return mapped.normalize('NFD');
}

/** §3.3: two labels that look alike have equal keys. */
export function comparisonKey(label: string): string {
  return skeleton(label.toLowerCase()).toLowerCase();
}

/**
 * Optimal string alignment distance ≤ 1, by code points: equal, or one
 * insertion, omission, replacement or swap of two adjacent code points.
 * Linear: past the first difference, the rest must line up exactly.
 */
export function withinOneEdit(a: string, b: string): boolean {
  if (a === b) return true;
  const x = codePoints(a);
  const y = codePoints(b);
  if (Math.abs(x.length - y.length) > 1) return false;
  const [long, short] = x.length >= y.length ? [x, y] : [y, x];
  let i = 0;
  while (i < short.length && long[i] === short[i]) i++;
  const tailEquals = (from: string[], fromStart: number, to: string[], toStart: number) => from.slice(fromStart).join('') === to.slice(toStart).join('');
  if (long.length !== short.length) return tailEquals(long, i + 1, short, i);
  if (tailEquals(long, i + 1, short, i + 1)) return true;
  return long[i] === short[i + 1] && long[i + 1] === short[i] && tailEquals(long, i + 2, short, i + 2);
}

/**
 * The key itself and every string with one code point removed (symmetric
 * delete). Two keys one insertion, omission, replacement or adjacent swap
 * apart always share one of these (abcd and acbd share "acd"), so an index of
 * them finds every candidate by equality lookups. Some pairs two edits apart
 * share one too (abc and bcd share "bc"): candidates are confirmed with
 * withinOneEdit.
 */
export function deletionNeighbourhood(key: string): string[] {
  const chars = codePoints(key);
  const keys = new Set([key]);
  for (let i = 0; i < chars.length; i++) keys.add([...chars.slice(0, i), ...chars.slice(i + 1)].join(''));
  return [...keys];
}

export type SquattingVerdict = { matched: string; reason: 'equal' | 'one_edit'; against: 'protected' | 'held' };

const protectedKeyCache = new WeakMap<readonly string[], { name: string; key: string }[]>();

function protectedKeys(names: readonly string[]) {
  let keys = protectedKeyCache.get(names);
  if (!keys) {
    keys = names.map((name) => ({ name, key: comparisonKey(name) }));
    protectedKeyCache.set(names, keys);
  }
  return keys;
}

/**
 * §3.3: null if `label` may be registered; otherwise what it is too close to.
 * `heldLabels` are the labels of domains other accounts hold (any TLD: a
 * look-alike in another TLD misleads as well). An equal key wins over a
 * one-edit neighbour, and the protected list over held names.
 */
export function squattingVerdict(label: string, protectedNames: readonly string[], heldLabels: readonly string[]): SquattingVerdict | null {
  const key = comparisonKey(label);
  const lists = [
    { against: 'protected' as const, entries: protectedKeys(protectedNames) },
    { against: 'held' as const, entries: heldLabels.map((name) => ({ name, key: comparisonKey(name) })) },
  ];
  for (const { against, entries } of lists) {
    const equal = entries.find((e) => e.key === key);
    if (equal) return { matched: equal.name, reason: 'equal', against };
    const near = entries.find((e) => withinOneEdit(e.key, key));
    if (near) return { matched: near.name, reason: 'one_edit', against };
  }
  return null;
}

// ── Search suggestions ─────────────────────────────────────────────────────

const PREFIXES = ['get', 'try', 'my', 'the', 'go'];
const SUFFIXES = ['hq', 'app', 'hub', 'now', 'online'];
const MAX_KEYWORDS = 4;

export type SearchQuery = { keywords: string[]; tld: string | null };

/**
 * Keywords from what a person types: words split on anything that is not a
 * letter, digit or hyphen; a trailing `.tld` this provider sells is taken as
 * the TLD wanted first. Null when nothing usable is left.
 */
export function searchKeywords(query: string, tlds: readonly string[]): SearchQuery | null {
  let text = query.trim().toLowerCase();
  const dot = text.lastIndexOf('.');
  let tld: string | null = null;
  if (dot > 0 && tlds.includes(text.slice(dot + 1))) {
    tld = text.slice(dot + 1);
    text = text.slice(0, dot);
  }
  const keywords = text
    .split(/[^\p{L}\p{M}\p{N}-]+/u)
    .map((w) => w.replace(/^-+|-+$/g, ''))
    .filter((w) => w.length > 0)
    .slice(0, MAX_KEYWORDS);
  return keywords.length > 0 ? { keywords, tld } : null;
}

/**
 * Candidate names the way a registrar offers them: the words joined, then
 * hyphenated, then with common prefixes and suffixes; each label across every
 * TLD (the one asked for first). Candidates are not yet checked: invalid or
 * refused ones are filtered by the caller.
 */
export function suggestNames(query: SearchQuery, tlds: readonly string[]): string[] {
  const joined = query.keywords.join('');
  const labels = [joined, query.keywords.join('-'), ...PREFIXES.map((p) => p + joined), ...SUFFIXES.map((s) => joined + s)];
  const ordered = query.tld ? [query.tld, ...tlds.filter((t) => t !== query.tld)] : [...tlds];
  const names = new Set<string>();
  for (const label of labels) for (const tld of ordered) names.add(`${label}.${tld}`);
  return [...names];
}

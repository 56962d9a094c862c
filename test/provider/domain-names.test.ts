// The pure rules of the domain squatting guard (PROTOCOL.md §3.3): IDNA
// normalization, the TR39 comparison key, the one-edit test and the verdict,
// and the search suggestions. No Worker: these run as plain functions.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  comparisonKey,
  DEFAULT_PROTECTED_NAMES,
  deletionNeighbourhood,
  InvalidDomainName,
  normalizeDomain,
  searchKeywords,
  skeleton,
  squattingVerdict,
  suggestNames,
  withinOneEdit,
} from '../../workers/provider/services/domain-names';

describe('normalizeDomain', () => {
  it('gives the punycode and Unicode forms of an IDN, whichever is given', () => {
    const expected = { ascii: 'xn--mnchen-3ya.com', unicode: 'münchen.com', label: 'münchen', tld: 'com' };
    expect(normalizeDomain('münchen.com')).toEqual(expected);
    expect(normalizeDomain('MÜNCHEN.COM')).toEqual(expected);
    expect(normalizeDomain('xn--mnchen-3ya.com')).toEqual(expected);
    expect(normalizeDomain('XN--MNCHEN-3YA.com')).toEqual(expected);
  });

  it('maps full-width letters and dots to ASCII (UTS #46)', () => {
    expect(normalizeDomain('ｇｏｏｇｌｅ．com').ascii).toBe('google.com');
  });

  it.each([
    ['a subdomain', 'www.example.com'],
    ['a bare label', 'example'],
    ['an empty label', 'example..com'],
    ['a trailing dot', 'example.com.'],
    ['a leading hyphen', '-example.com'],
    ['a trailing hyphen', 'example-.com'],
    ['hyphens in positions 3–4 outside an A-label', 'ab--cd.com'],
    ['an underscore', 'ex_ample.com'],
    ['URL syntax that would change the host', 'evil.com/x.com'],
    ['a percent-encoded letter', 'goo%67le.com'],
    ['a user-info part', 'google.com@evil.com'],
    ['a port', 'example.com:80'],
    ['invalid punycode', 'xn--abc.com'],
    ['a non-canonical A-label (xn--google- decodes to google)', 'xn--google-.com'],
    ['an emoji label (DISALLOWED in IDNA2008)', '😀.com'],
    ['an emoji label given as punycode', 'xn--ls8h.com'],
    ['a label over 63 octets', `${'a'.repeat(64)}.com`],
    ['a zero-width joiner', 'ex\u200dample.com'],
  ])('refuses %s', (_, name) => {
    expect(() => normalizeDomain(name)).toThrow(InvalidDomainName);
  });
});

describe('the comparison key (TR39 skeleton, lowercased both sides)', () => {
  it('maps digits to the letters they imitate: 0 → O and 1 → l in the MA data', () => {
    // confusables.txt maps 0 to uppercase O: only the final lowercase makes g00gle equal google.
    expect(skeleton('0')).toBe('O');
    expect(skeleton('1')).toBe('l');
    expect(comparisonKey('g00gle')).toBe('google');
    expect(comparisonKey('paypa1')).toBe('paypal');
  });

  it('maps Cyrillic, Latin-extended and mathematical look-alikes to their Latin prototypes', () => {
    expect(comparisonKey('раураl')).toBe('paypal'); // Cyrillic р а у р а, Latin l
    expect(comparisonKey('\u0261oogle')).toBe('google'); // U+0261 LATIN SMALL LETTER SCRIPT G
    expect(comparisonKey('𝐠𝐨𝐨𝐠𝐥𝐞')).toBe('google'); // mathematical bold
  });

  it('keeps decomposed accents, so münchen is not munchen', () => {
    expect(comparisonKey('münchen')).not.toBe(comparisonKey('munchen'));
    expect(comparisonKey('münchen')).toBe(comparisonKey('mu\u0308nchen'));
  });

  it('lowercases once after the skeleton, as §3.3 says, without mapping again', () => {
    // ᒥ → Γ (a prototype) → γ; γ's own prototype is y, but ᒥ does not look like y.
    expect(comparisonKey('ᒥ')).toBe('γ');
  });
});

describe('withinOneEdit (optimal string alignment ≤ 1, by code points)', () => {
  it.each([
    ['google', 'google', true],
    ['google', 'gooogle', true], // insertion
    ['google', 'gogle', true], // omission
    ['google', 'goagle', true], // replacement
    ['google', 'googel', true], // adjacent transposition
    ['google', 'ogogle', true],
    ['google', 'elgoog', false],
    ['google', 'goggle', true],
    ['google', 'gogole', true],
    ['google', 'goolge', true],
    ['google', 'gooooogle', false],
    ['abc', 'bca', false], // a rotation is two edits
    ['abcd', 'acbd', true],
    ['abc', 'bcd', false], // shares a deletion ("bc") but is two edits apart
    ['𝐠a', 'a', true], // one astral code point is one edit, not two
    ['', 'a', true],
    ['', '', true],
  ])('%s ~ %s: %s', (a, b, expected) => {
    expect(withinOneEdit(a, b)).toBe(expected);
    expect(withinOneEdit(b, a)).toBe(expected);
  });

  const text = fc.string({ unit: 'grapheme-composite', maxLength: 12 });

  it('is symmetric', () => {
    fc.assert(fc.property(text, text, (a, b) => withinOneEdit(a, b) === withinOneEdit(b, a)));
  });

  it('holds for a string and itself with any one code point removed, replaced or inserted, or two neighbours swapped', () => {
    fc.assert(
      fc.property(text, fc.nat(), fc.string({ unit: 'binary', minLength: 1, maxLength: 1 }), (s, n, c) => {
        const cps = Array.from(s);
        const i = cps.length === 0 ? 0 : n % cps.length;
        const removed = [...cps.slice(0, i), ...cps.slice(i + 1)].join('');
        const replaced = [...cps.slice(0, i), c, ...cps.slice(i + 1)].join('');
        const inserted = [...cps.slice(0, i), c, ...cps.slice(i)].join('');
        const swapped = i + 1 < cps.length ? [...cps.slice(0, i), cps[i + 1], cps[i], ...cps.slice(i + 2)].join('') : s;
        return withinOneEdit(s, s) && withinOneEdit(s, removed) && withinOneEdit(s, replaced) && withinOneEdit(s, inserted) && withinOneEdit(s, swapped);
      }),
    );
  });

  it('agrees with a textbook optimal string alignment distance', () => {
    const small = fc.string({ unit: fc.constantFrom('a', 'b', 'c'), maxLength: 6 });
    fc.assert(fc.property(small, small, (a, b) => withinOneEdit(a, b) === osaDistance(a, b) <= 1));
  });

  it('finds every pair within one edit through a shared deletion key (the index never misses one)', () => {
    const small = fc.string({ unit: fc.constantFrom('a', 'b', 'c'), maxLength: 6 });
    fc.assert(
      fc.property(small, small, (a, b) => {
        if (!withinOneEdit(a, b)) return true;
        const keys = new Set(deletionNeighbourhood(a));
        return deletionNeighbourhood(b).some((k) => keys.has(k));
      }),
    );
  });
});

describe('squattingVerdict', () => {
  const guard = DEFAULT_PROTECTED_NAMES;

  it.each([
    ['google', 'equal'],
    ['g00gle', 'equal'],
    ['ɡoogle', 'equal'],
    ['раураl', 'equal'],
    ['gooogle', 'one_edit'],
    ['googel', 'one_edit'],
    ['gogle', 'one_edit'],
    ['g0ogle', 'equal'],
    ['goog1e', 'equal'],
    ['paypa1s', 'one_edit'],
  ])('refuses %s as %s to a protected name', (label, reason) => {
    expect(squattingVerdict(label, guard, [])).toMatchObject({ reason, against: 'protected' });
  });

  it('accepts names clearly unlike every protected one', () => {
    for (const label of ['garden', 'bakery', 'weather', 'googleplex', 'münchen', 'pay']) expect(squattingVerdict(label, guard, [])).toBeNull();
  });

  it('compares with held labels too, the protected list first', () => {
    expect(squattingVerdict('quillfeather', guard, ['quillfeathers'])).toEqual({ matched: 'quillfeathers', reason: 'one_edit', against: 'held' });
    expect(squattingVerdict('qui11feather', guard, ['quillfeather'])).toEqual({ matched: 'quillfeather', reason: 'equal', against: 'held' });
    expect(squattingVerdict('googles', guard, ['googles'])).toMatchObject({ against: 'protected' });
  });

  it('prefers an equal key to a one-edit neighbour', () => {
    expect(squattingVerdict('abcdef', [], ['abcdeg', 'abcdef'])).toMatchObject({ matched: 'abcdef', reason: 'equal' });
  });
});

describe('search suggestions', () => {
  const tlds = ['com', 'net', 'io'];

  it('joins, hyphenates and decorates the keywords, each label across every TLD', () => {
    const query = searchKeywords('Coffee  Shop', tlds)!;
    expect(query).toEqual({ keywords: ['coffee', 'shop'], tld: null });
    const names = suggestNames(query, tlds);
    expect(names.slice(0, 6)).toEqual(['coffeeshop.com', 'coffeeshop.net', 'coffeeshop.io', 'coffee-shop.com', 'coffee-shop.net', 'coffee-shop.io']);
    expect(names).toEqual(expect.arrayContaining(['getcoffeeshop.com', 'trycoffeeshop.io', 'coffeeshophq.net', 'coffeeshopapp.com']));
    expect(new Set(names).size).toBe(names.length);
  });

  it('puts the TLD typed first', () => {
    const query = searchKeywords('coffee.io', tlds)!;
    expect(query).toEqual({ keywords: ['coffee'], tld: 'io' });
    expect(suggestNames(query, tlds).slice(0, 3)).toEqual(['coffee.io', 'coffee.com', 'coffee.net']);
  });

  it('finds no keyword in punctuation alone', () => {
    expect(searchKeywords(' ,;! ', tlds)).toBeNull();
    expect(searchKeywords('---', tlds)).toBeNull();
  });
});

/** Wagner–Fischer with the adjacent-transposition case: the reference the fast test is checked against. */
function osaDistance(a: string, b: string): number {
  const x = Array.from(a);
  const y = Array.from(b);
  const d = Array.from({ length: x.length + 1 }, (_, i) => Array.from({ length: y.length + 1 }, (_, j) => (i === 0 ? j : j === 0 ? i : 0)));
  for (let i = 1; i <= x.length; i++) {
    for (let j = 1; j <= y.length; j++) {
      const cost = x[i - 1] === y[j - 1] ? 0 : 1;
      d[i]![j] = Math.min(d[i - 1]![j]! + 1, d[i]![j - 1]! + 1, d[i - 1]![j - 1]! + cost);
      if (i > 1 && j > 1 && x[i - 1] === y[j - 2] && x[i - 2] === y[j - 1]) d[i]![j] = Math.min(d[i]![j]!, d[i - 2]![j - 2]! + 1);
    }
  }
  return d[x.length]![y.length]!;
}

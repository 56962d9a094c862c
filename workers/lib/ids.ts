// Opaque ids with a type prefix (PROTOCOL.md Conventions). The body is a ULID:
// 48 bits of milliseconds then 80 random bits, Crockford base32, so ids sort
// by creation time in indexes and logs.
const ALPHABET = '0123456789ABCDEFGHJKMNPQRSTVWXYZ';

export const idPrefixes = ['prn', 'agt', 'mdt', 'acct', 'res', 'op', 'chg', 'evt', 'dsp', 'req', 'whk', 'ntf'] as const;
export type IdPrefix = (typeof idPrefixes)[number];

export function newId(prefix: IdPrefix, now = Date.now()): string {
  let time = '';
  let t = now;
  for (let i = 0; i < 10; i++) {
    time = ALPHABET[t % 32] + time;
    t = Math.floor(t / 32);
  }
  const random = crypto.getRandomValues(new Uint8Array(16));
  let rest = '';
  for (let i = 0; i < 16; i++) rest += ALPHABET[random[i]! % 32];
  return `${prefix}_${time}${rest}`;
}

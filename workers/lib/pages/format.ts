import type { Money } from '../schemas/money';

/** ISO 4217 minor units other than 2 (e.g. the yen has none, the Kuwaiti dinar three); CLDR's display digits differ for some. */
const MINOR_DIGITS: Record<string, number> = {
  bif: 0, clp: 0, djf: 0, gnf: 0, isk: 0, jpy: 0, kmf: 0, krw: 0, pyg: 0, rwf: 0, ugx: 0, uyi: 0, vnd: 0, vuv: 0, xaf: 0, xof: 0, xpf: 0,
  bhd: 3, iqd: 3, jod: 3, kwd: 3, lyd: 3, omr: 3, tnd: 3,
  clf: 4, uyw: 4,
};

/** How many digits a currency's minor unit has, as ISO 4217 says (2 for usd and for most). */
const minorDigits = (currency: string): number => MINOR_DIGITS[currency] ?? 2;

/** The step of a form's amount field in `currency`'s major unit: a cent, a yen. */
export const amountStep = (currency: string) => (minorDigits(currency) === 0 ? '1' : (10 ** -minorDigits(currency)).toFixed(minorDigits(currency)));

/** How a form names the unit amounts of `currency` are typed in: dollars, or the currency's code. */
export const unitName = (currency: string) => (currency === 'usd' ? 'dollars' : currency.toUpperCase());

/** An amount in minor units as typed in major units ("250.00" for 25000 cents, "250" for 250 yen). */
export function majorUnits(money: Money): string {
  const digits = minorDigits(money.currency);
  return (money.amount / 10 ** digits).toFixed(digits);
}

/** $12.34 for usd; other currencies in their own minor units, as 12.34 EUR or 1200 JPY. */
export function formatMoney(money: Money): string {
  const value = majorUnits(money);
  return money.currency === 'usd' ? `$${value}` : `${value} ${money.currency.toUpperCase()}`;
}

/** An amount typed in a currency's major units ("250", "250.5") in its minor units; null if it is not such an amount. */
export function minorUnitsOf(value: unknown, currency: string): number | null {
  if (typeof value !== 'string') return null;
  const digits = minorDigits(currency);
  const match = new RegExp(digits === 0 ? '^(\\d{1,9})$' : `^(\\d{1,9})(?:\\.(\\d{1,${digits}}))?$`).exec(value.trim());
  return match ? Number(match[1]) * 10 ** digits + Number((match[2] ?? '').padEnd(digits, '0') || '0') : null;
}

/** Dollars as typed in a form ("250", "250.5", "250.00") in cents; null if it is not an amount. */
export const centsOf = (value: unknown) => minorUnitsOf(value, 'usd');

export function formatDate(iso: string): string {
  return new Date(iso).toUTCString().replace(' GMT', ' UTC');
}

/** A key thumbprint the way a human can compare it: groups of four. */
export function fingerprint(thumbprint: string): string {
  return (thumbprint.slice(0, 16).match(/.{1,4}/g) ?? []).join(' ');
}

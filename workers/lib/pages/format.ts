import type { Money } from '../schemas/money';

const digitsOf = new Map<string, number>([['usd', 2]]);

/** How many digits a currency's minor unit has (2 for usd, 0 for jpy, 3 for kwd), as ISO 4217 says; 2 if unknown. */
export function minorDigits(currency: string): number {
  let digits = digitsOf.get(currency);
  if (digits === undefined) {
    try {
      digits = new Intl.NumberFormat('en', { style: 'currency', currency: currency.toUpperCase() }).resolvedOptions().maximumFractionDigits ?? 2;
    } catch {
      digits = 2;
    }
    if (digitsOf.size < 300) digitsOf.set(currency, digits);
  }
  return digits;
}

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

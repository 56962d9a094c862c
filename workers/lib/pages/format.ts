import type { Money } from '../schemas/money';

/** $12.34 for usd; other currencies as 12.34 EUR. */
export function formatMoney(money: Money): string {
  const value = (money.amount / 100).toFixed(2);
  return money.currency === 'usd' ? `$${value}` : `${value} ${money.currency.toUpperCase()}`;
}

/** Dollars as typed in a form ("250", "250.5", "250.00") in cents; null if it is not an amount. */
export function centsOf(value: unknown): number | null {
  if (typeof value !== 'string') return null;
  const match = /^(\d{1,9})(?:\.(\d{1,2}))?$/.exec(value.trim());
  return match ? Number(match[1]) * 100 + Number((match[2] ?? '').padEnd(2, '0')) : null;
}

export function formatDate(iso: string): string {
  return new Date(iso).toUTCString().replace(' GMT', ' UTC');
}

/** A key thumbprint the way a human can compare it: groups of four. */
export function fingerprint(thumbprint: string): string {
  return (thumbprint.slice(0, 16).match(/.{1,4}/g) ?? []).join(' ');
}

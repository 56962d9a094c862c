import type { Money } from '../schemas/money';

/** $12.34 for usd; other currencies as 12.34 EUR. */
export function formatMoney(money: Money): string {
  const value = (money.amount / 100).toFixed(2);
  return money.currency === 'usd' ? `$${value}` : `${value} ${money.currency.toUpperCase()}`;
}

export function formatDate(iso: string): string {
  return new Date(iso).toUTCString().replace(' GMT', ' UTC');
}

/** A key thumbprint the way a human can compare it: groups of four. */
export function fingerprint(thumbprint: string): string {
  return (thumbprint.slice(0, 16).match(/.{1,4}/g) ?? []).join(' ');
}

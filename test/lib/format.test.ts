// Amounts as a human types and reads them (workers/lib/pages/format.ts): in the
// major unit of the currency, whose minor unit ISO 4217 sets.
import { describe, expect, it } from 'vitest';
import { amountStep, formatMoney, majorUnits, minorUnitsOf } from '../../workers/lib/pages/format';

describe('amounts in a currency’s own minor unit', () => {
  it('reads what is typed in major units, as ISO 4217 sets the minor unit', () => {
    expect(minorUnitsOf('12.34', 'usd')).toBe(1234);
    expect(minorUnitsOf('12.5', 'eur')).toBe(1250);
    expect(minorUnitsOf('1200', 'jpy')).toBe(1200);
    expect(minorUnitsOf('1.234', 'kwd')).toBe(1234);
    // CLDR shows these without decimals; ISO 4217 gives them two.
    expect(minorUnitsOf('100.50', 'huf')).toBe(10050);
    expect(minorUnitsOf('100.50', 'idr')).toBe(10050);
  });

  it('refuses what is not an amount in that currency', () => {
    for (const [typed, currency] of [['12.5', 'jpy'], ['1.2345', 'kwd'], ['1.234', 'usd'], ['-1', 'usd'], ['lots', 'usd'], ['1e3', 'usd']] as const) expect(minorUnitsOf(typed, currency), `${typed} ${currency}`).toBeNull();
  });

  it('shows and steps amounts the same way', () => {
    expect(formatMoney({ amount: 1234, currency: 'usd' })).toBe('$12.34');
    expect(formatMoney({ amount: 1200, currency: 'jpy' })).toBe('1200 JPY');
    expect(majorUnits({ amount: 1234, currency: 'kwd' })).toBe('1.234');
    expect([amountStep('usd'), amountStep('jpy'), amountStep('kwd')]).toEqual(['0.01', '1', '0.001']);
  });
});

// Limits (PROTOCOL.md §3.2): each limit with this month's spend, and a form
// for the principal's own monthly limit. Raising it above the policy ceiling
// needs a sign-in within the last five minutes (§2.0): when the form is
// refused for that, the page shows the sign-in step inline and comes back.
import { formatMoney } from '../../lib/pages/format';
import type { Money } from '../../lib/schemas/money';
import type { LimitRow } from '../spend-overview';
import { Csrf, percentUsed, type Names } from './dashboard-frame';

export type LimitsView = {
  limits: LimitRow[];
  names: Names;
  csrf: string;
  email: string;
  ceiling: Money;
  /** Seconds since the session's sign-in, and how long a sign-in counts as fresh. */
  signedInAgo: number;
  freshFor: number;
  /** The amount (in dollars, as typed) to put back in the form. */
  amount: string | null;
  reauthenticate: boolean;
};

function minutes(seconds: number): string {
  if (seconds < 60) return 'less than a minute';
  const m = Math.round(seconds / 60);
  return `${m} minute${m === 1 ? '' : 's'}`;
}

export function LimitsPage(props: LimitsView) {
  const monthly = props.limits.find((l) => l.scope === 'principal')!;
  const fresh = props.signedInAgo <= props.freshFor;
  const amount = props.amount ?? (monthly.limit.amount / 100).toFixed(2);
  const next = `/dashboard/limits?amount=${encodeURIComponent(amount)}`;
  return (
    <>
      <div class="card">
        <h1>Limits</h1>
        <p class="hint">Every charge must fit all of these at once. Charges count as soon as they are authorized.</p>
        <table class="stack">
          <thead>
            <tr>
              <th scope="col">Limit</th>
              <th scope="col" class="num">
                Spent this month
              </th>
              <th scope="col" class="num">
                Monthly amount
              </th>
              <th scope="col" class="num">
                Left
              </th>
            </tr>
          </thead>
          <tbody>
            {props.limits.map((l) => (
              <tr>
                <td data-label="Limit">{l.scope === 'principal' ? <strong>Your monthly limit</strong> : <>Mandate “{props.names.mandates[l.id!] ?? l.id}”</>}</td>
                <td data-label="Spent this month" class="num">
                  {formatMoney(l.spent)} ({percentUsed(l.spent, l.limit)} %)
                </td>
                <td data-label="Monthly amount" class="num">
                  {formatMoney(l.limit)}
                </td>
                <td data-label="Left" class="num">
                  {formatMoney({ amount: Math.max(0, l.limit.amount - l.spent.amount), currency: l.limit.currency })}
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      </div>
      {props.reauthenticate ? (
        <div class="card" id="reauthenticate">
          <h2>Confirm it is you</h2>
          <p>
            Raising your monthly limit above {formatMoney(props.ceiling)} needs a sign-in within the last {minutes(props.freshFor)}; you signed in {minutes(props.signedInAgo)} ago. Enter
            your password again, then confirm the new limit of ${amount}.
          </p>
          <form method="post" action="/session">
            <input type="hidden" name="next" value={next} />
            <label for="reauth-email">Email</label>
            <input id="reauth-email" name="email" type="email" autocomplete="username" value={props.email} readonly />
            <label for="reauth-password">Password</label>
            <input id="reauth-password" name="password" type="password" autocomplete="current-password" required />
            <div class="actions">
              <button type="submit">Sign in again</button>
            </div>
          </form>
        </div>
      ) : null}
      <div class="card">
        <h2>Change your monthly limit</h2>
        <p class="hint" id="limit-hint">
          It caps what all your agents spend together, across every provider. Raising it above {formatMoney(props.ceiling)} needs a sign-in within the last {minutes(props.freshFor)}
          {fresh ? ': yours is recent enough.' : `; you signed in ${minutes(props.signedInAgo)} ago.`} Your mandates’ own limits change only by approving a new request.
        </p>
        <form method="post" action="/dashboard/limits">
          <Csrf token={props.csrf} />
          <label for="monthly-limit">Monthly limit in dollars (now {formatMoney(monthly.limit)})</label>
          <input id="monthly-limit" name="amount" type="number" min="0" step="0.01" required value={amount} aria-describedby="limit-hint" />
          <div class="actions">
            <button type="submit">Set the monthly limit</button>
          </div>
        </form>
      </div>
    </>
  );
}

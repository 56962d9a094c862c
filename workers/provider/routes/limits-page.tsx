// The account's own monthly limit as its human sees and sets it (PROTOCOL.md
// §3.2): where a 402's step_up_url sends them. Raising it above the policy
// ceiling needs a recent sign-in (§2.0); the page sends them to sign in again
// and back to the amount they typed.
import { Hono, type Context } from 'hono';
import { centsOf, formatMoney } from '../../lib/pages/format';
import { Layout, PAGE_SECURITY_HEADERS } from '../../lib/pages/layout';
import { LIMIT_CEILING, setMonthlyLimitFromForm } from '../../lib/routes/limits';
import type { Money } from '../../lib/schemas/money';
import type { Session } from '../../lib/sessions';
import { ledgerOf, providerConfig, type ProviderBindings } from '../env';
import { pageSession } from '../page-session';
import { accountById } from '../store/accounts';

type Env = { Bindings: ProviderBindings; Variables: { session: Session } };
type LimitRow = { scope: string; limit: Money; spent: Money };

async function showLimits(c: Context<Env>, options: { amount?: string; error?: string; done?: boolean; status?: 200 | 422 } = {}) {
  const session = c.get('session');
  const config = providerConfig(c.env);
  const [rows, account] = await Promise.all([ledgerOf(c.env, session.subject_id).limitsSummary() as Promise<LimitRow[]>, accountById(c.env.DB, session.subject_id)]);
  const own = rows.find((row) => row.scope === 'principal')!;
  const amount = options.amount ?? (own.limit.amount / 100).toFixed(2);
  return c.html(
    <Layout title="Monthly limit" roleName={config.PROVIDER_NAME} signedIn={{ label: account?.email ?? session.subject_id, csrfToken: session.csrf_token }}>
      <div class="card">
        <h1>Monthly limit</h1>
        <p>
          This month your account’s agents have spent <strong>{formatMoney(own.spent)}</strong> of <strong>{formatMoney(own.limit)}</strong>. Charges count as soon as they are
          authorized.
        </p>
        {options.done ? (
          <p class="notice" role="status">
            The limit is set.
          </p>
        ) : null}
        {options.error ? (
          <p class="error" role="alert">
            {options.error}
          </p>
        ) : null}
        <form method="post" action="/limits">
          <input type="hidden" name="csrf_token" value={session.csrf_token} />
          <label for="monthly-limit">Monthly limit in dollars</label>
          <input id="monthly-limit" name="amount" type="number" min="0" step="0.01" required value={amount} aria-describedby="limit-hint" />
          <p class="hint" id="limit-hint">
            Raising it above {formatMoney({ amount: LIMIT_CEILING, currency: own.limit.currency })} asks you to sign in again first.
          </p>
          <div class="actions">
            <button type="submit">Set the monthly limit</button>
          </div>
        </form>
      </div>
    </Layout>,
    options.status ?? 200,
    PAGE_SECURITY_HEADERS,
  );
}

export function limitsPageRoutes() {
  const app = new Hono<Env>();

  app.get('/limits', pageSession, (c) => {
    const typed = c.req.query('amount');
    return showLimits(c, { ...(centsOf(typed) === null ? {} : { amount: typed!.trim() }), done: c.req.query('done') === '1' });
  });

  app.post('/limits', pageSession, async (c) => {
    const session = c.get('session');
    const form = await c.req.parseBody();
    const typed = typeof form.amount === 'string' ? form.amount.trim() : '';
    const outcome = await setMonthlyLimitFromForm(ledgerOf(c.env, session.subject_id), session, typed);
    if (outcome.kind === 'refused') return showLimits(c, { amount: typed, error: outcome.detail, status: 422 });
    // §2.0: the step-up is a fresh sign-in that comes back to the amount typed.
    if (outcome.kind === 'reauthenticate') return c.redirect(`/sign-in?next=${encodeURIComponent(`/limits?amount=${typed}`)}`, 303);
    return c.redirect('/limits?done=1', 303);
  });

  return app;
}

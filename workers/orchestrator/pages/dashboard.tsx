// The dashboard's first page: this month's spend against each limit (the
// principal's monthly limit and each active mandate's), then the same money
// by provider and by agent, as bars that say their numbers in words.
import type { Mandate } from '../../lib/schemas/mandates';
import { formatMoney } from '../../lib/pages/format';
import type { SpendOverview } from '../spend-overview';
import { AgentName, periodName, SpendBars, type Bar, type Names } from './dashboard-frame';

export function OverviewPage(props: { overview: SpendOverview; names: Names; pending: Mandate[]; alerts: number }) {
  const { overview, names } = props;
  const monthly = overview.monthly;
  const mandateBars: Bar[] = overview.limits
    .filter((l) => l.scope === 'mandate' && l.id)
    .map((l) => ({
      label: (
        <>
          Mandate “{names.mandates[l.id!] ?? l.id}”
          <span class="muted"> · </span>
          <a href="/dashboard/mandates">details</a>
        </>
      ),
      spent: l.spent,
      limit: l.limit,
    }));
  const share = (label: Bar['label'], spent: Bar['spent']): Bar => ({ label, spent, limit: monthly.limit, note: `of your ${formatMoney(monthly.limit)} monthly limit` });
  return (
    <>
      <div class="card">
        <h1>Spending in {periodName(overview.period)}</h1>
        {props.pending.length ? (
          <p>
            <strong>
              {props.pending.length === 1 ? 'An agent waits' : `${props.pending.length} agents wait`} for your decision.
            </strong>{' '}
            <a href="/dashboard/mandates">Review the request{props.pending.length === 1 ? '' : 's'}</a>.
          </p>
        ) : null}
        {props.alerts ? (
          <p>
            {props.alerts === 1 ? 'One budget alert' : `${props.alerts} budget alerts`} this month: <a href="/dashboard/notifications">read them</a>.
          </p>
        ) : null}
        <h2>Against your limits</h2>
        <p class="hint">Charges count as soon as they are authorized; a charge that is voided or refunded gives its money back.</p>
        <SpendBars
          label="Spend against each limit"
          bars={[{ label: <strong>Your monthly limit</strong>, spent: monthly.spent, limit: monthly.limit }, ...mandateBars]}
        />
        {mandateBars.length === 0 ? <p class="muted">No active mandate: no agent may spend for you right now.</p> : null}
      </div>
      <div class="card">
        <h2>By provider</h2>
        {overview.byProvider.length ? (
          <SpendBars label="Spend by provider" bars={overview.byProvider.map((s) => share(names.providers[s.key] ?? s.key, s.spent))} />
        ) : (
          <p class="muted">Nothing spent at any provider this month.</p>
        )}
        <h2>By agent</h2>
        {overview.byAgent.length ? (
          <SpendBars label="Spend by agent" bars={overview.byAgent.map((s) => share(<AgentName id={s.key} names={names} />, s.spent))} />
        ) : (
          <p class="muted">No agent has spent anything this month.</p>
        )}
      </div>
    </>
  );
}

// Budget alerts and the other notices (PROTOCOL.md §3.2), newest first, each
// told in a sentence: which limit, how far, how much of it is spent.
import { formatDate, formatMoney } from '../../lib/pages/format';
import type { Money } from '../../lib/schemas/money';
import { VERDICT_WORDS } from './disputes';
import { periodName, type Names } from './dashboard-frame';

export type NotificationView = { id: string; type: string; created: string; data: Record<string, any> };

function BudgetAlert(props: { data: Record<string, any>; names: Names }) {
  const { data, names } = props;
  const limit = data.limit as Money;
  const spent = data.spent as Money;
  const which =
    data.scope === 'mandate' ? (
      <>
        the limit of mandate “{names.mandates[data.id] ?? data.id}” ({formatMoney(limit)} a month)
      </>
    ) : (
      <>your monthly limit ({formatMoney(limit)})</>
    );
  return (
    <>
      <strong>{data.threshold >= 100 ? 'Limit reached' : `${data.threshold} % of a limit spent`}:</strong> {formatMoney(spent)} of {which} is spent in {periodName(String(data.period))}.
    </>
  );
}

function Notice(props: { n: NotificationView; names: Names }) {
  const { n, names } = props;
  if (n.type === 'budget.alert') return <BudgetAlert data={n.data} names={names} />;
  if (n.type === 'dispute.decided') {
    return (
      <>
        <strong>Dispute decided:</strong> {VERDICT_WORDS[n.data.verdict] ?? n.data.verdict} <a href={`/dashboard/disputes/${n.data.dispute_id}`}>Read the findings</a>.
      </>
    );
  }
  if (n.type === 'renewal.declined') {
    const where = `${n.data.service} (${n.data.plan}) at ${names.providers[n.data.provider] ?? n.data.provider}`;
    if (n.data.code === 'mandate_inactive') {
      return (
        <>
          <strong>Renewal declined:</strong> {where} was bought under a mandate that has ended (expired or revoked), so it is suspended and will not renew.
        </>
      );
    }
    if (n.data.code === 'spend_limit_exceeded' || n.data.code === 'velocity_limited') {
      return (
        <>
          <strong>Renewal declined:</strong> renewing {where} did not fit a limit ({n.data.code}), so it is suspended. A provider that tries again (OAP’s providers do, for 30
          days) renews it once a <a href="/dashboard/limits">limit</a> has room.
        </>
      );
    }
    return (
      <>
        <strong>Renewal declined:</strong> renewing {where} was refused ({n.data.code}), so it is suspended.
      </>
    );
  }
  if (n.type === 'mandate.expiring') {
    const resources = n.data.resources as { provider: string; service: string; plan: string }[];
    return (
      <>
        <strong>Mandate ending:</strong> mandate “{names.mandates[n.data.mandate_id] ?? n.data.mandate_id}” ends on {formatDate(String(n.data.expires_at))}, and{' '}
        {resources.length === 1 ? 'a recurring plan it pays for' : `${resources.length} recurring plans it pays for`} (
        {resources.map((r) => `${r.service} ${r.plan} at ${names.providers[r.provider] ?? r.provider}`).join(', ')}) will not renew after that. Extend it on the{' '}
        <a href="/dashboard/mandates">Mandates page</a> (or let its agent ask for an extension) and approve the extension before then.
      </>
    );
  }
  return <strong>{n.type}</strong>;
}

export function NotificationsPage(props: { notifications: NotificationView[]; names: Names }) {
  const alerts = props.notifications.filter((n) => n.type === 'budget.alert').length;
  return (
    <div class="card">
      <h1>Notifications</h1>
      <p class="hint">
        A budget alert comes once a month at 50 %, 80 % and 100 % of each limit, here and at your webhook endpoints. {alerts === 1 ? 'One budget alert' : `${alerts} budget alerts`} so
        far.
      </p>
      {props.notifications.length === 0 ? <p class="muted">Nothing to tell you yet.</p> : null}
      <ul class="feed">
        {props.notifications.map((n) => (
          <li>
            <div class="muted">
              <time datetime={n.created}>{formatDate(n.created)}</time>
            </div>
            <Notice n={n} names={props.names} />
          </li>
        ))}
      </ul>
    </div>
  );
}

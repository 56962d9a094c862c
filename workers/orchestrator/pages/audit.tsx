// The principal's audit timeline (PROTOCOL.md §4), newest first, filtered by
// agent, provider, mandate, action and outcome with a plain GET form, and
// linked to the whole trail's JSON Lines export and its verification.
import type { AuditEvent } from '../../lib/audit';
import { formatDate, formatMoney } from '../../lib/pages/format';
import { ColumnHeads } from '../../lib/pages/layout';
import { AgentName, type Names } from './dashboard-frame';

export type AuditFilters = { agent?: string; provider?: string; mandate?: string; action?: string; outcome?: string };

/** Actions worth offering as suggestions; the field takes any action name. */
const COMMON_ACTIONS = ['charge.authorize', 'charge.capture', 'charge.void', 'charge.refund', 'mandate.request', 'mandate.approve', 'mandate.deny', 'mandate.revoke', 'attestation.issue', 'agent.register', 'agent.revoke', 'limit.set', 'budget.alert', 'dispute.open', 'dispute.decide', 'session.create'];

function Who(props: { event: AuditEvent; names: Names }) {
  const { actor } = props.event;
  if (actor.type === 'principal') return <>you</>;
  if (actor.type === 'agent') return <AgentName id={actor.id} names={props.names} />;
  if (actor.type === 'provider') return <>{props.names.providers[actor.id] ?? actor.id}</>;
  return (
    <>
      {actor.type} <span class="muted mono">{actor.id}</span>
    </>
  );
}

function Select(props: { id: string; label: string; value: string | undefined; any: string; options: [string, string][] }) {
  return (
    <div>
      <label for={props.id}>{props.label}</label>
      <select id={props.id} name={props.id}>
        <option value="">{props.any}</option>
        {props.options.map(([value, text]) => (
          <option value={value} selected={value === props.value}>
            {text}
          </option>
        ))}
      </select>
    </div>
  );
}

export function AuditPage(props: { events: AuditEvent[]; total: number; filters: AuditFilters; names: Names }) {
  const { filters, names } = props;
  const filtered = Object.values(filters).some((v) => v);
  return (
    <div class="card">
      <h1>Audit trail</h1>
      <form method="get" action="/dashboard/audit" aria-label="Filter the audit trail">
        <div class="filters">
          <Select id="agent" label="Agent" value={filters.agent} any="Any agent" options={Object.entries(names.agents)} />
          <Select id="provider" label="Provider" value={filters.provider} any="Any provider" options={Object.entries(names.providers)} />
          <Select id="mandate" label="Mandate" value={filters.mandate} any="Any mandate" options={Object.entries(names.mandates).map(([id, d]) => [id, `“${d}”`])} />
          <div>
            <label for="action">Action</label>
            <input id="action" name="action" type="text" list="actions" value={filters.action ?? ''} placeholder="any action" />
            <datalist id="actions">
              {COMMON_ACTIONS.map((a) => (
                <option value={a} />
              ))}
            </datalist>
          </div>
          <Select
            id="outcome"
            label="Outcome"
            value={filters.outcome}
            any="Any outcome"
            options={[
              ['succeeded', 'succeeded'],
              ['refused', 'refused'],
              ['failed', 'failed'],
            ]}
          />
        </div>
        <div class="actions">
          <button type="submit">Filter</button>
          {filtered ? <a href="/dashboard/audit">Clear the filters</a> : null}
        </div>
      </form>
      <p class="muted" role="status">
        {props.total} {props.total === 1 ? 'event' : 'events'}
        {filtered ? ' match' : ''}
        {props.total > props.events.length ? `; the latest ${props.events.length} are shown` : ''}. The whole trail, hash-chained: <a href="/v1/audit">export it as JSON Lines</a>{' '}
        or <a href="/v1/audit/verify">verify the chain</a>.
      </p>
      {props.events.length ? (
        <table class="stack">
          <ColumnHeads names={['Event', 'When', 'Who', 'What', 'Outcome']} />
          <tbody>
            {props.events.map((e) => (
              <tr>
                <td data-label="Event" class="mono">
                  {e.seq}
                </td>
                <td data-label="When">
                  <time datetime={e.time}>{formatDate(e.time)}</time>
                </td>
                <td data-label="Who">
                  <Who event={e} names={names} />
                </td>
                <td data-label="What">
                  <span class="mono">{e.action}</span>
                  {e.amount ? <> · {formatMoney(e.amount)}</> : null}
                  {e.target ? <div class="muted mono">{e.target}</div> : null}
                  {e.mandate_id && names.mandates[e.mandate_id] ? <div class="muted">mandate “{names.mandates[e.mandate_id]}”</div> : null}
                </td>
                <td data-label="Outcome">
                  <span class={e.outcome === 'succeeded' ? 'badge' : 'badge over'}>{e.outcome}</span>
                  {e.reason ? <div class="muted">{e.reason}</div> : null}
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      ) : null}
    </div>
  );
}

// The principal's mandates (PROTOCOL.md §2.1): requests waiting for a decision
// (decided on the approval page, which shows exactly what is asked), active
// mandates with this month's spend, an Extend form (a request for the same
// terms until later, decided like any other) and a revoke button, and those
// that ended.
import { formatDate, formatMoney } from '../../lib/pages/format';
import { ColumnHeads } from '../../lib/pages/layout';
import { extensionsOf } from '../../lib/mandate-extensions';
import type { Mandate } from '../../lib/schemas/mandates';
import type { LimitRow } from '../spend-overview';
import { AgentName, Csrf, type Names } from './dashboard-frame';

function Scope(props: { mandate: Mandate; names: Names }) {
  return (
    <>
      {props.mandate.scope.map((s) => (
        <div>
          {props.names.providers[s.provider] ?? s.provider}: {s.services.join(', ')}
          {s.max_per_charge ? <span class="muted"> (at most {formatMoney(s.max_per_charge)} a charge)</span> : null}
        </div>
      ))}
    </>
  );
}

export function MandatesPage(props: { mandates: Mandate[]; limits: LimitRow[]; names: Names; csrf: string }) {
  const { names } = props;
  const pending = props.mandates.filter((m) => m.status === 'pending');
  const active = props.mandates.filter((m) => m.status === 'active');
  const ended = props.mandates.filter((m) => m.status !== 'pending' && m.status !== 'active');
  const spentOn = (id: string) => props.limits.find((l) => l.scope === 'mandate' && l.id === id)?.spent;
  return (
    <>
      <div class="card">
        <h1>Mandates</h1>
        <p class="hint">
          A mandate is what you allowed an agent to spend, where, and until when. A raised limit is always a new request that you approve. Extending a mandate asks for the
          same terms until a later date, for you to approve: domains and subscriptions bought under it go on renewing.
        </p>
        <h2>Waiting for your decision</h2>
        {pending.length === 0 ? <p class="muted">No request waits for you.</p> : null}
        {pending.length ? (
          <table class="stack">
            <ColumnHeads names={['Request', 'Agent', 'Asks for', 'Decide']} />
            <tbody>
              {pending.map((m) => (
                <tr>
                  <td data-label="Request">
                    “{m.description}”<div class="muted">asked {formatDate(m.created)}</div>
                  </td>
                  <td data-label="Agent">
                    <AgentName id={m.agent_id} names={names} />
                  </td>
                  <td data-label="Asks for">
                    up to {formatMoney(m.spend_limit)} a month
                    <Scope mandate={m} names={names} />
                  </td>
                  <td data-label="Decide">
                    <a href={`/mandates/${m.mandate_id}/approval`}>Review and decide</a>
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
        ) : null}
      </div>
      <div class="card">
        <h2>Active</h2>
        {active.length === 0 ? <p class="muted">No active mandate: no agent may spend for you right now.</p> : null}
        {active.length ? (
          <table class="stack">
            <ColumnHeads names={['Mandate', 'Agent', 'Where', 'Spent this month', 'Extend, raise or revoke']} />
            <tbody>
              {active.map((m) => {
                const spent = spentOn(m.mandate_id);
                const offered = extensionsOf(m.expires_at);
                // One request to supersede it waits already (the agent's or an earlier Extend): decided first, not asked again.
                const waiting = pending.find((p) => p.supersedes === m.mandate_id);
                return (
                  <tr>
                    <td data-label="Mandate">
                      <a href={`/mandates/${m.mandate_id}/approval`}>“{m.description}”</a>
                      <div class="muted">until {formatDate(m.expires_at)}</div>
                    </td>
                    <td data-label="Agent">
                      <AgentName id={m.agent_id} names={names} />
                    </td>
                    <td data-label="Where">
                      <Scope mandate={m} names={names} />
                    </td>
                    <td data-label="Spent this month">
                      {formatMoney(spent ?? { amount: 0, currency: m.spend_limit.currency })} of {formatMoney(m.spend_limit)}
                    </td>
                    <td data-label="Extend, raise or revoke">
                      {waiting ? (
                        <p>
                          <a href={`/mandates/${waiting.mandate_id}/approval`}>A request to change this mandate waits for your decision</a>
                        </p>
                      ) : offered.length ? (
                        <form class="inline" method="post" action={`/dashboard/mandates/${m.mandate_id}/extend`}>
                          <Csrf token={props.csrf} />
                          <select name="days" aria-label={`Extend the mandate “${m.description}” until`}>
                            {offered.map((d, i) => (
                              <option value={String(d)} selected={i === offered.length - 1}>
                                {d === 365 ? 'a year from now' : `${d} days from now`}
                              </option>
                            ))}
                          </select>
                          <button type="submit" class="secondary" aria-label={`Extend the mandate “${m.description}”`}>
                            Extend
                          </button>
                        </form>
                      ) : (
                        <p class="muted">Runs as long as a mandate can.</p>
                      )}
                      {waiting ? null : (
                        <p>
                          <a href={`/mandates/${m.mandate_id}/approval#raise`} aria-label={`Raise the limits of the mandate “${m.description}”`}>
                            Raise its limits
                          </a>
                        </p>
                      )}
                      <form class="inline" method="post" action={`/dashboard/mandates/${m.mandate_id}/revoke`}>
                        <Csrf token={props.csrf} />
                        <button type="submit" class="secondary" aria-label={`Revoke the mandate “${m.description}”`}>
                          Revoke
                        </button>
                      </form>
                    </td>
                  </tr>
                );
              })}
            </tbody>
          </table>
        ) : null}
      </div>
      {ended.length ? (
        <div class="card">
          <h2>Ended</h2>
          <table class="stack">
            <ColumnHeads names={['Mandate', 'Agent', 'Status']} />
            <tbody>
              {ended.map((m) => (
                <tr>
                  <td data-label="Mandate">
                    <a href={`/mandates/${m.mandate_id}/approval`}>“{m.description}”</a>
                  </td>
                  <td data-label="Agent">
                    <AgentName id={m.agent_id} names={names} />
                  </td>
                  <td data-label="Status">
                    <span class="badge">{m.status}</span>
                    {m.revoked_at ? <div class="muted">{formatDate(m.revoked_at)}</div> : m.decided_at ? <div class="muted">{formatDate(m.decided_at)}</div> : null}
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      ) : null}
    </>
  );
}

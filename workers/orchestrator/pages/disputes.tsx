// Disputes (PROTOCOL.md §5): open one from a captured charge with a reason,
// and read each verdict and what the adjudicator checked, in plain words,
// with the evidence bundle anyone can verify with the public keys alone.
import { formatDate, formatMoney } from '../../lib/pages/format';
import { ColumnHeads } from '../../lib/pages/layout';
import type { Charge } from '../../lib/schemas/charges';
import type { DisputeWire } from '../disputes';
import { CHECK_WORDS, VERDICT_WORDS } from './evidence';
import { AgentName, Csrf, type Names } from './dashboard-frame';

const RESULT_WORDS: Record<string, string> = { pass: 'yes', fail: 'no', missing: 'no evidence' };

function chargeWords(charge: Charge | undefined, names: Names): string {
  if (!charge) return 'a charge';
  return `${charge.service} (${charge.plan}) at ${names.providers[charge.provider ?? ''] ?? charge.provider}, ${formatMoney({ amount: charge.amount, currency: charge.currency })}`;
}

/** One dispute: the verdict first, then each check. `open` shows the checks without a click. */
export function DisputeVerdict(props: { dispute: DisputeWire; charge: Charge | undefined; names: Names; heading: 'h1' | 'h3'; open?: boolean }) {
  const { dispute, names } = props;
  const Heading = props.heading;
  const passed = dispute.findings.filter((f) => f.result === 'pass').length;
  return (
    <section aria-labelledby={`title-${dispute.dispute_id}`} id={dispute.dispute_id}>
      <Heading id={`title-${dispute.dispute_id}`}>Dispute of {chargeWords(props.charge, names)}</Heading>
      <p role="status">
        <span class={dispute.verdict === 'within_scope' ? 'badge' : 'badge warn'}>{dispute.verdict.replaceAll('_', ' ')}</span> <strong>{VERDICT_WORDS[dispute.verdict] ?? dispute.verdict}</strong>
        {dispute.failing_party ? ` The party at fault: the ${dispute.failing_party}.` : ''}
      </p>
      <p class="muted">
        Your reason: “{dispute.reason}”. Decided {formatDate(dispute.created)} by {dispute.adjudicator}. Charge <span class="mono">{dispute.charge_id}</span>
        {props.charge?.agent_id ? (
          <>
            {' '}
            by <AgentName id={props.charge.agent_id} names={names} />
          </>
        ) : null}
        .
      </p>
      <details open={props.open}>
        <summary>
          What was checked: {passed} of {dispute.findings.length} checks passed
        </summary>
        <table class="stack findings">
          <ColumnHeads names={['Check', 'Passed?', 'Evidence']} />
          <tbody>
            {dispute.findings.map((f) => (
              <tr>
                <td data-label="Check">{CHECK_WORDS[f.check] ?? f.check}</td>
                <td data-label="Passed?">
                  <span class={f.result === 'pass' ? 'badge' : 'badge warn'}>{RESULT_WORDS[f.result] ?? f.result}</span>
                </td>
                <td data-label="Evidence" class="muted wrap">
                  {f.evidence}
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      </details>
      <p>
        <a href={`/v1/disputes/${dispute.dispute_id}/evidence`}>Download the evidence bundle</a> (JSON). Anyone can check this verdict with it:{' '}
        <code>npm run verify-evidence -- evidence.json</code>.
      </p>
    </section>
  );
}

export function DisputesPage(props: { disputable: Charge[]; disputes: DisputeWire[]; charges: Record<string, Charge>; names: Names; csrf: string; reason?: { charge_id: string; text: string } }) {
  const { names } = props;
  return (
    <>
      <div class="card">
        <h1>Disputes</h1>
        <p class="hint">
          Dispute a charge you did not authorize. The verdict is decided at once from the evidence alone: the mandate you signed, what the approval page showed you, the agent’s signed
          request and the provider’s receipt. A charge outside what you authorized is refunded.
        </p>
        <h2>Dispute a charge</h2>
        {props.disputable.length === 0 ? <p class="muted">No captured charge to dispute.</p> : null}
        {props.disputable.length ? (
          <table class="stack">
            <thead>
              <tr>
                <th scope="col">When</th>
                <th scope="col">What</th>
                <th scope="col" class="num">
                  Amount
                </th>
                <th scope="col">Dispute</th>
              </tr>
            </thead>
            <tbody>
              {props.disputable.map((ch) => (
                <tr>
                  <td data-label="When">{formatDate(ch.created)}</td>
                  <td data-label="What">
                    {ch.service} ({ch.plan}) at {names.providers[ch.provider ?? ''] ?? ch.provider}
                    <div class="muted">
                      by <AgentName id={ch.agent_id} names={names} />
                    </div>
                    <div class="muted mono">{ch.charge_id}</div>
                  </td>
                  <td data-label="Amount" class="num">
                    {formatMoney({ amount: ch.amount, currency: ch.currency })}
                  </td>
                  <td data-label="Dispute">
                    <form class="inline" method="post" action="/dashboard/disputes">
                      <Csrf token={props.csrf} />
                      <input type="hidden" name="charge_id" value={ch.charge_id} />
                      <label for={`reason-${ch.charge_id}`}>Why do you dispute it?</label>
                      <input
                        id={`reason-${ch.charge_id}`}
                        name="reason"
                        type="text"
                        required
                        maxlength={1000}
                        value={props.reason?.charge_id === ch.charge_id ? props.reason.text : ''}
                      />
                      <div class="actions">
                        <button type="submit" class="secondary">
                          Dispute this charge
                        </button>
                      </div>
                    </form>
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
        ) : null}
      </div>
      {props.disputes.length ? (
        <div class="card">
          <h2>Your disputes</h2>
          {props.disputes.map((d) => (
            <div class="dispute">
              <DisputeVerdict dispute={d} charge={props.charges[d.charge_id]} names={names} heading="h3" />
            </div>
          ))}
        </div>
      ) : null}
    </>
  );
}

// Disputes (PROTOCOL.md §5): open one from a captured charge with a reason,
// and read each verdict and what the adjudicator checked, in plain words,
// with the evidence bundle anyone can verify with the public keys alone.
import { formatDate, formatMoney } from '../../lib/pages/format';
import { ColumnHeads } from '../../lib/pages/layout';
import type { Charge } from '../../lib/schemas/charges';
import type { DisputeWire } from '../disputes';
import { AgentName, ChargeCells, Csrf, type Names } from './dashboard-frame';

export const VERDICT_WORDS: Record<string, string> = {
  within_scope: 'The agent acted within the scope you authorized. The charge stands.',
  outside_scope: 'The charge was outside the scope you authorized. It has been refunded.',
  insufficient_evidence: 'There is not enough evidence that this charge was within your authorization. It has been refunded.',
};

const CHECK_WORDS: Record<string, string> = {
  mandate_signed: 'Your authorization (the mandate) carries the orchestrator’s valid signature',
  mandate_active: 'The mandate was active when the charge was made',
  provider_and_service_in_scope: 'The provider and the service were among those you allowed',
  amount_within_limits: 'The amount fit the per-charge, mandate and monthly limits',
  agent_signed_request: 'Your agent signed, with its registered key, this very request to this provider at this price',
  human_approved_display: 'What you approved is exactly what the approval page showed you',
  provider_keys: 'The provider’s published keys were at hand to check what it signed',
  provider_delivered: 'The provider’s signed receipt describes this charge',
  provider_checks: 'The provider itself found the mandate active and every check passed',
  audit_trail: 'The audit trail records the authorization, untampered',
  provider_trail: 'The provider’s own audit trail records what it provisioned for this charge',
};

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

/** Opens a dispute of one captured charge: the reason is the only thing asked. */
export function DisputeForm(props: { charge_id: string; csrf: string; reason?: { charge_id: string; text: string } }) {
  return (
    <form class="inline" method="post" action="/dashboard/disputes">
      <Csrf token={props.csrf} />
      <input type="hidden" name="charge_id" value={props.charge_id} />
      <label for={`reason-${props.charge_id}`}>Why do you dispute it?</label>
      <input id={`reason-${props.charge_id}`} name="reason" type="text" required maxlength={1000} value={props.reason?.charge_id === props.charge_id ? props.reason.text : ''} />
      <div class="actions">
        <button type="submit" class="secondary">
          Dispute this charge
        </button>
      </div>
    </form>
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
            <ColumnHeads names={['When', 'What', 'Amount', 'Dispute']} numeric={['Amount']} />
            <tbody>
              {props.disputable.map((ch) => (
                <tr>
                  <ChargeCells charge={ch} names={names} />
                  <td data-label="Dispute">
                    <DisputeForm charge_id={ch.charge_id} csrf={props.csrf} reason={props.reason} />
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

// The human's view of money and evidence: charges (with a dispute button),
// the audit timeline with filters, and a dispute's verdict in plain words.
import { Hono } from 'hono';
import type { Child } from 'hono/jsx';
import type { AuditEvent } from '../../lib/audit';
import { auditEvents } from '../../lib/audit-trail';
import { formatDate, formatMoney } from '../../lib/pages/format';
import { ColumnHeads, Layout, PAGE_SECURITY_HEADERS, type NavLink } from '../../lib/pages/layout';
import type { Session } from '../../lib/sessions';
import type { DisputeRecord } from '../../../durable-objects/ledger/disputes';
import type { Hold } from '../../../durable-objects/ledger/spend';
import { toChargeWire } from '../charges';
import { toDisputeWire } from '../disputes';
import { ledgerOf, orchestratorConfig, type OrchestratorBindings } from '../env';
import { pageSession } from '../session';
import { principalById } from '../store/principals';

export const PRINCIPAL_NAV: NavLink[] = [
  { href: '/charges', label: 'Charges' },
  { href: '/audit', label: 'Audit trail' },
];

export const VERDICT_WORDS: Record<string, string> = {
  within_scope: 'The agent acted within the scope you authorized. The charge stands.',
  outside_scope: 'The charge was outside the scope you authorized. It has been refunded.',
  insufficient_evidence: 'There is not enough evidence that this charge was within your authorization. It has been refunded.',
};

export const CHECK_WORDS: Record<string, string> = {
  mandate_signed: 'Your authorization (the mandate) carries the orchestrator’s valid signature',
  mandate_active: 'The mandate was active when the charge was made',
  provider_and_service_in_scope: 'The provider and the service were among those you allowed',
  amount_within_limits: 'The amount fit the per-charge, mandate and monthly limits',
  agent_signed_request: 'The request was signed with your agent’s registered key',
  human_approved_display: 'What you approved is exactly what the approval page showed you',
  provider_delivered: 'The provider’s signed receipt describes this charge',
  provider_checks: 'The provider itself found the mandate active and every check passed',
  audit_trail: 'The audit trail records the authorization, untampered',
  provider_trail: 'The provider’s own audit trail records what it provisioned for this charge',
};

export function evidencePages() {
  const app = new Hono<{ Bindings: OrchestratorBindings; Variables: { session: Session } }>();

  async function page(c: { env: OrchestratorBindings; get: (k: 'session') => Session; html: (...a: any[]) => Response }, title: string, body: Child, status = 200) {
    const session = c.get('session');
    const principal = await principalById(c.env.DB, session.subject_id);
    return c.html(
      <Layout title={title} roleName={orchestratorConfig(c.env).ORCHESTRATOR_NAME} signedIn={{ label: principal?.email ?? session.subject_id, csrfToken: session.csrf_token }} nav={PRINCIPAL_NAV}>
        {body}
      </Layout>,
      status,
      PAGE_SECURITY_HEADERS,
    );
  }

  app.get('/charges', pageSession, async (c) => {
    const session = c.get('session');
    const ledger = ledgerOf(c.env, session.subject_id);
    const charges = ((await ledger.listCharges({})) as Hold[]).slice(0, 200).map(toChargeWire);
    return page(
      c as never,
      'Charges',
      <div class="card">
        <h1>Charges</h1>
        {charges.length === 0 ? <p class="muted">No charges yet.</p> : null}
        <table>
          <ColumnHeads names={['When', 'What', 'Amount', 'Status', 'Dispute']} />
          <tbody>
            {charges.map((ch) => (
              <tr>
                <td>{formatDate(ch.created)}</td>
                <td>
                  {ch.service} ({ch.plan}) at {ch.provider}
                  <div class="muted mono">
                    {ch.charge_id} · agent {ch.agent_id}
                  </div>
                </td>
                <td>{formatMoney({ amount: ch.amount, currency: ch.currency })}</td>
                <td>
                  <span class="badge">{ch.status}</span>
                </td>
                <td>
                  {ch.status === 'captured' ? (
                    <form method="post" action="/v1/disputes">
                      <input type="hidden" name="csrf_token" value={session.csrf_token} />
                      <input type="hidden" name="charge_id" value={ch.charge_id} />
                      <label for={`reason-${ch.charge_id}`}>Why do you dispute it?</label>
                      <input id={`reason-${ch.charge_id}`} name="reason" type="text" required maxlength={1000} />
                      <button type="submit" class="secondary">Dispute</button>
                    </form>
                  ) : null}
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      </div>,
    );
  });

  app.get('/audit', pageSession, async (c) => {
    const session = c.get('session');
    const q = (name: string) => c.req.query(name)?.trim() || undefined;
    const filter = { actorId: q('agent') ?? q('provider'), mandateId: q('mandate'), action: q('action') };
    const events: AuditEvent[] = [];
    for await (const event of auditEvents(ledgerOf(c.env, session.subject_id), c.env.DB, session.subject_id, 0, filter)) events.push(event);
    const shown = events.slice(-200).reverse();
    return page(
      c as never,
      'Audit trail',
      <div class="card">
        <h1>Audit trail</h1>
        <form method="get" action="/audit">
          <label for="agent">Agent</label>
          <input id="agent" name="agent" type="text" value={q('agent') ?? ''} placeholder="agt_…" />
          <label for="provider">Provider</label>
          <input id="provider" name="provider" type="text" value={q('provider') ?? ''} placeholder="cloud" />
          <label for="mandate">Mandate</label>
          <input id="mandate" name="mandate" type="text" value={q('mandate') ?? ''} placeholder="mdt_…" />
          <label for="action">Action</label>
          <input id="action" name="action" type="text" value={q('action') ?? ''} placeholder="charge.authorize" />
          <div class="actions">
            <button type="submit">Filter</button>
            <a href="/audit">Clear</a>
          </div>
        </form>
        <p class="muted">
          {events.length} events{events.length > shown.length ? `, the latest ${shown.length} shown` : ''}. The whole trail, verifiable: <a href="/v1/audit">JSON Lines</a> ·{' '}
          <a href="/v1/audit/verify">verify</a>
        </p>
        <table>
          <ColumnHeads names={['#', 'When', 'Who', 'What', 'Outcome']} />
          <tbody>
            {shown.map((e) => (
              <tr>
                <td class="mono">{e.seq}</td>
                <td>{formatDate(e.time)}</td>
                <td>
                  {e.actor.type} <span class="mono">{e.actor.id}</span>
                </td>
                <td>
                  {e.action}
                  {e.target ? <div class="muted mono">{e.target}</div> : null}
                  {e.amount ? <div>{formatMoney(e.amount)}</div> : null}
                </td>
                <td>
                  <span class="badge">{e.outcome}</span>
                  {e.reason ? <div class="muted">{e.reason}</div> : null}
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      </div>,
    );
  });

  app.get('/disputes/:id', pageSession, async (c) => {
    const session = c.get('session');
    const record = (await ledgerOf(c.env, session.subject_id).getDispute(c.req.param('id'))) as DisputeRecord | null;
    if (!record) return page(c as never, 'Not found', <div class="card"><h1>No such dispute</h1></div>, 404);
    const dispute = toDisputeWire(c.env, record);
    return page(
      c as never,
      'Dispute',
      <div class="card">
        <h1>Dispute of {dispute.charge_id}</h1>
        <p class={dispute.verdict === 'within_scope' ? '' : 'ok'} role="status">
          <strong>{VERDICT_WORDS[dispute.verdict] ?? dispute.verdict}</strong>
          {dispute.failing_party ? ` The party at fault: the ${dispute.failing_party}.` : ''}
        </p>
        <p class="muted">Your reason: “{dispute.reason}”. Decided {formatDate(dispute.created)} by {dispute.adjudicator}.</p>
        <h2>What was checked</h2>
        <table>
          <ColumnHeads names={['Check', 'Result', 'Evidence']} />
          <tbody>
            {dispute.findings.map((f) => (
              <tr>
                <td>{CHECK_WORDS[f.check] ?? f.check}</td>
                <td>
                  <span class="badge">{f.result === 'pass' ? 'yes' : f.result === 'fail' ? 'no' : 'no evidence'}</span>
                </td>
                <td class="muted">{f.evidence}</td>
              </tr>
            ))}
          </tbody>
        </table>
        <p>
          Anyone can check this verdict: download <a href={`/v1/disputes/${dispute.dispute_id}/evidence`}>the evidence</a> and run <code>npm run verify-evidence -- evidence.json</code>.
        </p>
      </div>,
    );
  });

  return app;
}

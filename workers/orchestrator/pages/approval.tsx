// The approval page (PROTOCOL.md §2.1): a non-agentic surface where the human
// sees, in plain words, exactly what the agent asks for, may lower the limits,
// and approves or denies. It renders the canonical display document whose
// hash is recorded with the approval.
import { Hono } from 'hono';
import type { Child } from 'hono/jsx';
import { ColumnHeads, Layout, PAGE_SECURITY_HEADERS } from '../../lib/pages/layout';
import { amountStep, fingerprint, formatDate, formatMoney, majorUnits, unitName } from '../../lib/pages/format';
import { ProblemError } from '../../lib/problem';
import type { Money } from '../../lib/schemas/money';
import type { Session } from '../../lib/sessions';
import { ledgerOf, orchestratorConfig, type OrchestratorBindings } from '../env';
import { checkUserCode, displayDocument, findMandateForPrincipal, toWire, type DisplayDocument } from '../mandates';
import type { MandateTerms } from '../../../durable-objects/principal-ledger';
import { pageSession } from '../session';
import { principalById } from '../store/principals';

const errors: Record<string, string> = {
  invalid_user_code: 'That code does not match the one the agent shows. Check it and try again.',
  display_changed: 'The request changed while you were reading it. Review it again.',
  reauthentication_required: 'Approving this lets the agent spend more, which needs a recent sign-in. Sign out, sign in again, and come back.',
  mandate_inactive: 'This request can no longer be decided: it was decided already or has expired.',
  invalid_request: 'The limits you entered are not valid: you can only lower them.',
  not_found: 'There is no such request.',
  raise_refused: 'A raised limit is not lower than the one you approved, one of them is higher, and it is in the same currency.',
  request_waiting: 'Another request to change this mandate waits for your decision: decide it first.',
  mandate_not_active: 'This mandate is no longer active: it cannot be changed.',
};

/**
 * An active mandate's limits raised by its human (where a declined charge's step_up_url leads): the same mandate asked
 * again with higher limits, on the agent's behalf, which the human approves on the next page (PROTOCOL.md §2.1: a
 * raised limit is a new approval, never an edit).
 */
function RaiseForm(props: { id: string; terms: MandateTerms; csrf: string; names: Record<string, string> }) {
  const { terms } = props;
  // A per-charge limit is raised only where there is one.
  const perCharge = terms.scope.filter((s) => s.max_per_charge).map((s) => ({ provider: s.provider, name: props.names[s.provider] ?? s.provider, limit: s.max_per_charge! }));
  return (
    <form method="post" action={`/dashboard/mandates/${props.id}/raise`}>
      <h2 id="raise">Raise its limits</h2>
      <p>The same mandate is asked for again with the limits you enter, and you approve it on the next page. Until then this one stays as it is.</p>
      <input type="hidden" name="csrf_token" value={props.csrf} />
      <LimitFields idPrefix="raise_" bound="now" spend={terms.spend_limit} perCharge={perCharge} />
      <div class="actions">
        <button type="submit" class="secondary">
          Raise
        </button>
      </div>
    </form>
  );
}

/**
 * The limits both forms of this page ask for (read back by pages/limit-fields.ts): typed in the major unit of the
 * mandate's currency, each shown with the bound it moves from (the most a request asks, or what is approved now).
 */
function LimitFields(props: { idPrefix: string; bound: 'at most' | 'now'; spend: Money; perCharge: { provider: string; name: string; limit: Money | null }[] }) {
  const currency = props.spend.currency;
  const step = amountStep(currency);
  return (
    <>
      <input type="hidden" name="currency" value={currency} />
      <label for={`${props.idPrefix}spend_limit`}>
        Monthly limit in {unitName(currency)} ({props.bound} {formatMoney(props.spend)})
      </label>
      <input id={`${props.idPrefix}spend_limit`} name="spend_limit" type="number" min="0" step={step} value={majorUnits(props.spend)} />
      {props.perCharge.map((p) => (
        <>
          <label for={`${props.idPrefix}max_per_charge_${p.provider}`}>
            At most per charge at {p.name}, in {unitName(currency)}
            {p.limit ? ` (${props.bound} ${formatMoney(p.limit)})` : ''}
          </label>
          <input id={`${props.idPrefix}max_per_charge_${p.provider}`} name={`max_per_charge_${p.provider}`} type="number" min="0" step={step} value={p.limit ? majorUnits(p.limit) : ''} />
        </>
      ))}
    </>
  );
}

function Request(props: { doc: DisplayDocument }) {
  const { doc } = props;
  return (
    <>
      <p>
        <strong>{doc.agent.name}</strong>
        {doc.agent.name_verified ? null : <span class="badge">name not verified</span>}{' '}
        {/* A successor may be the human's own request (an extension from the dashboard): it is not said to be the agent's. */}
        {doc.supersedes ? 'would act for you, in place of the mandate it replaces, and spend up to' : 'asks to act for you and to spend up to'}{' '}
        <strong>{formatMoney(doc.spend_limit)} a month</strong> of your money until <strong>{formatDate(doc.expires_at)}</strong>.
      </p>
      <p class="muted">“{doc.description}”</p>
      <dl>
        <dt>Agent key</dt>
        <dd class="mono">{fingerprint(doc.agent.key_thumbprint)}</dd>
        {doc.request_origin ? (
          <>
            <dt>Asked from</dt>
            <dd class="mono">{doc.request_origin}</dd>
          </>
        ) : null}
        <dt>Your email</dt>
        <dd>{doc.share_email ? `shared with these providers: ${doc.email_shared}` : 'not shared with providers'}</dd>
        {doc.supersedes ? (
          <>
            <dt>Replaces</dt>
            <dd class="mono">{doc.supersedes}</dd>
          </>
        ) : null}
      </dl>
      <h2>Where it may spend</h2>
      <table>
        <ColumnHeads names={['Provider', 'Services', 'At most per charge']} />
        <tbody>
          {doc.providers.map((p) => (
            <tr>
              <td>{p.provider_name}</td>
              <td>{p.services.join(', ')}</td>
              <td>{p.max_per_charge ? formatMoney(p.max_per_charge) : 'no per-charge limit'}</td>
            </tr>
          ))}
        </tbody>
      </table>
    </>
  );
}

export function approvalPages() {
  const app = new Hono<{ Bindings: OrchestratorBindings; Variables: { session: Session } }>();

  app.get('/mandates/:id/approval', pageSession, async (c) => {
    const session = c.get('session');
    const principal = await principalById(c.env.DB, session.subject_id);
    const roleName = orchestratorConfig(c.env).ORCHESTRATOR_NAME;
    const signedIn = { label: principal?.email ?? session.subject_id, csrfToken: session.csrf_token };
    const error = c.req.query('error');
    const id = c.req.param('id');
    const page = (title: string, body: Child, status: 200 | 404 = 200) =>
      c.html(
        <Layout title={title} roleName={roleName} signedIn={signedIn}>
          {error ? (
            <p class="error" role="alert">
              {errors[error] ?? 'That did not work.'}
            </p>
          ) : null}
          {body}
        </Layout>,
        status,
        PAGE_SECURITY_HEADERS,
      );

    let view;
    try {
      view = await findMandateForPrincipal(c.env, session.subject_id, id);
    } catch (e) {
      if (e instanceof ProblemError && e.code === 'not_found') return page('Not found', <div class="card"><h1>No such request</h1><p>There is no request to decide at this address for your account.</p></div>, 404);
      throw e;
    }

    const userCode = c.req.query('user_code');
    if (view.kind === 'first_contact') {
      let codeOk = false;
      if (userCode) {
        try {
          checkUserCode(view, userCode);
          codeOk = true;
        } catch {
          codeOk = false;
        }
      }
      if (!codeOk) {
        return page(
          'Enter the code',
          <div class="card">
            <h1>An agent asks to act for you</h1>
            {userCode ? <p class="error" role="alert">{errors.invalid_user_code}</p> : null}
            <p>Type the code the agent shows you, to prove this request is the one you started.</p>
            <form method="get" action={`/mandates/${id}/approval`}>
              <label for="user_code">Code</label>
              <input id="user_code" name="user_code" type="text" autocomplete="off" inputmode="text" placeholder="XXXX-XXXX" required />
              <div class="actions">
                <button type="submit">Continue</button>
              </div>
            </form>
          </div>,
        );
      }
    }

    const { document, hash } = await displayDocument(c.env, session.subject_id, view);
    const status = view.kind === 'owned' ? view.mandate.status : 'pending';
    if (status !== 'pending') {
      const wire = view.kind === 'owned' ? toWire(c.env, view.mandate) : null;
      const waiting = status === 'active' ? (await ledgerOf(c.env, session.subject_id).waitingSuccessors(id))[0] : undefined;
      const terms = view.kind === 'owned' ? (view.mandate.approved ?? view.mandate.requested) : null;
      return page(
        'Mandate',
        <div class="card">
          <h1>
            Mandate <span class="badge">{status}</span>
          </h1>
          <Request doc={document} />
          {terms && view.kind === 'owned' && view.mandate.approved ? (
            <p>
              You approved up to <strong>{formatMoney(terms.spend_limit)} a month</strong>
              {wire?.decided_at ? ` on ${formatDate(wire.decided_at)}` : ''}.
            </p>
          ) : null}
          {status === 'active' && view.kind === 'owned' && view.mandate.approved ? (
            // One request to change it waits already (the agent's, an earlier Extend or Raise): decided first, not asked again.
            waiting ? (
              <p>
                <a href={`/mandates/${waiting.mandate_id}/approval`}>A request to change this mandate waits for your decision</a>
              </p>
            ) : (
              <RaiseForm id={id} terms={view.mandate.approved} csrf={session.csrf_token} names={Object.fromEntries(document.providers.map((p) => [p.provider, p.provider_name]))} />
            )
          ) : null}
          {status === 'active' ? (
            <form method="post" action={`/v1/mandates/${id}/revoke`}>
              <input type="hidden" name="csrf_token" value={session.csrf_token} />
              <div class="actions">
                <button type="submit" class="secondary">Revoke this mandate</button>
              </div>
            </form>
          ) : null}
        </div>,
      );
    }

    return page(
      'Approve a mandate',
      <div class="card">
        {/* A successor (a raised limit, an extension, asked for by the agent or from the dashboard) replaces another. */}
        <h1>{document.supersedes ? 'Approve a mandate that replaces another' : 'An agent asks for your approval'}</h1>
        <Request doc={document} />
        <form method="post" action={`/v1/mandates/${id}/approve`}>
          <input type="hidden" name="csrf_token" value={session.csrf_token} />
          <input type="hidden" name="display_hash" value={hash} />
          {userCode ? <input type="hidden" name="user_code" value={userCode} /> : null}
          <h2>Lower the limits (optional)</h2>
          {/* Lowered, never raised, in the currency asked for. */}
          <LimitFields idPrefix="" bound="at most" spend={document.spend_limit} perCharge={document.providers.map((p) => ({ provider: p.provider, name: p.provider_name, limit: p.max_per_charge }))} />
          <div class="actions">
            <button type="submit">Approve</button>
          </div>
        </form>
        <form method="post" action={`/v1/mandates/${id}/deny`}>
          <input type="hidden" name="csrf_token" value={session.csrf_token} />
          {userCode ? <input type="hidden" name="user_code" value={userCode} /> : null}
          <div class="actions">
            <button type="submit" class="secondary">Deny</button>
          </div>
        </form>
      </div>,
    );
  });

  return app;
}

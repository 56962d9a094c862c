// The principal's dashboard (DESIGN.md "The human's screens"): server-rendered
// pages behind a principal session, whose forms post back here with the
// session's CSRF token and are answered post/redirect/get. Each form calls the
// same domain function as its JSON API; a refusal re-renders the page with
// the reason and what was typed.
import { Hono, type Context } from 'hono';
import type { Child } from 'hono/jsx';
import type { AuditEvent } from '../../lib/audit';
import { outcomes } from '../../lib/audit';
import { auditEvents } from '../../lib/audit-trail';
import { centsOf } from '../../lib/pages/format';
import { PAGE_SECURITY_HEADERS } from '../../lib/pages/layout';
import { ProblemError } from '../../lib/problem';
import { LIMIT_CEILING, setMonthlyLimitFromForm } from '../../lib/routes/limits';
import type { Charge } from '../../lib/schemas/charges';
import { RegisterAgentSchema } from '../../lib/schemas/mandates';
import { REAUTH_WINDOW_S, type Session } from '../../lib/sessions';
import type { DisputeRecord, DisputeSummary } from '../../../durable-objects/ledger/disputes';
import type { Hold } from '../../../durable-objects/ledger/spend';
import { listAgents, registerAgent, revokeAgent, type AgentWire } from '../agents';
import { toChargeWire } from '../charges';
import { openDispute, toDisputeWire } from '../disputes';
import { ledgerOf, orchestratorConfig, sessionConfigOf, type OrchestratorBindings } from '../env';
import { extendMandateForPrincipal, listMandatesOfPrincipal, raiseMandateForPrincipal, revokeMandate } from '../mandates';
import { AgentsPage, type AgentForm } from '../pages/agents';
import { AuditPage, type AuditFilters } from '../pages/audit';
import { ChargesPage } from '../pages/charges';
import { OverviewPage } from '../pages/dashboard';
import { DashboardFrame, type Names, type Notice } from '../pages/dashboard-frame';
import { DisputesPage, DisputeVerdict } from '../pages/disputes';
import { LimitsPage } from '../pages/limits';
import { MandatesPage } from '../pages/mandates';
import { NotificationsPage, type NotificationView } from '../pages/notifications';
import { typedLimits } from '../pages/limit-fields';
import { formSession, pageSession } from '../session';
import { spendOverview } from '../spend-overview';
import { principalById } from '../store/principals';

type Env = { Bindings: OrchestratorBindings; Variables: { session: Session } };
type C = Context<Env>;

/** The audit page keeps the latest events that match, whatever the trail's length. */
const AUDIT_SHOWN = 200;
const CHARGES_SHOWN = 200;

const DONE: Record<string, string> = {
  agent_registered: 'The agent is registered. It can now ask you for a mandate.',
  agent_revoked: 'The agent is revoked: its mandates have ended and the providers are being told.',
  mandate_revoked: 'The mandate is revoked: no further charge or attestation will pass under it.',
  limit_set: 'Your monthly limit is set.',
};

const field = (form: Record<string, unknown>, name: string) => (typeof form[name] === 'string' ? (form[name] as string) : '');

/** The principal's disputes (each decided as it is opened), newest first: one read of the ledger. */
async function decidedDisputes(env: OrchestratorBindings, principalId: string) {
  return ((await ledgerOf(env, principalId).listDisputes()) as DisputeSummary[]).map((d) => toDisputeWire(env, d));
}

async function render(c: C, current: string, title: string, body: Child, notice: Notice = null, status: 200 | 400 | 401 | 403 | 404 | 409 | 422 = 200) {
  const session = c.get('session');
  const principal = await principalById(c.env.DB, session.subject_id);
  const done = c.req.method === 'GET' ? DONE[c.req.query('done') ?? ''] : undefined;
  return c.html(
    <DashboardFrame
      title={title}
      roleName={orchestratorConfig(c.env).ORCHESTRATOR_NAME}
      signedIn={{ label: principal?.email ?? session.subject_id, csrfToken: session.csrf_token }}
      current={current}
      notice={notice ?? (done ? { kind: 'ok', text: done } : null)}
    >
      {body}
    </DashboardFrame>,
    status,
    PAGE_SECURITY_HEADERS,
  );
}

/** A refusal from a domain function, shown on the page of the form that caused it. */
function refusal(error: unknown): { notice: Notice; status: 400 | 401 | 403 | 404 | 409 | 422 } {
  if (!(error instanceof ProblemError)) throw error;
  const status = ([400, 401, 403, 404, 409, 422] as const).find((s) => s === error.status) ?? 422;
  return { notice: { kind: 'error', text: error.detail }, status };
}

/** What the human calls agents, mandates and providers, for every page that names them. */
async function namesOf(env: OrchestratorBindings, principalId: string) {
  const [agents, mandates] = await Promise.all([listAgents(env, principalId), listMandatesOfPrincipal(env, principalId)]);
  const names: Names = {
    agents: Object.fromEntries(agents.map((a) => [a.agent_id, a.name])),
    mandates: Object.fromEntries(mandates.map((m) => [m.mandate_id, m.description])),
    providers: Object.fromEntries(orchestratorConfig(env).PROVIDERS.map((p) => [p.id, p.name])),
  };
  return { names, agents, mandates };
}

async function notificationsOf(env: OrchestratorBindings, principalId: string): Promise<NotificationView[]> {
  return (await ledgerOf(env, principalId).listNotifications()) as NotificationView[];
}

export function dashboardRoutes() {
  const app = new Hono<Env>();

  // Signing in without a return path lands on `/`: the dashboard is the principal's home.
  app.get('/', (c) => c.redirect('/dashboard', 303));
  // Where the charges, the trail and a verdict were shown before the dashboard had them.
  app.get('/charges', (c) => c.redirect('/dashboard/charges', 301));
  app.get('/audit', (c) => c.redirect(`/dashboard/audit${new URL(c.req.url).search}`, 301));
  app.get('/disputes/:id', (c) => c.redirect(`/dashboard/disputes/${encodeURIComponent(c.req.param('id'))}`, 301));

  app.get('/dashboard', pageSession, async (c) => {
    const id = c.get('session').subject_id;
    const [overview, { names, mandates }, notifications] = await Promise.all([spendOverview(c.env, id), namesOf(c.env, id), notificationsOf(c.env, id)]);
    const alerts = notifications.filter((n) => n.type === 'budget.alert' && n.data.period === overview.period).length;
    return render(c, '/dashboard', 'Overview', <OverviewPage overview={overview} names={names} pending={mandates.filter((m) => m.status === 'pending')} alerts={alerts} />);
  });

  app.get('/dashboard/notifications', pageSession, async (c) => {
    const id = c.get('session').subject_id;
    const [notifications, { names }] = await Promise.all([notificationsOf(c.env, id), namesOf(c.env, id)]);
    return render(c, '/dashboard/notifications', 'Notifications', <NotificationsPage notifications={notifications} names={names} />);
  });

  // ── Agents ──

  const showAgents = async (c: C, notice: Notice = null, status: Parameters<typeof render>[5] = 200, form?: AgentForm) => {
    const agents: AgentWire[] = await listAgents(c.env, c.get('session').subject_id);
    const registerUrl = `${orchestratorConfig(c.env).PUBLIC_BASE_URL}/v1/agents`;
    return render(c, '/dashboard/agents', 'Agents', <AgentsPage agents={agents} csrf={c.get('session').csrf_token} registerUrl={registerUrl} form={form} />, notice, status);
  };

  app.get('/dashboard/agents', pageSession, (c) => showAgents(c));

  app.post('/dashboard/agents', formSession, async (c) => {
    const form = await c.req.parseBody();
    const typed: AgentForm = { name: field(form, 'name'), public_jwk: field(form, 'public_jwk'), proof: field(form, 'proof') };
    let jwk: unknown;
    try {
      jwk = JSON.parse(typed.public_jwk);
    } catch {
      return showAgents(c, { kind: 'error', text: 'The public key is not valid JSON: paste the whole JWK, braces included.' }, 422, typed);
    }
    const parsed = RegisterAgentSchema.safeParse({ name: typed.name, public_jwk: jwk });
    if (!parsed.success) {
      return showAgents(c, { kind: 'error', text: 'Give the agent a name, and an Ed25519 public key: {"kty":"OKP","crv":"Ed25519","x":"…"} with no private part.' }, 422, typed);
    }
    try {
      // The proof is the one an agent makes for POST /v1/agents, so one proof serves the API and this form alike.
      await registerAgent(c.env, c.get('session').subject_id, parsed.data, { header: typed.proof.trim() || undefined, method: 'POST', path: '/v1/agents' });
    } catch (error) {
      const { notice, status } = refusal(error);
      return showAgents(c, notice, status, typed);
    }
    return c.redirect('/dashboard/agents?done=agent_registered', 303);
  });

  app.post('/dashboard/agents/:id/revoke', formSession, async (c) => {
    try {
      await revokeAgent(c.env, c.get('session').subject_id, c.req.param('id'));
    } catch (error) {
      const { notice, status } = refusal(error);
      return showAgents(c, notice, status);
    }
    return c.redirect('/dashboard/agents?done=agent_revoked', 303);
  });

  // ── Mandates ──

  const showMandates = async (c: C, notice: Notice = null, status: Parameters<typeof render>[5] = 200) => {
    const id = c.get('session').subject_id;
    const [{ names, mandates }, limits] = await Promise.all([namesOf(c.env, id), ledgerOf(c.env, id).limitsSummary()]);
    return render(c, '/dashboard/mandates', 'Mandates', <MandatesPage mandates={mandates} limits={limits as never} names={names} csrf={c.get('session').csrf_token} />, notice, status);
  };

  app.get('/dashboard/mandates', pageSession, (c) => showMandates(c));

  app.post('/dashboard/mandates/:id/revoke', formSession, async (c) => {
    try {
      await revokeMandate(c.env, c.get('session').subject_id, c.req.param('id'));
    } catch (error) {
      const { notice, status } = refusal(error);
      return showMandates(c, notice, status);
    }
    return c.redirect('/dashboard/mandates?done=mandate_revoked', 303);
  });

  // An extension is a new request for the same terms: the human goes on to approve it on the approval page. A form
  // sent twice asks nothing more (the human goes on to the request that waits); one sent while another request to
  // change the mandate waits is refused, and the page links to that one.
  app.post('/dashboard/mandates/:id/extend', formSession, async (c) => {
    const form = await c.req.parseBody();
    let extension;
    try {
      extension = await extendMandateForPrincipal(c.env, c.get('session').subject_id, c.req.param('id'), Number(field(form, 'days')), { reuseWaiting: true });
    } catch (error) {
      const { notice, status } = refusal(error);
      return showMandates(c, notice, status);
    }
    return c.redirect(`/mandates/${extension.mandate_id}/approval`, 303);
  });

  // Raised limits (the approval page of an active mandate, where a declined charge's step_up_url leads): a new request
  // for the same mandate with higher limits, which the human goes on to approve; a form sent twice asks nothing more.
  app.post('/dashboard/mandates/:id/raise', formSession, async (c) => {
    const id = c.req.param('id');
    let raised;
    try {
      raised = await raiseMandateForPrincipal(c.env, c.get('session').subject_id, id, typedLimits(await c.req.parseBody()), { reuseWaiting: true });
    } catch (error) {
      if (!(error instanceof ProblemError)) throw error;
      const reason = error.extra.waiting ? 'request_waiting' : error.code === 'invalid_request' ? 'raise_refused' : error.code === 'mandate_inactive' ? 'mandate_not_active' : error.code;
      return c.redirect(`/mandates/${id}/approval?error=${reason}`, 303);
    }
    return c.redirect(`/mandates/${raised.mandate_id}/approval`, 303);
  });

  // ── Limits ──

  const showLimits = async (c: C, options: { notice?: Notice; status?: Parameters<typeof render>[5]; amount?: string | null; reauthenticate?: boolean } = {}) => {
    const session = c.get('session');
    const [{ names }, limits, principal] = await Promise.all([namesOf(c.env, session.subject_id), ledgerOf(c.env, session.subject_id).limitsSummary(), principalById(c.env.DB, session.subject_id)]);
    return render(
      c,
      '/dashboard/limits',
      'Limits',
      <LimitsPage
        limits={limits as never}
        names={names}
        csrf={session.csrf_token}
        email={principal?.email ?? ''}
        ceiling={{ amount: LIMIT_CEILING, currency: 'usd' }}
        signedInAgo={Math.max(0, Math.floor(Date.now() / 1000) - session.auth_time)}
        freshFor={REAUTH_WINDOW_S}
        amount={options.amount ?? null}
        reauthenticate={options.reauthenticate ?? false}
      />,
      options.notice ?? null,
      options.status ?? 200,
    );
  };

  app.get('/dashboard/limits', pageSession, (c) => {
    const amount = c.req.query('amount');
    return showLimits(c, { amount: centsOf(amount) === null ? null : amount!.trim(), reauthenticate: c.req.query('step') === 'reauthenticate' });
  });

  app.post('/dashboard/limits', formSession, async (c) => {
    const session = c.get('session');
    const typed = field(await c.req.parseBody(), 'amount').trim();
    const outcome = await setMonthlyLimitFromForm(ledgerOf(c.env, session.subject_id), session, typed);
    if (outcome.kind === 'refused') return showLimits(c, { notice: { kind: 'error', text: outcome.detail }, status: 422, amount: typed });
    // §2.0: the step-up is a sign-in, shown on the page, that comes back to this amount.
    if (outcome.kind === 'reauthenticate') return c.redirect(`/dashboard/limits?step=reauthenticate&amount=${encodeURIComponent(typed)}#reauthenticate`, 303);
    return c.redirect('/dashboard/limits?done=limit_set', 303);
  });

  // ── Audit ──

  app.get('/dashboard/audit', pageSession, async (c) => {
    const id = c.get('session').subject_id;
    const q = (name: string) => c.req.query(name)?.trim() || undefined;
    const outcome = q('outcome');
    const filters: AuditFilters = { agent: q('agent'), provider: q('provider'), mandate: q('mandate'), action: q('action'), outcome: outcomes.find((o) => o === outcome) };
    // Providers act in the trail under their own id (charges), so the store filters by actor; an
    // agent filter also keeps the events that name the agent, such as the charges made for it.
    const matching = auditEvents(ledgerOf(c.env, id), c.env.DB, id, 0, { actorId: filters.provider, mandateId: filters.mandate, action: filters.action, outcome: filters.outcome });
    const latest: AuditEvent[] = [];
    let total = 0;
    for await (const event of matching) {
      if (filters.agent && event.actor.id !== filters.agent && !event.related.includes(filters.agent)) continue;
      total++;
      latest.push(event);
      if (latest.length > AUDIT_SHOWN) latest.shift();
    }
    const { names } = await namesOf(c.env, id);
    return render(c, '/dashboard/audit', 'Audit trail', <AuditPage events={latest.reverse()} total={total} filters={filters} names={names} />);
  });

  // ── Charges ──

  app.get('/dashboard/charges', pageSession, async (c) => {
    const id = c.get('session').subject_id;
    const ledger = ledgerOf(c.env, id);
    const [{ names }, holds, disputes] = await Promise.all([namesOf(c.env, id), ledger.listCharges({}) as Promise<Hold[]>, ledger.listDisputes() as Promise<DisputeSummary[]>]);
    const charges = holds.slice(0, CHARGES_SHOWN).map(toChargeWire);
    const disputed = new Set(disputes.map((d) => d.charge_id));
    return render(c, '/dashboard/charges', 'Charges', <ChargesPage charges={charges} total={holds.length} disputed={disputed} names={names} csrf={c.get('session').csrf_token} />);
  });

  // ── Disputes ──

  const showDisputes = async (c: C, notice: Notice = null, status: Parameters<typeof render>[5] = 200, reason?: { charge_id: string; text: string }) => {
    const id = c.get('session').subject_id;
    const ledger = ledgerOf(c.env, id);
    const [{ names }, holds, disputes] = await Promise.all([namesOf(c.env, id), ledger.listCharges({}) as Promise<Hold[]>, decidedDisputes(c.env, id)]);
    const charges: Record<string, Charge> = Object.fromEntries(holds.map((h) => [h.id, toChargeWire(h)]));
    const disputed = new Set(disputes.map((d) => d.charge_id));
    const disputable = Object.values(charges)
      .filter((ch) => ch.status === 'captured' && !disputed.has(ch.charge_id))
      .slice(0, 50);
    return render(
      c,
      '/dashboard/disputes',
      'Disputes',
      <DisputesPage disputable={disputable} disputes={disputes} charges={charges} names={names} csrf={c.get('session').csrf_token} reason={reason} />,
      notice,
      status,
    );
  };

  app.get('/dashboard/disputes', pageSession, (c) => showDisputes(c));

  app.post('/dashboard/disputes', formSession, async (c) => {
    const form = await c.req.parseBody();
    const input = { charge_id: field(form, 'charge_id'), reason: field(form, 'reason').trim() };
    if (!input.charge_id.startsWith('chg_') || input.reason.length === 0 || input.reason.length > 1000) {
      return showDisputes(c, { kind: 'error', text: 'Say in a few words why you dispute the charge.' }, 422, { charge_id: input.charge_id, text: input.reason });
    }
    let disputeId: string;
    try {
      disputeId = (await openDispute(c.env, c.get('session').subject_id, input)).dispute_id;
    } catch (error) {
      const { notice, status } = refusal(error);
      return showDisputes(c, notice, status, { charge_id: input.charge_id, text: input.reason });
    }
    return c.redirect(`/dashboard/disputes/${disputeId}`, 303);
  });

  app.get('/dashboard/disputes/:id', pageSession, async (c) => {
    const id = c.get('session').subject_id;
    const ledger = ledgerOf(c.env, id);
    const record = (await ledger.getDispute(c.req.param('id'))) as DisputeRecord | null;
    if (!record) {
      return render(
        c,
        '/dashboard/disputes',
        'Not found',
        <div class="card">
          <h1>No such dispute</h1>
          <p>
            There is no dispute at this address for your account. <a href="/dashboard/disputes">All your disputes</a>
          </p>
        </div>,
        null,
        404,
      );
    }
    const [{ names }, hold] = await Promise.all([namesOf(c.env, id), ledger.getCharge(record.charge_id) as Promise<Hold | null>]);
    return render(
      c,
      '/dashboard/disputes',
      'Dispute',
      <div class="card">
        <DisputeVerdict dispute={toDisputeWire(c.env, record)} charge={hold ? toChargeWire(hold) : undefined} names={names} heading="h1" open />
        <p>
          <a href="/dashboard/disputes">All your disputes</a>
        </p>
      </div>,
    );
  });

  return app;
}

// The orchestrator Worker's routes: identity, payment and evidence for principals and their agents.
import { createRoleApp, serveOpenApiDocument } from '../lib/app';
import { ProblemError } from '../lib/problem';
import { auditRoutes } from '../lib/routes/audit';
import { jwksRoutes } from '../lib/routes/jwks';
import { sessionRoutes } from '../lib/routes/session';
import { signUpRoutes } from '../lib/routes/sign-up';
import { limitRoutes } from '../lib/routes/limits';
import { readSession } from '../lib/sessions';
import { authenticateAgent } from './agent-auth';
import { ledgerOf, orchestratorConfig, pepperOf, sessionConfigOf, type OrchestratorBindings } from './env';
import { approvalPages } from './pages/approval';
import { confirmEmail, seedDemoPrincipal, signUp } from './principals';
import { agentRoutes } from './routes/agents';
import { attestationRoutes } from './routes/attestations';
import { chargeRoutes } from './routes/charges';
import { dashboardRoutes } from './routes/dashboard';
import { disputeRoutes } from './routes/disputes';
import { notificationRoutes } from './routes/notifications';
import { discoveryRoutes } from './routes/discovery';
import { mandateRoutes } from './routes/mandates';
import { principalByEmail } from './store/principals';

export function createOrchestratorApp() {
  const app = createRoleApp<OrchestratorBindings>();
  app.use('*', async (c, next) => {
    await seedDemoPrincipal(c.env);
    await next();
  });

  app.route('/', discoveryRoutes());
  app.route('/', jwksRoutes());
  app.route(
    '/',
    sessionRoutes({
      subjectField: 'principal_id',
      roleName: 'OAP Orchestrator',
      db: (env: OrchestratorBindings) => env.DB,
      config: sessionConfigOf,
      pepper: pepperOf,
      byEmail: (env: OrchestratorBindings, email) => principalByEmail(env.DB, email),
      audit: (env: OrchestratorBindings, principalId, entry) => ledgerOf(env, principalId).appendAuditEvent(principalId, entry),
    }),
  );
  app.route(
    '/',
    signUpRoutes({
      path: '/v1/principals',
      subjectField: 'principal_id',
      schemaName: 'Principal',
      roleName: (env: OrchestratorBindings) => orchestratorConfig(env).ORCHESTRATOR_NAME,
      devMail: (env: OrchestratorBindings) => orchestratorConfig(env).DEV_SEED,
      db: (env: OrchestratorBindings) => env.DB,
      signUp,
      confirmEmail,
    }),
  );
  app.route('/', agentRoutes());
  app.route('/', mandateRoutes());
  app.route('/', attestationRoutes());
  app.route('/', chargeRoutes());
  app.route('/', limitRoutes({ db: (env: OrchestratorBindings) => env.DB, config: sessionConfigOf, ledgerOf }));
  app.route('/', notificationRoutes());
  app.route('/', disputeRoutes());
  app.route('/', approvalPages());
  app.route('/', dashboardRoutes());
  app.route(
    '/',
    auditRoutes(async (c) => {
      const env = c.env as OrchestratorBindings;
      // §4: a principal reads its whole trail, an agent only its own events.
      if (c.req.header('dpop') !== undefined) {
        const agent = await authenticateAgent(c as never, 'audit.read', false);
        if (agent.kind !== 'agent') throw new ProblemError(401, 'invalid_signature', 'Unknown agent key.');
        return { principal: agent.principal_id, ledger: ledgerOf(env, agent.principal_id), db: env.DB, onlyActor: agent.agent_id };
      }
      const session = await readSession(c, env.DB, sessionConfigOf(env));
      if (!session) throw new ProblemError(401, 'unauthorized', 'Sign in, or prove an agent key with a DPoP proof.');
      return { principal: session.subject_id, ledger: ledgerOf(env, session.subject_id), db: env.DB };
    }),
  );
  serveOpenApiDocument(app, { title: 'OAP orchestrator', version: '2026-11', description: 'An Open Agent Provisioning orchestrator.' }, (c) =>
    orchestratorConfig(c.env as OrchestratorBindings).PUBLIC_BASE_URL,
  );
  return app;
}

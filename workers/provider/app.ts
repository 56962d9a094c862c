// The provider Worker's routes. One codebase serves every provider instance;
// the instance's id, catalog and trust list are configuration.
import { createRoleApp, serveOpenApiDocument } from '../lib/app';
import { ProblemError } from '../lib/problem';
import { auditRoutes } from '../lib/routes/audit';
import { jwksRoutes } from '../lib/routes/jwks';
import { sessionRoutes } from '../lib/routes/session';
import { signUpRoutes } from '../lib/routes/sign-up';
import { limitRoutes } from '../lib/routes/limits';
import { readSession } from '../lib/sessions';
import { confirmAccountEmail, seedExistingAccount, signUpAccount } from './accounts';
import { ledgerOf, pepperOf, providerConfig, sessionConfigOf, type ProviderBindings } from './env';
import { tokenOfRequest, WWW_AUTHENTICATE_DPOP } from './token-auth';
import { discoveryRoutes } from './routes/discovery';
import { domainRoutes } from './routes/domains';
import { eventRoutes } from './routes/events';
import { limitsPageRoutes } from './routes/limits-page';
import { linkingRoutes } from './routes/linking';
import { resourceRoutes } from './routes/resources';
import { chargeAuditRoutes } from './routes/charge-audit';
import { databaseRoutes } from './routes/databases';
import { oauthRoutes } from './routes/oauth';
import { humanAccountByEmail } from './store/accounts';


export function createProviderApp() {
  const app = createRoleApp<ProviderBindings>();
  app.use('*', async (c, next) => {
    await seedExistingAccount(c.env);
    await next();
  });

  app.route('/', discoveryRoutes());
  app.route('/', jwksRoutes());
  app.route('/', oauthRoutes());
  app.route('/', eventRoutes());
  app.route(
    '/',
    sessionRoutes({
      subjectField: 'account_id',
      roleName: 'OAP provider',
      db: (env: ProviderBindings) => env.DB,
      config: sessionConfigOf,
      pepper: pepperOf,
      byEmail: (env: ProviderBindings, email) => humanAccountByEmail(env.DB, email),
      audit: (env: ProviderBindings, accountId, entry) => ledgerOf(env, accountId).appendAuditEvent(accountId, entry),
    }),
  );
  app.route(
    '/',
    signUpRoutes({
      path: '/v1/accounts',
      subjectField: 'account_id',
      schemaName: 'Account',
      roleName: (env: ProviderBindings) => providerConfig(env).PROVIDER_NAME,
      devMail: (env: ProviderBindings) => providerConfig(env).DEV_SEED,
      db: (env: ProviderBindings) => env.DB,
      signUp: signUpAccount,
      confirmEmail: confirmAccountEmail,
    }),
  );
  app.route('/', linkingRoutes());
  app.route('/', limitsPageRoutes());
  app.route('/', resourceRoutes());
  app.route('/', domainRoutes());
  app.route('/', chargeAuditRoutes());
  app.route('/', databaseRoutes());
  app.route('/', limitRoutes({ db: (env: ProviderBindings) => env.DB, config: sessionConfigOf, ledgerOf }));
  app.route(
    '/',
    auditRoutes(async (c) => {
      const env = c.env as ProviderBindings;
      // §4: the account's human reads the whole trail; an agent, with its token, only its own events.
      if (c.req.header('authorization') !== undefined) {
        const claims = await tokenOfRequest(env, c);
        return { principal: claims.account_id, ledger: ledgerOf(env, claims.account_id), db: env.DB, onlyActor: claims.agent_id };
      }
      const session = await readSession(c, env.DB, sessionConfigOf(env));
      if (session) return { principal: session.subject_id, ledger: ledgerOf(env, session.subject_id), db: env.DB };
      throw new ProblemError(401, 'invalid_token', 'A DPoP-bound access token is required.', {}, { 'WWW-Authenticate': WWW_AUTHENTICATE_DPOP });
    }),
  );
  serveOpenApiDocument(app, { title: 'OAP provider', version: '2026-11', description: 'An Open Agent Provisioning provider.' }, (c) =>
    providerConfig(c.env as ProviderBindings).PUBLIC_BASE_URL,
  );
  return app;
}

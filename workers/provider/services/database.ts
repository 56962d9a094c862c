// `database` (provider data): provisioned asynchronously, reached with a credential.
import { randomToken } from '../../lib/jws';
import { registerBackend } from './registry';

registerBackend('database', {
  async provision(_env, ctx) {
    return {
      fields: { name: String(ctx.parameters.name), region: String(ctx.parameters.region ?? 'auto') },
      credentials: { token: `dbt_${randomToken(24)}` },
    };
  },
  async deprovision() {},
  async rotate(_env, ref) {
    return { fields: ref.fields, credentials: { token: `dbt_${randomToken(24)}` } };
  },
});

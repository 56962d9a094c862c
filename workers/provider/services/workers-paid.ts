// `workers-paid` (provider cloud): the paid Workers plan as a subscription.
import { registerBackend } from './registry';

registerBackend('workers-paid', {
  describe: {
    name: 'Workers Paid plan',
    description: 'The Workers Paid subscription: higher limits and outbound network for deployed Workers. Billed monthly; downgrade to free at any time.',
    parameters_schema: { type: 'object', additionalProperties: false, properties: {} },
    scopes: ['billing:write'],
    provisioning: 'sync',
  },
  async provision(_env, ctx) {
    return { fields: { subscription: ctx.plan }, credentials: null };
  },
  async deprovision() {},
  async changePlan(_env, ref, plan) {
    return { ...ref.fields, subscription: plan };
  },
});

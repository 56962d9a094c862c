// `workers-paid` (provider cloud): the paid Workers plan as a subscription.
import { registerBackend } from './registry';

registerBackend('workers-paid', {
  async provision(_env, ctx) {
    return { fields: { subscription: ctx.plan }, credentials: null };
  },
  async deprovision() {},
  async changePlan(_env, ref, plan) {
    return { ...ref.fields, subscription: plan };
  },
});

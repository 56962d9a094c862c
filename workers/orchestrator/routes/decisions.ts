import type { Context } from 'hono';
import { isFormRequest } from '../../lib/sessions';

/** §2.0: a decision answers JSON callers with the updated object and form posts with 303 to the page that shows it. */
export function decisionResponse(c: Context, updated: object, page: string): Response {
  if (isFormRequest(c)) return c.redirect(page, 303);
  return c.json(updated, 200);
}

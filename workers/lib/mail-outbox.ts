// Mail, as every role sends it: to the role's mail_outbox table. Local
// development reads it at /dev/mail; a deployment would drain it to a mail
// service (not built: no mail service is reachable here).
export async function queueMail(db: D1Database, to: string, subject: string, body: string) {
  await db
    .prepare('INSERT INTO mail_outbox (id, to_address, subject, body, created_at) VALUES (?1, ?2, ?3, ?4, ?5)')
    .bind(crypto.randomUUID(), to, subject, body, new Date().toISOString())
    .run();
}

export async function listMail(db: D1Database, limit = 50) {
  const { results } = await db
    .prepare('SELECT to_address, subject, body, created_at FROM mail_outbox ORDER BY created_at DESC LIMIT ?1')
    .bind(limit)
    .all<{ to_address: string; subject: string; body: string; created_at: string }>();
  return results;
}

export const confirmationMail = (link: string) => ({
  subject: 'Confirm your email',
  body: `Open this link to confirm your email address:\n\n${link}\n\nIt works once, for 24 hours.`,
});

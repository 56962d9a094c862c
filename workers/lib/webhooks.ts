// Webhooks to the principal's endpoints (PROTOCOL.md "Webhooks"): body
// {id, type, created, data}, header OAP-Signature: t=<unix>,v1=<hex HMAC-SHA256
// of "t.body">; https only (plain http only to loopback, for local
// development), never a private address, redirects not followed.
import { createHmac } from 'node:crypto';

export function webhookSignature(secret: string, body: string, t = Math.floor(Date.now() / 1000)): string {
  return `t=${t},v1=${createHmac('sha256', secret).update(`${t}.${body}`).digest('hex')}`;
}

const PRIVATE_V4 = [/^10\./, /^192\.168\./, /^172\.(1[6-9]|2\d|3[01])\./, /^169\.254\./, /^0\./, /^100\.(6[4-9]|[7-9]\d|1[01]\d|12[0-7])\./];

/** Why an endpoint URL is refused, or null when it is acceptable. */
export function webhookUrlProblem(raw: string, allowLoopbackHttp: boolean): string | null {
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    return 'not a URL';
  }
  if (url.username || url.password) return 'credentials in the URL are not allowed';
  const host = url.hostname.replace(/^\[|\]$/g, '').toLowerCase();
  const loopback = host === 'localhost' || host.startsWith('127.') || host === '::1';
  if (url.protocol === 'http:' && !(loopback && allowLoopbackHttp)) return 'endpoints must be https (plain http only to loopback in local development)';
  if (url.protocol !== 'https:' && url.protocol !== 'http:') return 'endpoints must be https';
  if (loopback && !allowLoopbackHttp) return 'loopback addresses are not allowed';
  if (PRIVATE_V4.some((re) => re.test(host)) || /^f[cd]/.test(host) || host.startsWith('fe80:')) return 'private addresses are not allowed';
  return null;
}

export async function deliverWebhook(url: string, secret: string, body: string): Promise<{ delivered: boolean; detail: string }> {
  try {
    const res = await fetch(url, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'oap-signature': webhookSignature(secret, body), 'user-agent': 'oap-webhooks/1' },
      body,
      redirect: 'manual',
      signal: AbortSignal.timeout(10_000),
    });
    await res.body?.cancel();
    return { delivered: res.status >= 200 && res.status < 300, detail: `HTTP ${res.status}` };
  } catch (error) {
    return { delivered: false, detail: String(error) };
  }
}

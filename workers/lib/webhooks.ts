// Webhooks to the principal's endpoints (PROTOCOL.md "Webhooks"): body
// {id, type, created, data}, header OAP-Signature: t=<unix>,v1=<hex HMAC-SHA256
// of "t.body">; https only (plain http only to loopback, for local
// development), never a private address, redirects not followed.
import { createHmac } from 'node:crypto';

export function webhookSignature(secret: string, body: string, t = Math.floor(Date.now() / 1000)): string {
  return `t=${t},v1=${createHmac('sha256', secret).update(`${t}.${body}`).digest('hex')}`;
}

const PRIVATE_V4 = [/^10\./, /^192\.168\./, /^172\.(1[6-9]|2\d|3[01])\./, /^169\.254\./, /^0\./, /^100\.(6[4-9]|[7-9]\d|1[01]\d|12[0-7])\./];

/** An IPv4-mapped IPv6 literal (::ffff:a.b.c.d, which URL parsing writes as ::ffff:xxxx:yyyy) as dotted IPv4. */
function mappedV4(host: string): string | null {
  const dotted = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/.exec(host);
  if (dotted) return dotted[1]!;
  const hex = /^::ffff:([0-9a-f]{1,4}):([0-9a-f]{1,4})$/.exec(host);
  if (!hex) return null;
  const [hi, lo] = [parseInt(hex[1]!, 16), parseInt(hex[2]!, 16)];
  return `${hi >> 8}.${hi & 255}.${lo >> 8}.${lo & 255}`;
}

/** Why an endpoint URL is refused, or null when it is acceptable. */
export function webhookUrlProblem(raw: string, allowLoopbackHttp: boolean): string | null {
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    return 'not a URL';
  }
  if (url.username || url.password) return 'credentials in the URL are not allowed';
  const literal = url.hostname.replace(/^\[|\]$/g, '').toLowerCase().replace(/\.$/, '');
  const v6 = literal.includes(':');
  // Judge an IPv4-mapped IPv6 address as the IPv4 address it is.
  const host = (v6 && mappedV4(literal)) || literal;
  const loopback = host === 'localhost' || host.startsWith('127.') || host === '::1';
  if (url.protocol === 'http:' && !(loopback && allowLoopbackHttp)) return 'endpoints must be https (plain http only to loopback in local development)';
  if (url.protocol !== 'https:' && url.protocol !== 'http:') return 'endpoints must be https';
  if (loopback && !allowLoopbackHttp) return 'loopback addresses are not allowed';
  const privateV6 = host.includes(':') && (/^f[cd][0-9a-f]{2}:/.test(host) || host.startsWith('fe80:') || host === '::');
  if (PRIVATE_V4.some((re) => re.test(host)) || privateV6) return 'private addresses are not allowed';
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

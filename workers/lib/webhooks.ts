// Webhooks to the principal's endpoints (PROTOCOL.md "Webhooks"): body
// {id, type, created, data}, header OAP-Signature: t=<unix>,v1=<hex HMAC-SHA256
// of "t.body">; https only (plain http only to loopback, for local
// development), never a private address, redirects not followed.
import ipaddr from 'ipaddr.js';
import { createHmac } from 'node:crypto';

export function webhookSignature(secret: string, body: string, t = Math.floor(Date.now() / 1000)): string {
  return `t=${t},v1=${createHmac('sha256', secret).update(`${t}.${body}`).digest('hex')}`;
}

/** Names that never leave the local network (RFC 6761 `localhost`, mDNS `.local`, RFC 8375, ICANN's `.internal`). */
const LOCAL_NAME = /(^|\.)(localhost|local|internal|home\.arpa)$/;

/**
 * How an IP literal is judged: only global unicast may receive webhooks. ipaddr.js
 * classifies the special-use ranges (private, loopback, link-local, carrier-grade NAT,
 * multicast, broadcast, documentation, reserved…); IPv4-mapped IPv6 is judged as its IPv4.
 * IPv6 forms that embed an IPv4 address elsewhere (NAT64, 6to4, Teredo, the deprecated
 * IPv4-compatible ::a.b.c.d) are refused outright rather than unwrapped.
 */
function addressKind(literal: string): 'loopback' | 'global' | 'special' | null {
  if (!ipaddr.isValid(literal)) return null;
  const address = ipaddr.process(literal);
  const range = address.range();
  if (range === 'loopback') return 'loopback';
  if (range !== 'unicast') return 'special';
  if (address.kind() === 'ipv6' && (address as ipaddr.IPv6).parts.slice(0, 6).every((part) => part === 0)) return 'special';
  return 'global';
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
  const host = url.hostname.replace(/^\[|\]$/g, '').toLowerCase().replace(/\.$/, '');
  const kind = addressKind(host);
  const loopback = kind === 'loopback' || host === 'localhost';
  if (url.protocol === 'http:' && !(loopback && allowLoopbackHttp)) return 'endpoints must be https (plain http only to loopback in local development)';
  if (url.protocol !== 'https:' && url.protocol !== 'http:') return 'endpoints must be https';
  if (loopback) return allowLoopbackHttp ? null : 'loopback addresses are not allowed';
  if (kind === 'special') return 'private and special-use addresses are not allowed';
  if (kind === null && LOCAL_NAME.test(host)) return 'local names are not allowed';
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

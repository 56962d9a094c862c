// Password storage (PROTOCOL.md §2.0): salted PBKDF2-SHA256 at 100,000
// iterations, the most workerd allows, over an HMAC of the password keyed
// with a server-side pepper (the PASSWORD_PEPPER secret): a stolen database
// alone does not allow offline guessing.
import { base64url } from './jws';

const ITERATIONS = 100_000;
const encoder = new TextEncoder();

async function peppered(password: string, pepper: string): Promise<ArrayBuffer> {
  const key = await crypto.subtle.importKey('raw', encoder.encode(pepper), { name: 'HMAC', hash: 'SHA-256' }, false, ['sign']);
  return crypto.subtle.sign('HMAC', key, encoder.encode(password));
}

async function derive(password: string, pepper: string, salt: Uint8Array, iterations: number): Promise<Uint8Array> {
  const material = await crypto.subtle.importKey('raw', await peppered(password, pepper), 'PBKDF2', false, ['deriveBits']);
  return new Uint8Array(await crypto.subtle.deriveBits({ name: 'PBKDF2', hash: 'SHA-256', salt, iterations }, material, 256));
}

function fromBase64url(text: string): Uint8Array {
  const binary = atob(text.replaceAll('-', '+').replaceAll('_', '/'));
  return Uint8Array.from(binary, (ch) => ch.charCodeAt(0));
}

/** `pbkdf2-sha256$<iterations>$<salt>$<hash>`, base64url. */
export async function hashPassword(password: string, pepper: string): Promise<string> {
  const salt = crypto.getRandomValues(new Uint8Array(16));
  return `pbkdf2-sha256$${ITERATIONS}$${base64url(salt)}$${base64url(await derive(password, pepper, salt, ITERATIONS))}`;
}

/** A hash of nothing, verified when the account does not exist so that timing does not reveal it. */
const DECOY = 'pbkdf2-sha256$100000$AAAAAAAAAAAAAAAAAAAAAA$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA';

export async function verifyPassword(password: string, stored: string | null, pepper: string): Promise<boolean> {
  const [scheme, iterations, salt, hash] = (stored ?? DECOY).split('$');
  if (scheme !== 'pbkdf2-sha256' || !iterations || !salt || !hash) return false;
  const actual = await derive(password, pepper, fromBase64url(salt), Number(iterations));
  return timingSafeEqual(actual, fromBase64url(hash)) && stored !== null;
}

export function timingSafeEqual(a: Uint8Array, b: Uint8Array): boolean {
  if (a.byteLength !== b.byteLength) return false;
  return crypto.subtle.timingSafeEqual(a, b);
}

export function timingSafeEqualText(a: string, b: string): boolean {
  return timingSafeEqual(encoder.encode(a), encoder.encode(b));
}

// The Idempotency-Key mechanism (PROTOCOL.md Conventions), as middleware that
// any mutating route adds. Records live in the caller's ledger object, keyed
// by (caller, path, key): the same key + same body replays the first answer,
// a different body is 422, a request still running is 409, a 5xx is forgotten.
import type { Context, MiddlewareHandler } from 'hono';
import { sha256Hex } from './audit';
import { ProblemError } from './problem';
import type { IdempotencyStart, StoredResponse } from '../../durable-objects/principal-ledger';

export type SingleUse = { nonce: string; expiresAtMs: number };
type Begun = IdempotencyStart | { state: 'nonce_seen'; index: number };

export type IdempotencyStore = {
  /** With `nonces`, consumes them first in the same round trip, all or none: `nonce_seen` names the first already used. */
  beginIdempotentRequest(scope: string, key: string, fingerprint: string, nonces?: SingleUse[]): Promise<Begun> | Begun;
  completeIdempotentRequest(scope: string, key: string, fingerprint: string, response: StoredResponse): Promise<void> | void;
  abandonIdempotentRequest(scope: string, key: string, fingerprint: string): Promise<void> | void;
};

export type IdempotencyOptions = {
  /** Required keys answer 400 idempotency_key_required when missing. */
  required?: boolean;
  /** The caller's store and identity; runs after authentication. */
  caller: (c: Context) => IdempotencyCaller | Promise<IdempotencyCaller>;
};

export type IdempotencyCaller = {
  store: IdempotencyStore;
  caller: string;
  /** Single-use values of this request to consume with the key's record (a paid call's proof jti and signature nonce). */
  nonces?: SingleUse[];
  /** The refusal for an already used value, by its index in `nonces`. */
  nonceSeen?: (index: number) => Error;
};

/**
 * The caller of a request signed in by session (set as `session` by the route's middleware): its
 * records live in the ledger of the human it names, the principal's or the provider account's.
 */
export function sessionCaller(ledgerOf: (env: any, id: string) => IdempotencyStore): IdempotencyOptions['caller'] {
  return (c) => {
    const subject = (c.get('session') as { subject_id: string }).subject_id;
    return { store: ledgerOf(c.env, subject), caller: `principal:${subject}` };
  };
}

/** Handlers that answer with credentials set this to what a replay may return instead. */
export const REPLAY_BODY = 'idempotencyReplayBody';
/** The record this request holds: a handler whose last write is in the caller's store may complete it in that same transaction. */
export const IDEMPOTENCY_RECORD = 'idempotencyRecord';
/** Set by such a handler: the record is complete, the middleware has nothing left to store. */
export const IDEMPOTENCY_RECORDED = 'idempotencyRecorded';

export type IdempotencyRecord = { scope: string; key: string; fingerprint: string };

const KEY = /^[\x21-\x7e]{1,255}$/;
const REPLAYED_HEADERS = ['content-type', 'location', 'audit-event-id'];

export function idempotency(options: IdempotencyOptions): MiddlewareHandler {
  return async (c, next) => {
    // A read is its own retry: a key on it means nothing, and must not replay an old answer.
    if (c.req.method === 'GET' || c.req.method === 'HEAD') return next();
    const key = c.req.header('idempotency-key');
    if (key === undefined) {
      if (options.required) throw new ProblemError(400, 'idempotency_key_required', 'This request needs an Idempotency-Key header.');
      return next();
    }
    if (!KEY.test(key)) throw new ProblemError(400, 'invalid_request', 'Idempotency-Key must be 1 to 255 visible ASCII characters.');

    const { store, caller, nonces, nonceSeen } = await options.caller(c);
    const scope = `${caller} ${c.req.method} ${c.req.path}`;
    const body = new Uint8Array(await c.req.arrayBuffer());
    const fingerprint = sha256Hex(`${c.req.header('content-type') ?? ''}\n`) + sha256Hex(body);

    const start = await store.beginIdempotentRequest(scope, key, fingerprint, nonces);
    switch (start.state) {
      case 'nonce_seen':
        throw nonceSeen?.(start.index) ?? new ProblemError(401, 'replayed', 'A single-use value of this request was already used.');
      case 'mismatch':
        throw new ProblemError(422, 'idempotency_key_reused', 'This Idempotency-Key was used with a different request body.');
      case 'in_progress':
        throw new ProblemError(409, 'idempotency_request_in_progress', 'A request with this Idempotency-Key is still being processed.', {}, { 'Retry-After': '1' });
      case 'replay':
        return new Response(start.response.body, {
          status: start.response.status,
          headers: { ...start.response.headers, 'Idempotent-Replayed': 'true' },
        });
    }

    c.set(IDEMPOTENCY_RECORD as never, { scope, key, fingerprint } satisfies IdempotencyRecord as never);
    try {
      await next();
    } catch (error) {
      await store.abandonIdempotentRequest(scope, key, fingerprint);
      throw error;
    }
    // Errors thrown inside the handler were already turned into c.res by the app's onError.
    const res = c.res;
    if (res.status >= 500) {
      await store.abandonIdempotentRequest(scope, key, fingerprint);
      return;
    }
    if (c.get(IDEMPOTENCY_RECORDED as never)) return;
    const replay = c.get(REPLAY_BODY as never) as unknown;
    const text = replay === undefined ? await res.clone().text() : JSON.stringify(replay);
    const headers: Record<string, string> = {};
    for (const name of REPLAYED_HEADERS) {
      const value = res.headers.get(name);
      if (value !== null) headers[name] = value;
    }
    await store.completeIdempotentRequest(scope, key, fingerprint, { status: res.status, headers, body: text });
  };
}

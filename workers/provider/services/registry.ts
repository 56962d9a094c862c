// One backend per service a provider instance can offer. The catalog (config)
// says which services an instance sells and at what price; a backend says how
// each is made real and taken down. The saga, the money and the audit trail
// are the protocol code's; a backend only touches its own storage. Every
// method must be idempotent by resource id: the saga may repeat it after a crash.
import type { ServiceDescription } from '../../lib/schemas/catalog';
import type { ProviderBindings } from '../env';

export type ProvisionContext = {
  resource_id: string;
  account_id: string;
  service: string;
  plan: string;
  parameters: Record<string, unknown>;
};

/** An existing resource, as a backend sees it. */
export type ResourceRef = {
  resource_id: string;
  account_id: string;
  service: string;
  plan: string;
  /** The service fields the backend returned when it provisioned (or last renewed, changed or rotated). */
  fields: Record<string, unknown>;
};

export type Provisioned = {
  /** Service fields of the resource, shown on every read. */
  fields: Record<string, unknown>;
  /** Shown in exactly one response (PROTOCOL.md §3.1), never stored in the clear elsewhere. */
  credentials: Record<string, unknown> | null;
  /** An earlier resource of the same account this one replaces (a redeployed Worker's previous version): it is retired as deleted. */
  supersedes?: string;
};

/** A refusal the agent can act on (the name is taken, the module does not parse), as opposed to a fault. */
export class ProvisionRefused extends Error {
  constructor(
    readonly code: 'invalid_parameters' | 'domain_unavailable' | 'domain_protected',
    message: string,
    readonly status = 422,
    readonly extra: Record<string, unknown> = {},
  ) {
    super(message);
  }
}

export type ServiceBackend = {
  /** Its catalog entry but for plans and prices (which are configuration): name, parameters, scopes, sync or async. */
  describe: ServiceDescription;
  /** Checks that need no money (a name's availability, a module that parses): run before anything is reserved. */
  check?(env: ProviderBindings, ctx: ProvisionContext): Promise<void>;
  provision(env: ProviderBindings, ctx: ProvisionContext): Promise<Provisioned>;
  /** Stops it for good: serving ends, credentials die, storage is deleted, a name is released. */
  deprovision(env: ProviderBindings, ref: Pick<ResourceRef, 'resource_id' | 'account_id'>): Promise<void>;
  /** New credentials; the old ones stop working at once. Absent when the service issues none. */
  rotate?(env: ProviderBindings, ref: ResourceRef): Promise<Provisioned>;
  /** After a paid renewal: the resource's new fields (a domain's next expiry). It lifts a suspension, if any. */
  renew?(env: ProviderBindings, ref: ResourceRef, until: Date): Promise<Record<string, unknown>>;
  /** After a paid plan change along `allowed_updates`: the resource's new fields. */
  changePlan?(env: ProviderBindings, ref: ResourceRef, plan: string): Promise<Record<string, unknown>>;
  /** A renewal the limits refused: keep the resource, stop what it costs to run (serving, writes) until `renew`. */
  suspend?(env: ProviderBindings, ref: ResourceRef): Promise<void>;
};

const backends = new Map<string, ServiceBackend>();

export function registerBackend(service: string, backend: ServiceBackend) {
  backends.set(service, backend);
}

export function backendFor(service: string): ServiceBackend | null {
  return backends.get(service) ?? null;
}

// One backend per service a provider instance can offer. The catalog (config)
// says which services an instance sells and at what price; this says how each
// is provisioned and taken down. Both must be idempotent by resource id: the
// saga may repeat them after a crash.
import type { ProviderBindings } from '../env';

export type ProvisionContext = {
  resource_id: string;
  account_id: string;
  service: string;
  plan: string;
  parameters: Record<string, unknown>;
};

export type Provisioned = {
  /** Service fields of the resource, shown on every read. */
  fields: Record<string, unknown>;
  /** Shown in exactly one response (PROTOCOL.md §3.1), never stored in the clear elsewhere. */
  credentials: Record<string, unknown> | null;
};

/** A refusal the agent can act on (the name is taken, the module does not parse), as opposed to a fault. */
export class ProvisionRefused extends Error {
  constructor(
    readonly code: 'invalid_parameters' | 'domain_unavailable' | 'domain_protected',
    message: string,
    readonly status = 422,
  ) {
    super(message);
  }
}

export type ServiceBackend = {
  /** Checks that need no money: run before anything is reserved. */
  precheck?(env: ProviderBindings, ctx: ProvisionContext): Promise<void>;
  provision(env: ProviderBindings, ctx: ProvisionContext): Promise<Provisioned>;
  deprovision(env: ProviderBindings, ctx: { resource_id: string; account_id: string }): Promise<void>;
};

const backends = new Map<string, ServiceBackend>();

export function registerBackend(service: string, backend: ServiceBackend) {
  backends.set(service, backend);
}

export function backendFor(service: string): ServiceBackend | null {
  return backends.get(service) ?? null;
}

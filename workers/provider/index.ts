// Entry point of the provider Worker (wrangler.toml).
import { createProviderApp } from './app';

export { PrincipalLedger } from '../../durable-objects/principal-ledger';

export default createProviderApp();

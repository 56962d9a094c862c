// `npm start`: the whole product on this machine. Three Workers with local D1
// (migrations applied), Durable Objects and signing keys, and the runner that
// serves the Workers agents deploy; Ctrl-C stops them.
import { demoCredentials, startCluster } from './dev-cluster.mjs';

const colors = { orchestrator: 35, cloud: 36, data: 33, runner: 32 };
const tag = (role) => `\x1b[${colors[role]}m${role.padEnd(12)}\x1b[0m`;

console.log('Starting the orchestrator, the providers "cloud" and "data", and the runner (first start takes a little longer)…');
const cluster = await startCluster({ log: (role, line) => console.log(`${tag(role)} ${line}`) }).catch((error) => {
  console.error(String(error.message ?? error));
  process.exit(1);
});

const demo = demoCredentials();
console.log(`
Open Agent Provisioning is running:

  orchestrator   ${cluster.urls.orchestrator}   (sign in: ${cluster.urls.orchestrator}/sign-in)
  provider cloud ${cluster.urls.cloud}   (domains, Workers, plans)
  provider data  ${cluster.urls.data}   (databases)
  runner         ${cluster.urls.runner}   (Workers deployed at cloud: ${cluster.urls.runner}/<name>/)

Demo principal: ${demo.email} / ${demo.password}
Discovery:      curl ${cluster.urls.orchestrator}/.well-known/agent-provisioning
State:          .wrangler/state/<role>   Keys and demo passwords: .dev.vars, .dev.vars.data, workers/orchestrator/.dev.vars

Press Ctrl-C to stop.
`);

let stopping = false;
const shutdown = async () => {
  if (stopping) return;
  stopping = true;
  await cluster.stop();
  process.exit(0);
};
process.on('SIGINT', shutdown);
process.on('SIGTERM', shutdown);
for (const child of cluster.children) {
  child.on('exit', (code) => {
    if (!stopping) {
      console.error(`A Worker exited (code ${code}); stopping the others.`);
      void shutdown();
    }
  });
}

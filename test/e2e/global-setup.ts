// Starts the three Workers and the runner exactly as `npm start` does, on
// other ports and in a throwaway state folder, for the end-to-end tests to
// drive over HTTP.
import { appendFileSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { TestProject } from 'vitest/node';
import { startCluster } from '../../scripts/dev-cluster.mjs';

declare module 'vitest' {
  export interface ProvidedContext {
    urls: { orchestrator: string; cloud: string; data: string; runner: string };
    /** Everything the Workers printed, one line per entry (a test checks that no credential is ever logged). */
    logFile: string;
  }
}

export default async function setup(project: TestProject) {
  const stateDir = mkdtempSync(join(tmpdir(), 'oap-e2e-'));
  const output: string[] = [];
  const logFile = join(stateDir, 'workers.log');
  const log = (role: string, line: string) => {
    output.push(`${role} ${line}`);
    appendFileSync(logFile, `${role} ${line}\n`);
  };
  // Every request and every line the Workers print, so that a test can check what never appears in them.
  const cluster = await startCluster({ portBase: 18787, stateDir, log, logLevel: 'info' }).catch(
    (error: Error) => {
      throw new Error(`${error.message}\n${output.join('\n')}`);
    },
  );
  project.provide('urls', cluster.urls);
  project.provide('logFile', logFile);
  return async () => {
    await cluster.stop();
    rmSync(stateDir, { recursive: true, force: true });
  };
}

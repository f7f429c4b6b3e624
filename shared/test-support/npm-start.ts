import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { freePort, freePortBlock, functionNames } from '../../scripts/functions.js';
import { dropDatabase, ensureDatabase } from '../../scripts/local-postgres.js';

/** A running `npm start` of a test's own. */
export interface StartedSystem {
  gateway: string;
  /** What it printed so far, stdout and stderr. */
  output(): string;
  /** SIGTERM, then its database is dropped. */
  stop(): Promise<void>;
}

/**
 * `npm start` as a user runs it, on a database, topic, consumer group and
 * ports of the test's own (`name` tells them apart), with `env` over the
 * test's environment; resolves once its gateway is ready.
 */
export async function startNpmStart(name: string, env: NodeJS.ProcessEnv): Promise<StartedSystem> {
  const adminUrl = new URL(process.env.DATABASE_URL ?? '');
  adminUrl.pathname = '/postgres';
  const databaseName = `boxoffice_${name.replace(/\W/g, '_')}_${process.pid}`;
  const databaseUrl = await ensureDatabase(adminUrl.toString(), databaseName);
  const gatewayPort = await freePort();
  const start = spawn(process.execPath, ['--import', 'tsx', 'scripts/start.ts'], {
    env: {
      ...process.env,
      DATABASE_URL: databaseUrl,
      BOOKING_TOPIC: `booking-${name}-${process.pid}`,
      TRIGGER_GROUP: `${name}-${process.pid}`,
      GATEWAY_PORT: String(gatewayPort),
      FUNCTIONS_BASE_PORT: String(await freePortBlock(functionNames().length + 3)),
      DEV_ISSUER_PORT: String(await freePort()),
      ...env,
    },
  });
  let output = '';
  start.stdout.on('data', (chunk: Buffer) => (output += chunk.toString()));
  start.stderr.on('data', (chunk: Buffer) => (output += chunk.toString()));
  const exited = once(start, 'exit');
  const stop = async () => {
    if (start.exitCode === null && start.signalCode === null) {
      start.kill('SIGTERM');
      await exited;
    }
    await dropDatabase(adminUrl.toString(), databaseName);
  };
  try {
    for (let attempt = 0; !/gateway ready at/.test(output); attempt++) {
      assert.ok(attempt < 1_200 && start.exitCode === null, `npm start did not come up:\n${output}`);
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  } catch (error) {
    await stop();
    throw error;
  }
  return { gateway: `http://127.0.0.1:${gatewayPort}`, output: () => output, stop };
}

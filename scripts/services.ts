import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';

/** A service the tests need, started for them when it was not already running. */
export interface StartedService {
  env: Record<string, string>;
  stop(): Promise<void>;
}

function run(script: string): Promise<{ code: number; stdout: string }> {
  return new Promise((resolve) => {
    const child = spawn('bash', [script], { stdio: ['ignore', 'pipe', 'inherit'] });
    let stdout = '';
    child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
    child.on('exit', (code) => resolve({ code: code ?? 1, stdout }));
  });
}

/**
 * A real Kafka broker for the tests: KAFKA_BROKERS if set, else the
 * project's single KRaft node (scripts/kafka/start.sh), stopped afterwards
 * if this run started it. Undefined when it cannot be had.
 */
export async function kafkaForTests(): Promise<StartedService | undefined> {
  if (process.env.KAFKA_BROKERS) return { env: { KAFKA_BROKERS: process.env.KAFKA_BROKERS }, stop: async () => undefined };
  const wasRunning = existsSync('.cache/kafka/kafka.pid');
  const { code, stdout } = await run('scripts/kafka/start.sh');
  const brokers = /KAFKA_BROKERS=(\S+)/.exec(stdout)?.[1];
  if (code !== 0 || !brokers) return undefined;
  return {
    env: { KAFKA_BROKERS: brokers },
    stop: async () => {
      if (!wasRunning) await run('scripts/kafka/stop.sh');
    },
  };
}

/**
 * A real Keycloak with the project's realm for the tests: KEYCLOAK_URL if
 * set, else the project's (scripts/keycloak/start.sh), stopped afterwards
 * if this run started it. Undefined when it cannot be had.
 */
export async function keycloakForTests(): Promise<StartedService | undefined> {
  if (process.env.KEYCLOAK_URL) return { env: { KEYCLOAK_URL: process.env.KEYCLOAK_URL }, stop: async () => undefined };
  const wasRunning = existsSync('.cache/keycloak/keycloak.pid');
  const { code } = await run('scripts/keycloak/start.sh');
  if (code !== 0) return undefined;
  return {
    env: { KEYCLOAK_URL: `http://127.0.0.1:${process.env.KEYCLOAK_PORT ?? 8180}` },
    stop: async () => {
      if (!wasRunning) await run('scripts/keycloak/stop.sh');
    },
  };
}

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
 * One of the project's servers (scripts/<name>/start.sh), started for the
 * tests unless it already runs, and stopped afterwards only if this run
 * started it. Undefined when it cannot be started.
 */
async function projectServer(name: 'kafka' | 'keycloak', env: (stdout: string) => Record<string, string> | undefined): Promise<StartedService | undefined> {
  const wasRunning = existsSync(`.cache/${name}/${name}.pid`);
  const { code, stdout } = await run(`scripts/${name}/start.sh`);
  const started = code === 0 ? env(stdout) : undefined;
  if (!started) return undefined;
  return {
    env: started,
    stop: async () => {
      if (!wasRunning) await run(`scripts/${name}/stop.sh`);
    },
  };
}

/** A real Kafka broker for the tests: KAFKA_BROKERS if set, else the project's single KRaft node. */
export async function kafkaForTests(): Promise<StartedService | undefined> {
  if (process.env.KAFKA_BROKERS) return { env: { KAFKA_BROKERS: process.env.KAFKA_BROKERS }, stop: async () => undefined };
  return projectServer('kafka', (stdout) => {
    const brokers = /KAFKA_BROKERS=(\S+)/.exec(stdout)?.[1];
    return brokers ? { KAFKA_BROKERS: brokers } : undefined;
  });
}

/** A real Keycloak with the project's realm for the tests: KEYCLOAK_URL if set, else the project's. */
export async function keycloakForTests(): Promise<StartedService | undefined> {
  if (process.env.KEYCLOAK_URL) return { env: { KEYCLOAK_URL: process.env.KEYCLOAK_URL }, stop: async () => undefined };
  return projectServer('keycloak', () => ({ KEYCLOAK_URL: `http://127.0.0.1:${process.env.KEYCLOAK_PORT ?? 8180}` }));
}

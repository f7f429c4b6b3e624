import { once } from 'node:events';
import { readdirSync } from 'node:fs';
import { createServer, type AddressInfo } from 'node:net';
import type { FunctionDefinition } from '../shared/http-function.js';

/** The functions of this repository: one folder each under functions/. */
export function functionNames(): string[] {
  return readdirSync(new URL('../functions', import.meta.url), { withFileTypes: true })
    .filter((entry) => entry.isDirectory())
    .map((entry) => entry.name)
    .sort();
}

/** Every function's definition (its route, access rule and schemas). */
export async function loadDefinitions(): Promise<FunctionDefinition[]> {
  return Promise.all(
    functionNames().map(async (name) => ((await import(`../functions/${name}/index.js`)) as { default: FunctionDefinition }).default),
  );
}

/** Resolves once the function at `base` answers /_/ready; throws after 30 s. */
export async function untilReady(base: string): Promise<void> {
  for (let attempt = 0; attempt < 300; attempt++) {
    if (await fetch(`${base}/_/ready`, { signal: AbortSignal.timeout(2_000) }).then((r) => r.ok, () => false)) return;
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  throw new Error(`${base} did not become ready`);
}

/** A loopback port nothing listens on right now. */
export async function freePort(): Promise<number> {
  const probe = createServer().listen(0, '127.0.0.1');
  await once(probe, 'listening');
  const { port } = probe.address() as AddressInfo;
  probe.close();
  await once(probe, 'close');
  return port;
}

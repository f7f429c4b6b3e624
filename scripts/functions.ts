import { readdirSync } from 'node:fs';
import { createServer } from 'node:net';
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
  return freePortBlock(1);
}

// Ports this process has handed out: free when probed, but maybe not yet
// listened on, so a later block must not overlap them.
const handedOut = new Set<number>();

/** A free run of `size` consecutive loopback ports: npm start numbers its functions from the first. */
export async function freePortBlock(size: number): Promise<number> {
  for (let attempt = 0; attempt < 50; attempt++) {
    // Below the kernel's ephemeral ports (32768 and up): an outgoing
    // connection may take one of those at any moment after it was probed free.
    const first = 20_000 + Math.floor(Math.random() * 8_000);
    const ports = Array.from({ length: size }, (_, i) => first + i);
    if (ports.some((port) => handedOut.has(port))) continue;
    const servers = [];
    let free = true;
    for (const port of ports) {
      const server = createServer();
      free = await new Promise<boolean>((resolve) => {
        server.once('error', () => resolve(false));
        server.listen(port, '127.0.0.1', () => resolve(true));
      });
      if (!free) break;
      servers.push(server);
    }
    await Promise.all(servers.map((server) => new Promise((resolve) => server.close(resolve))));
    if (free) {
      for (const port of ports) handedOut.add(port);
      return first;
    }
  }
  throw new Error(`no ${size} consecutive free ports`);
}

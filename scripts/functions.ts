import { readdirSync } from 'node:fs';
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

import { existsSync, readFileSync } from 'node:fs';
import { dirname, join, relative } from 'node:path';

// Which environment variables a process reads, found in its source: the
// modules its entry file imports (relative imports, followed to the end), and
// in each the settings read by name (`process.env.X`, `integerSetting('X'`,
// `portSetting('X'`, `secret('X')`). The deployment files are written and
// checked from this, so a manifest can set only what the code reads, and
// mounts every secret its code reads.

export interface SettingsRead {
  /** Every variable read by name (a secret's `<NAME>_FILE` included). */
  variables: Set<string>;
  /** The secrets read through shared/config.ts's `secret()`: `<NAME>` or the file `<NAME>_FILE` names. */
  secrets: Set<string>;
}

const imports = /(?:import|export)\s[^'"]*?from\s+'(\.{1,2}\/[^']+)'|import\(\s*'(\.{1,2}\/[^']+)'\s*\)/g;
const reads = /process\.env\.([A-Z][A-Z0-9_]*)|process\.env\[\s*'([A-Z][A-Z0-9_]*)'\s*\]|(?:integerSetting|portSetting)\(\s*'([A-Z][A-Z0-9_]*)'/g;
const secretReads = /\bsecret\(\s*'([A-Z][A-Z0-9_]*)'\s*\)/g;

/** The settings read by `entry` (a .ts file, relative to the repository) and everything it imports. */
export function settingsRead(entry: string): SettingsRead {
  const variables = new Set<string>();
  const secrets = new Set<string>();
  const seen = new Set<string>();
  const queue = [entry];
  for (let file = queue.pop(); file !== undefined; file = queue.pop()) {
    if (seen.has(file)) continue;
    seen.add(file);
    const source = readFileSync(file, 'utf8');
    for (const [, from, dynamic] of source.matchAll(imports)) {
      queue.push(relative('.', join(dirname(file), (from ?? dynamic)!.replace(/\.js$/, '.ts'))));
    }
    for (const match of source.matchAll(reads)) variables.add((match[1] ?? match[2] ?? match[3])!);
    for (const [, name] of source.matchAll(secretReads)) {
      secrets.add(name!);
      variables.add(name!).add(`${name!}_FILE`);
    }
  }
  return { variables, secrets };
}

/** The settings a function's process reads: the host (shared/run.ts) and the function's own modules (none for a folder not written yet). */
export function functionSettings(name: string): SettingsRead {
  const host = settingsRead('shared/run.ts');
  const entry = `functions/${name}/index.ts`;
  const own = existsSync(entry) ? settingsRead(entry) : { variables: new Set<string>(), secrets: new Set<string>() };
  return { variables: new Set([...host.variables, ...own.variables]), secrets: new Set([...host.secrets, ...own.secrets]) };
}

/** A secret's name on the platforms (a Kubernetes or OpenFaaS secret, a compose secret): QUEUE_PASS_KEY is queue-pass-key. */
export function secretName(variable: string): string {
  return variable.toLowerCase().replace(/_/g, '-');
}

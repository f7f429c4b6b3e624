import type { FunctionDefinition } from './http-function.js';

/**
 * Entry point of every function container: `FUNCTION_NAME=get-event node
 * shared/run.js` (or the name as the first argument) loads
 * `functions/<name>/index` and serves it on PORT. Everything is imported
 * inside the try: modules read their settings as they load, so a bad one
 * is a ConfigError here, printed as one line, never a stack trace.
 */
const name = process.argv[2] ?? process.env.FUNCTION_NAME;
try {
  const { ConfigError, config } = await import('./config.js');
  if (!name || !/^[a-z][a-z-]*$/.test(name)) throw new ConfigError('name the function: FUNCTION_NAME=<name> or the first argument');
  process.env.FUNCTION_NAME = name;
  const { serveFunction } = await import('./host.js');
  const module = (await import(`../functions/${name}/index.js`)) as { default: FunctionDefinition };
  await serveFunction(module.default, config.port);
} catch (error) {
  const line = mistake(error);
  console.error(line ? `boxoffice ${name ?? 'function'}: ${line}` : error);
  process.exit(1);
}

/** A bad setting or a taken port, as one line; undefined for anything else (a bug), printed with its stack. */
function mistake(error: unknown): string | undefined {
  const { name: kind, code, message } = error as NodeJS.ErrnoException;
  // ConfigError's module may be what failed to load, so the error is known by its name.
  if (kind === 'ConfigError') return message;
  if (code === 'EADDRINUSE') return `${message}: set PORT to a free port`;
  return undefined;
}

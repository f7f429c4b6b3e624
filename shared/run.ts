import { ConfigError, config } from './config.js';
import type { FunctionDefinition } from './http-function.js';
import { serveFunction } from './host.js';

/**
 * Entry point of every function container: `FUNCTION_NAME=get-event node
 * shared/run.js` (or the name as the first argument) loads
 * `functions/<name>/index` and serves it on PORT.
 */
const name = process.argv[2] ?? process.env.FUNCTION_NAME;
try {
  if (!name || !/^[a-z][a-z-]*$/.test(name)) throw new ConfigError('name the function: FUNCTION_NAME=<name> or the first argument');
  process.env.FUNCTION_NAME = name;
  const module = (await import(`../functions/${name}/index.js`)) as { default: FunctionDefinition };
  await serveFunction(module.default, config.port);
} catch (error) {
  console.error(error instanceof ConfigError ? `boxoffice: ${error.message}` : error);
  process.exit(1);
}

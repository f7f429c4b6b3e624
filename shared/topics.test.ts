import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { test } from 'node:test';
import { promisify } from 'node:util';
import { functionNames } from '../scripts/functions.js';

// Only the relay, the trigger and the scripts talk to Kafka. A function that
// loads kafkajs anyway carries about 14 MB more in every instance.

const run = promisify(execFile);

/** Whether importing the function's module loads kafkajs, asked of a process of its own. */
async function loadsKafka(name: string): Promise<boolean> {
  const script = [
    "import { createRequire } from 'node:module';",
    `await import('./functions/${name}/index.ts');`,
    "console.log(Object.keys(createRequire(import.meta.url).cache).some((path) => path.includes('/node_modules/kafkajs/')));",
  ].join('\n');
  const { stdout } = await run(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], {
    env: { ...process.env, DATABASE_URL: 'postgres://boxoffice@127.0.0.1:1/unused', LOG_LEVEL: 'silent' },
    timeout: 60_000,
  });
  return stdout.trim().split('\n').at(-1) === 'true';
}

test('no function loads the Kafka client: book and cancel-booking only name the topic', async () => {
  const names = functionNames();
  const loading: string[] = [];
  for (let i = 0; i < names.length; i += 4) {
    const batch = names.slice(i, i + 4);
    const answers = await Promise.all(batch.map(loadsKafka));
    loading.push(...batch.filter((_, j) => answers[j]));
  }
  assert.deepEqual(loading, []);
});

import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';

// The load test itself works: a one-second run measures, reports and keeps
// its figures. (No figure is asserted: speed is reported, never tested.)
test('npm run load measures a function and keeps the result beside the previous one', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'boxoffice-load-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const run = async () => {
    const child = spawn(process.execPath, ['--import', 'tsx', 'scripts/load.ts', 'get-venue', '1'], {
      env: { ...process.env, LOAD_RESULTS_DIR: dir },
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    let out = '';
    child.stdout.on('data', (chunk: Buffer) => (out += chunk.toString()));
    const [code] = (await once(child, 'exit')) as [number | null];
    assert.equal(code, 0, out);
    return out;
  };

  await run();
  const second = await run();

  const lines = (await readFile(join(dir, 'get-venue.jsonl'), 'utf8')).trim().split('\n');
  assert.equal(lines.length, 2);
  const result = JSON.parse(lines[1]!) as { function: string; requestsPerSecond: number; ratioToBaseline: number; non2xx: number };
  assert.equal(result.function, 'get-venue');
  assert.ok(result.requestsPerSecond > 0);
  assert.ok(result.ratioToBaseline > 0);
  assert.equal(result.non2xx, 0, 'every request of the load succeeded');
  assert.match(second, /previous run .* change -?\d/);
});

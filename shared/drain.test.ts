import assert from 'node:assert/strict';
import { test } from 'node:test';
import { httpFunction } from './http-function.js';
import { serve } from './test-support/index.js';

let release: () => void = () => undefined;
let entered: () => void = () => undefined;
const handlerEntered = new Promise<void>((resolve) => (entered = resolve));

const slow = httpFunction({
  name: 'drain-probe',
  route: { method: 'GET', path: '/slow' },
  async handle() {
    entered();
    await new Promise<void>((resolve) => (release = resolve));
    return { body: { finished: true } };
  },
});

test('on shutdown the host finishes requests in flight and takes no new ones', async () => {
  const fn = await serve(slow);
  const inFlight = fetch(`${fn.url}/slow`);
  await handlerEntered;

  const stopped = fn.stop();
  await assert.rejects(fetch(`${fn.url}/slow`, { headers: { connection: 'close' } }));
  release();

  const res = await inFlight;
  assert.equal(res.status, 200);
  assert.deepEqual(await res.json(), { finished: true });
  await stopped;
});

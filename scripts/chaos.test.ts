import assert from 'node:assert/strict';
import { test } from 'node:test';
import { kafkaOrSkip } from '../shared/test-support/index.js';
import { faults, formatTable, runScenario, sizing, startHarness, type Row } from './chaos/index.js';

// The CI subset of `npm run chaos` (issue 8: an outage of any dependency
// costs time, never a booking), the same harness at the --quick size: real
// `npm start`, a real Kafka, an embedded Postgres and a token issuer of the
// harness's own, a few hundred bookings per fault. Kafka itself is never
// killed here: the broker is shared with the other tests.

test('nothing accepted is ever stranded when a process, Postgres or the token issuer fails mid-burst', { timeout: 280_000 }, async (t) => {
  if (!kafkaOrSkip(t)) return;
  const harness = await startHarness();
  const rows: Row[] = [];
  t.after(async () => {
    console.log(formatTable(rows));
    await harness.close();
  });

  for (const fault of faults.filter((f) => f.ci)) {
    await t.test(`${fault.what}: every accepted booking is confirmed once, none dead-lettered, no crash, no 500`, async () => {
      const row = await runScenario(harness, fault, sizing.quick, { signal: t.signal });
      rows.push(row);
      const seen = {
        faultInjectedAndRunToTheEnd: !row.notes.some((note) => note.startsWith('fault not injected') || note.startsWith('harness error')),
        accepted: row.accepted,
        confirmed: row.confirmed,
        lost: row.lost,
        doubled: row.doubled,
        deadLetters: row.deadLetters,
        crashed: row.crashed,
        serverErrors: row.serverErrors,
        refused: row.refused,
        gaveUp: row.gaveUp,
        recovered: row.recovered,
        unmet: row.unmet,
      };
      const everyBooking = sizing.quick.bookings;
      assert.deepEqual(
        seen,
        { faultInjectedAndRunToTheEnd: true, accepted: everyBooking, confirmed: everyBooking, lost: 0, doubled: 0, deadLetters: 0, crashed: [], serverErrors: 0, refused: 0, gaveUp: 0, recovered: true, unmet: [] },
        formatTable([row]),
      );
    });
  }
});

import assert from 'node:assert/strict';
import { after, test } from 'node:test';
import { pool } from '../shared/db.js';
import { createEvent } from '../shared/test-support/index.js';

after(() => pool.end());

const setOnSale = 'UPDATE events SET on_sale_starts_at = $2, on_sale_admit_per_minute = $3, on_sale_max_active = $4, on_sale_pass_minutes = $5 WHERE event_id = $1';

test('the database refuses a per-customer maximum below one', async () => {
  const { eventId } = await createEvent();
  const limit = 'UPDATE events SET max_tickets_per_customer = $2 WHERE event_id = $1';
  await assert.rejects(pool.query(limit, [eventId, 0]), /events_max_tickets_per_customer_positive/);
  await pool.query(limit, [eventId, 1]);
  await pool.query(limit, [eventId, null]);
});

test('the database holds on-sale settings all set or all unset', async () => {
  const { eventId } = await createEvent();
  const startsAt = '2031-01-01T00:00:00Z';
  await assert.rejects(pool.query(setOnSale, [eventId, startsAt, 60, 100, null]), /events_on_sale_all_or_none/);
  await assert.rejects(pool.query(setOnSale, [eventId, null, 60, null, null]), /events_on_sale_all_or_none/);
  await pool.query(setOnSale, [eventId, startsAt, 60, 100, 10]);
  await pool.query(setOnSale, [eventId, null, null, null, null]);
});

test('the database refuses on-sale settings that admit nobody or a pass outside 1 to 60 minutes', async () => {
  const { eventId } = await createEvent();
  const startsAt = '2031-01-01T00:00:00Z';
  await assert.rejects(pool.query(setOnSale, [eventId, startsAt, 0, 100, 10]), /events_on_sale_admit_per_minute_positive/);
  await assert.rejects(pool.query(setOnSale, [eventId, startsAt, 60, 0, 10]), /events_on_sale_max_active_positive/);
  await assert.rejects(pool.query(setOnSale, [eventId, startsAt, 60, 100, 0]), /events_on_sale_pass_minutes_range/);
  await assert.rejects(pool.query(setOnSale, [eventId, startsAt, 60, 100, 61]), /events_on_sale_pass_minutes_range/);
  await pool.query(setOnSale, [eventId, startsAt, 1, 1, 60]);
});

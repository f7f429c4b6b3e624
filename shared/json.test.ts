import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Decimal, toJson } from './json.js';

test('decimals are written as exact JSON numbers, digits untouched', () => {
  const json = toJson({ ticketPrice: new Decimal('19.99'), total: new Decimal('0.10'), big: new Decimal('12345678901234567.89') });
  assert.equal(json, '{"ticketPrice":19.99,"total":0.10,"big":12345678901234567.89}');
});

test('strings that look like the marker stay strings', () => {
  const sneaky = '\u0000deadbeef:1.00';
  assert.deepEqual(JSON.parse(toJson({ name: sneaky })), { name: sneaky });
});

test('a value that is not a decimal is refused', () => {
  assert.throws(() => new Decimal('1e3'), TypeError);
  assert.throws(() => new Decimal('NaN'), TypeError);
});

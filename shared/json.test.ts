import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Decimal, toJson, writtenText } from './json.js';

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

test('numbers written with a fraction, an exponent or beyond 2^53 are found with their paths; plain ones and strings are not', () => {
  const json = '{"a":1,"b":1.0,"c":[2,3e0,{"d\\"/~":-0.5}],"e":"7.5","f":12345678901234567890,"g":-9007199254740991,"h":[[1],[2.5]]}';
  assert.deepEqual(writtenText(json).inexactNumbers, [
    { path: ['b'], text: '1.0' },
    { path: ['c', '1'], text: '3e0' },
    { path: ['c', '2', 'd"/~'], text: '-0.5' },
    { path: ['f'], text: '12345678901234567890' },
    { path: ['h', '1', '0'], text: '2.5' },
  ]);
});

test('a text with only plain integers and distinct keys has nothing hidden', () => {
  assert.deepEqual(writtenText('{"eventId":2,"userId":1,"ticketCount":3,"key":"e"}'), { inexactNumbers: [], duplicateKeys: [] });
  assert.deepEqual(writtenText('[1, 2, -3, {"a":1}, {"a":2}]'), { inexactNumbers: [], duplicateKeys: [] });
});

test('keys an object gives twice are found with their paths, however they are escaped; the same key in sibling objects is not', () => {
  const json = '{"a":1,"b":{"c":1,"\\u0063":2},"a":3,"d":[{"e":1},{"e":2,"e":3}],"f":{"a":1}}';
  assert.deepEqual(writtenText(json).duplicateKeys, [['b', 'c'], ['a'], ['d', '1', 'e']]);
});

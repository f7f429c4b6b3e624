import { randomBytes } from 'node:crypto';

const DECIMAL_TEXT = /^-?\d{1,20}(\.\d{1,10})?$/;

/**
 * A decimal amount (a price, a total) kept as its exact text from Postgres'
 * `numeric`, so money never passes through a binary float on its way out.
 */
export class Decimal {
  constructor(readonly text: string) {
    if (!DECIMAL_TEXT.test(text)) throw new TypeError(`not a decimal: ${text}`);
  }
}

// Decimals are swapped for a marker during stringify, then the marker is
// replaced by the bare digits: the JSON keeps the original clients' number
// type while the digits are the database's own. The nonce keeps any string
// value from ever looking like a marker.
const nonce = randomBytes(8).toString('hex');
const marker = new RegExp(`"\\\\u0000${nonce}:(-?[0-9.]+)"`, 'g');

/** JSON.stringify that writes every Decimal as an exact JSON number. */
export function toJson(value: unknown): string {
  return JSON.stringify(value, (_key, v: unknown) => (v instanceof Decimal ? `\u0000${nonce}:${v.text}` : v)).replace(marker, '$1');
}

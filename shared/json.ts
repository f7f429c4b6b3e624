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

/** A number in a JSON text that JSON.parse does not give back as it was written: its path and its text. */
export interface InexactNumber {
  path: string[];
  text: string;
}

// A fraction or an exponent always follows a digit, and an integer beyond
// 2^53 has at least 16 digits: a text without either has no inexact number.
const MAYBE_INEXACT = /\d[.eE]|\d{16}/;
const NUMBER = /-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?/y;
const STRING = /"(?:[^"\\]|\\.)*"/y;

/**
 * The numbers of a valid JSON text that are not plain safe integers as
 * written (a fraction, an exponent, or beyond 2^53), each with its path
 * (array indexes as strings). JSON.parse turns `0.9999999999999999999` and
 * `1.0` alike into the integer 1, and Node 20's reviver does not see a
 * number's text, so whether a number was written as an integer can only be
 * read from the text itself.
 */
export function inexactNumbers(json: string): InexactNumber[] {
  if (!MAYBE_INEXACT.test(json)) return [];
  const found: InexactNumber[] = [];
  // One frame per open object or array: the key or index being read.
  const path: string[] = [];
  const inArray: boolean[] = [];
  let expectingKey = false;
  let at = 0;
  while (at < json.length) {
    const char = json[at]!;
    if (char === '"') {
      STRING.lastIndex = at;
      const token = STRING.exec(json)![0];
      if (expectingKey) path[path.length - 1] = JSON.parse(token) as string;
      expectingKey = false;
      at += token.length;
    } else if (char === '-' || (char >= '0' && char <= '9')) {
      NUMBER.lastIndex = at;
      const text = NUMBER.exec(json)![0];
      if (!Number.isSafeInteger(Number(text)) || /[.eE]/.test(text)) found.push({ path: [...path], text });
      at += text.length;
    } else {
      if (char === '{' || char === '[') {
        inArray.push(char === '[');
        path.push('0');
        expectingKey = char === '{';
      } else if (char === '}' || char === ']') {
        inArray.pop();
        path.pop();
      } else if (char === ',') {
        if (inArray.at(-1)) path[path.length - 1] = String(Number(path.at(-1)) + 1);
        else expectingKey = true;
      }
      at += 1;
    }
  }
  return found;
}

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

/** What a JSON text says that JSON.parse hides. */
export interface WrittenText {
  /** Numbers that are not plain safe integers as written (a fraction, an exponent, or beyond 2^53). */
  inexactNumbers: InexactNumber[];
  /** Paths of keys an object gives more than once (JSON.parse keeps the last silently). */
  duplicateKeys: string[][];
}

const NUMBER = /-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?/y;
const STRING = /"(?:[^"\\]|\\.)*"/y;

/**
 * Reads a valid JSON text for what parsing loses, each with its path (array
 * indexes as strings): JSON.parse turns `0.9999999999999999999` and `1.0`
 * alike into the integer 1, and `{"a":1,"a":2}` into `{"a":2}`; Node 20's
 * reviver sees neither a number's text nor a repeated key, so only the text
 * itself tells.
 */
export function writtenText(json: string): WrittenText {
  const found: WrittenText = { inexactNumbers: [], duplicateKeys: [] };
  // One frame per open object or array: the key or index being read, and an object's keys so far.
  const path: string[] = [];
  const keys: (Set<string> | undefined)[] = [];
  let expectingKey = false;
  let at = 0;
  while (at < json.length) {
    const char = json[at]!;
    if (char === '"') {
      STRING.lastIndex = at;
      const token = STRING.exec(json)![0];
      if (expectingKey) {
        const key = JSON.parse(token) as string;
        path[path.length - 1] = key;
        const seen = keys.at(-1)!;
        if (seen.has(key)) found.duplicateKeys.push([...path]);
        seen.add(key);
      }
      expectingKey = false;
      at += token.length;
    } else if (char === '-' || (char >= '0' && char <= '9')) {
      NUMBER.lastIndex = at;
      const text = NUMBER.exec(json)![0];
      if (!Number.isSafeInteger(Number(text)) || /[.eE]/.test(text)) found.inexactNumbers.push({ path: [...path], text });
      at += text.length;
    } else {
      if (char === '{' || char === '[') {
        keys.push(char === '{' ? new Set() : undefined);
        path.push('0');
        expectingKey = char === '{';
      } else if (char === '}' || char === ']') {
        keys.pop();
        path.pop();
      } else if (char === ',') {
        if (keys.at(-1)) expectingKey = true;
        else path[path.length - 1] = String(Number(path.at(-1)) + 1);
      }
      at += 1;
    }
  }
  return found;
}

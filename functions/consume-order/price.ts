// A number's JSON text is found without parsing the JSON again only when
// that is unambiguous: no escapes (so every key is written as itself and no
// string holds a quote) and the key written once in the whole text.
const PLAIN_DECIMAL = /^(\d{1,20})(?:\.(\d{1,20}))?$/;

/**
 * The exact text of the one `key` member in `json`, when it can be found
 * without parsing; undefined when the text is not that plain (then the
 * caller lets Postgres read it).
 */
export function memberText(json: string, key: string): string | undefined {
  if (json.includes('\\') || json.split(`"${key}"`).length !== 2) return undefined;
  return new RegExp(`"${key}"\\s*:\\s*(-?[\\d.eE+-]+)`).exec(json)?.[1];
}

/**
 * One text for every way of writing the same plain decimal (no sign, no
 * exponent, as Postgres writes a numeric): `25.000` and `025.0` are `25`.
 * Undefined for any other text.
 */
export function canonicalDecimal(text: string): string | undefined {
  const match = PLAIN_DECIMAL.exec(text);
  if (!match) return undefined;
  const whole = match[1]!.replace(/^0+(?=\d)/, '');
  const fraction = (match[2] ?? '').replace(/0+$/, '');
  return fraction ? `${whole}.${fraction}` : whole;
}

import { problems } from './errors.js';

export type Method = 'GET' | 'POST' | 'PUT' | 'PATCH' | 'DELETE';

/**
 * A public route, e.g. `GET /api/v1/inventory/event/:eventId`. Each `:param`
 * is one non-empty segment; a last `:param?` is one segment or none, so
 * `GET /:page?` serves `/` and `/app.js` but never a path of two segments.
 */
export interface Route {
  method: Method;
  path: string;
}

function segments(path: string): string[] {
  return path.replace(/\/+$/, '').split('/').slice(1);
}

/** Matches paths against one route pattern, split once rather than per request. */
export type PathMatcher = (path: string) => Record<string, string> | undefined;

export function pathMatcher(pattern: string): PathMatcher {
  const want = segments(pattern);
  return (path) => {
    const have = segments(path);
    // A path without the optional last segment (`/` has no segments at all) matches the rest of the pattern.
    if (want.at(-1)?.endsWith('?') && have.length === want.length - 1) return matchSegments(want.slice(0, -1), have);
    if (want.length !== have.length) return undefined;
    return matchSegments(want, have);
  };
}

function matchSegments(want: string[], have: string[]): Record<string, string> | undefined {
  const params: Record<string, string> = {};
  for (let i = 0; i < want.length; i++) {
    const part = (want[i] as string).replace(/\?$/, '');
    const actual = have[i] as string;
    if (part.startsWith(':')) {
      if (actual === '') return undefined;
      params[part.slice(1)] = decodeSegment(part.slice(1), actual);
    } else if (part !== actual) {
      return undefined;
    }
  }
  return params;
}

/**
 * The path parameters of `path` under `pattern` (still strings, to be
 * validated by the caller), or undefined when the path is another route's.
 */
export function matchPath(pattern: string, path: string): Record<string, string> | undefined {
  return pathMatcher(pattern)(path);
}

function decodeSegment(name: string, raw: string): string {
  try {
    return decodeURIComponent(raw);
  } catch {
    throw problems.validation([{ name: `path/${name}`, reason: 'is not valid percent-encoding' }]);
  }
}

import { Agent as HttpAgent, request as httpRequest, type IncomingMessage } from 'node:http';
import { Agent as HttpsAgent, request as httpsRequest } from 'node:https';
import type { ServiceToken } from './service-token.js';

/** A CloudEvent to deliver over HTTP; `data` is JSON text, sent as is. */
export interface OutgoingEvent {
  id: string;
  type: string;
  source: string;
  subject?: string;
  data: string;
}

/**
 * A delivery that did not get a 2xx; `retryable` says whether trying again
 * can help, `retryAfterMs` what the target asked for in `Retry-After`.
 */
export class DeliveryFailed extends Error {
  override name = 'DeliveryFailed';
  constructor(
    readonly status: number | undefined,
    readonly retryable: boolean,
    detail: string,
    readonly retryAfterMs?: number,
  ) {
    super(detail);
  }
}

// The statuses Knative's KafkaSource retries (404: the target is still
// starting), plus 425 Too Early, and 401 and 403: they refuse the deliverer
// (its credentials, or the issuer's keys, not yet right), never the message.
// Any other 4xx means the message itself is wrong and will never succeed.
const RETRYABLE = new Set([401, 403, 404, 408, 409, 425, 429]);

/** `Retry-After` in milliseconds: seconds or an HTTP date; undefined when absent or unreadable. */
function retryAfterMs(header: string | undefined): number | undefined {
  if (!header) return undefined;
  const seconds = Number(header);
  if (Number.isFinite(seconds) && seconds >= 0) return seconds * 1000;
  const date = Date.parse(header);
  return Number.isNaN(date) ? undefined : Math.max(0, date - Date.now());
}

// node:http on kept-alive sockets: several times less CPU per request than
// Node 20's fetch (undici), which matters at thousands of deliveries a second.
const agents = { 'http:': new HttpAgent({ keepAlive: true }), 'https:': new HttpsAgent({ keepAlive: true }) };

interface Answer {
  status: number;
  body: string;
  retryAfter: string | undefined;
}

class TimedOut extends Error {}

/** POSTs `body` and reads the whole answer (so the socket goes back to the pool); rejects on a network error or after `timeoutMs`. */
function post(url: URL, headers: Record<string, string>, body: string, timeoutMs: number): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const secure = url.protocol === 'https:';
    const send = secure ? httpsRequest : httpRequest;
    const req = send(url, { method: 'POST', headers: { ...headers, 'content-length': String(Buffer.byteLength(body)) }, agent: agents[secure ? 'https:' : 'http:'] }, (res: IncomingMessage) => {
      const chunks: Buffer[] = [];
      res.on('data', (chunk: Buffer) => chunks.push(chunk));
      res.on('error', reject);
      res.on('close', () => (res.complete ? undefined : reject(new Error('the connection closed before the answer ended'))));
      res.on('end', () => {
        clearTimeout(timer);
        resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString('utf8'), retryAfter: res.headers['retry-after'] });
      });
    });
    const timer = setTimeout(() => {
      reject(new TimedOut());
      req.destroy();
    }, timeoutMs);
    req.on('error', (error) => {
      clearTimeout(timer);
      reject(error);
    });
    req.end(body);
  });
}

export interface DeliveryOptions {
  /** A target that has not answered within it is a retryable failure. */
  timeoutMs?: number;
  /** The deliverer's token, sent as `Authorization`; none without it. */
  token?: ServiceToken;
}

/**
 * POSTs `event` to `url` as a binary-mode CloudEvent: the contract of
 * Knative's KafkaSource, which the project's trigger and the direct mode
 * of `npm start` both follow, with the deliverer's bearer token. Resolves
 * on 2xx, throws DeliveryFailed. A token the target refuses (it expired
 * early, or the issuer's keys changed) is replaced by a fresh one, once.
 */
export async function deliverCloudEvent(url: string, event: OutgoingEvent, options: DeliveryOptions = {}): Promise<void> {
  const { timeoutMs = 10_000, token } = options;
  const headers = {
    'content-type': 'application/json',
    'ce-specversion': '1.0',
    'ce-id': event.id,
    'ce-type': event.type,
    'ce-source': event.source,
    ...(event.subject ? { 'ce-subject': event.subject } : {}),
  };
  const attempt = async (): Promise<{ res: Answer; authorization?: string }> => {
    let authorization: string | undefined;
    try {
      authorization = await token?.authorization();
    } catch (error) {
      // The identity provider being away costs time, never the message.
      throw new DeliveryFailed(undefined, true, `no deliverer token for ${url}: ${(error as Error).message}`);
    }
    try {
      return { res: await post(new URL(url), authorization ? { ...headers, authorization } : headers, event.data, timeoutMs), authorization };
    } catch (error) {
      const timedOut = error instanceof TimedOut;
      throw new DeliveryFailed(undefined, true, timedOut ? `${url} did not answer within ${timeoutMs} ms` : `${url} unreachable: ${(error as Error).message}`);
    }
  };
  const first = await attempt();
  let { res } = first;
  if (res.status === 401 && token && first.authorization) {
    token.refused(first.authorization);
    ({ res } = await attempt());
  }
  if (res.status >= 200 && res.status < 300) return;
  const retryable = res.status >= 500 || RETRYABLE.has(res.status);
  throw new DeliveryFailed(res.status, retryable, `${url} answered ${res.status}: ${res.body.slice(0, 500)}`, retryable ? retryAfterMs(res.retryAfter) : undefined);
}

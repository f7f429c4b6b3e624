import { Agent as HttpAgent, request as httpRequest, type IncomingMessage } from 'node:http';
import { Agent as HttpsAgent, request as httpsRequest } from 'node:https';

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
// starting), plus 425 Too Early; any other 4xx means the message itself is
// wrong and will never succeed.
const RETRYABLE = new Set([404, 408, 409, 425, 429]);

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

/**
 * POSTs `event` to `url` as a binary-mode CloudEvent: the contract of
 * Knative's KafkaSource, which the project's trigger and the direct mode
 * of `npm start` both follow. Resolves on 2xx, throws DeliveryFailed; a
 * target that has not answered within `timeoutMs` is a retryable failure.
 */
export async function deliverCloudEvent(url: string, event: OutgoingEvent, timeoutMs = 10_000): Promise<void> {
  let res: Answer;
  try {
    res = await post(
      new URL(url),
      {
        'content-type': 'application/json',
        'ce-specversion': '1.0',
        'ce-id': event.id,
        'ce-type': event.type,
        'ce-source': event.source,
        ...(event.subject ? { 'ce-subject': event.subject } : {}),
      },
      event.data,
      timeoutMs,
    );
  } catch (error) {
    const timedOut = error instanceof TimedOut;
    throw new DeliveryFailed(undefined, true, timedOut ? `${url} did not answer within ${timeoutMs} ms` : `${url} unreachable: ${(error as Error).message}`);
  }
  if (res.status >= 200 && res.status < 300) return;
  const retryable = res.status >= 500 || RETRYABLE.has(res.status);
  throw new DeliveryFailed(res.status, retryable, `${url} answered ${res.status}: ${res.body.slice(0, 500)}`, retryable ? retryAfterMs(res.retryAfter) : undefined);
}

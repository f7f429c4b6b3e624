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
function retryAfterMs(header: string | null): number | undefined {
  if (!header) return undefined;
  const seconds = Number(header);
  if (Number.isFinite(seconds) && seconds >= 0) return seconds * 1000;
  const date = Date.parse(header);
  return Number.isNaN(date) ? undefined : Math.max(0, date - Date.now());
}

/**
 * POSTs `event` to `url` as a binary-mode CloudEvent: the contract of
 * Knative's KafkaSource, which the project's trigger and the direct mode
 * of `npm start` both follow. Resolves on 2xx, throws DeliveryFailed; a
 * target that has not answered within `timeoutMs` is a retryable failure.
 */
export async function deliverCloudEvent(url: string, event: OutgoingEvent, timeoutMs = 10_000): Promise<void> {
  let res: Response;
  try {
    res = await fetch(url, {
      method: 'POST',
      headers: {
        'content-type': 'application/json',
        'ce-specversion': '1.0',
        'ce-id': event.id,
        'ce-type': event.type,
        'ce-source': event.source,
        ...(event.subject ? { 'ce-subject': event.subject } : {}),
      },
      body: event.data,
      signal: AbortSignal.timeout(timeoutMs),
    });
  } catch (error) {
    const timedOut = (error as Error).name === 'TimeoutError';
    throw new DeliveryFailed(undefined, true, timedOut ? `${url} did not answer within ${timeoutMs} ms` : `${url} unreachable: ${(error as Error).message}`);
  }
  const detail = await res.text().catch(() => '');
  if (res.ok) return;
  const retryable = res.status >= 500 || RETRYABLE.has(res.status);
  throw new DeliveryFailed(res.status, retryable, `${url} answered ${res.status}: ${detail.slice(0, 500)}`, retryable ? retryAfterMs(res.headers.get('retry-after')) : undefined);
}

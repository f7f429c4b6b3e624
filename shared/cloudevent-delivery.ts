/** A CloudEvent to deliver over HTTP; `data` is JSON text, sent as is. */
export interface OutgoingEvent {
  id: string;
  type: string;
  source: string;
  subject?: string;
  data: string;
}

/** A delivery that did not get a 2xx; `retryable` says whether trying again can help. */
export class DeliveryFailed extends Error {
  override name = 'DeliveryFailed';
  constructor(
    readonly status: number | undefined,
    readonly retryable: boolean,
    detail: string,
  ) {
    super(detail);
  }
}

// The statuses Knative's KafkaSource retries; any other 4xx means the
// message itself is wrong and will never succeed.
const RETRYABLE = new Set([404, 408, 409, 429]);

/**
 * POSTs `event` to `url` as a binary-mode CloudEvent: the contract of
 * Knative's KafkaSource, which the project's trigger and the direct mode
 * of `npm start` both follow. Resolves on 2xx, throws DeliveryFailed.
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
    throw new DeliveryFailed(undefined, true, `${url} unreachable: ${(error as Error).message}`);
  }
  const detail = await res.text().catch(() => '');
  if (res.ok) return;
  throw new DeliveryFailed(res.status, res.status >= 500 || RETRYABLE.has(res.status), `${url} answered ${res.status}: ${detail.slice(0, 500)}`);
}

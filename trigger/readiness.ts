/**
 * Whether the delivery target answers its readiness probe (`<target>/_/ready`,
 * which every function serves). The answer is kept for `cacheMs`, and
 * probes that come meanwhile share one check, so a busy prober costs the
 * target at most one request per `cacheMs`. Resolves to undefined when
 * ready, else to why not.
 */
export function targetReadiness(target: string, { timeoutMs = 1_000, cacheMs = 1_500 } = {}): () => Promise<string | undefined> {
  const url = `${target.replace(/\/+$/, '')}/_/ready`;
  let last: { at: number; answer: Promise<string | undefined> } | undefined;
  const check = async (): Promise<string | undefined> => {
    try {
      const res = await fetch(url, { signal: AbortSignal.timeout(timeoutMs) });
      await res.body?.cancel();
      return res.ok ? undefined : `${url} answered ${res.status}`;
    } catch (error) {
      return (error as Error).name === 'TimeoutError' ? `${url} did not answer within ${timeoutMs} ms` : `${url} unreachable: ${(error as Error).message}`;
    }
  };
  return () => {
    if (!last || Date.now() - last.at > cacheMs) last = { at: Date.now(), answer: check() };
    return last.answer;
  };
}

interface Waiting<Request, Result> {
  request: Request;
  resolve(value: Result): void;
  reject(error: unknown): void;
}

/**
 * Group commit: callers submit one request each; `run` handles many at once
 * (one transaction) and answers each, in the order given, with its own result. While one batch
 * runs, the next gathers, so batches size themselves to the load: a lone
 * request starts at once, a crowd shares one round trip. If `run` throws,
 * every caller of that batch gets its error.
 */
export class GroupCommit<Request, Result> {
  private gathering: Waiting<Request, Result>[] = [];
  private running = false;

  constructor(
    private readonly run: (batch: Request[]) => Promise<Result[]>,
    private readonly options: { maxBatch: number; onBatch?: (size: number) => void },
  ) {}

  /** Requests gathered for the next batch, not yet running. */
  get waiting(): number {
    return this.gathering.length;
  }

  submit(request: Request): Promise<Result> {
    return new Promise((resolve, reject) => {
      this.gathering.push({ request, resolve, reject });
      if (!this.running) void this.drain();
    });
  }

  private async drain(): Promise<void> {
    this.running = true;
    while (this.gathering.length > 0) {
      const batch = this.gathering.splice(0, this.options.maxBatch);
      this.options.onBatch?.(batch.length);
      try {
        const results = await this.run(batch.map((w) => w.request));
        batch.forEach((waiting, i) => waiting.resolve(results[i]!));
      } catch (error) {
        for (const waiting of batch) waiting.reject(error);
      }
    }
    this.running = false;
  }
}

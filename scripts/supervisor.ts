import { spawn, type ChildProcess } from 'node:child_process';

/** When a child that exited is started again, and when the supervisor stops trying. */
export interface RestartPolicy {
  /** Wait before the first restart; it doubles on each further exit, up to maxBackoffMs. */
  backoffMs: number;
  maxBackoffMs: number;
  /** A child that ran this long before it exited starts again from backoffMs. */
  healthyAfterMs: number;
  /** This many exits of one child within crashWindowMs, and the supervisor gives up on it. */
  maxCrashes: number;
  crashWindowMs: number;
}

export const defaultRestartPolicy: RestartPolicy = {
  backoffMs: 500,
  maxBackoffMs: 10_000,
  healthyAfterMs: 30_000,
  maxCrashes: 5,
  crashWindowMs: 60_000,
};

/** A long-running child: `node <args>` with `env`, known by `name` in the log. */
export interface ChildSpec {
  name: string;
  args: string[];
  env: NodeJS.ProcessEnv;
}

/** The child the supervisor gave up on, and why. */
export interface GiveUp {
  name: string;
  reason: string;
}

export interface SupervisorOptions {
  policy?: Partial<RestartPolicy>;
  /** How long a child may drain after SIGTERM before it gets SIGKILL. */
  stopTimeoutMs?: number;
  say: (line: string) => void;
}

export interface Supervisor {
  /** Starts the child and keeps it running; returns its pid. */
  launch(spec: ChildSpec): number | undefined;
  /** Resolves when a child kept crashing; it is not restarted again. */
  readonly gaveUp: Promise<GiveUp>;
  /**
   * SIGTERM to every child alive, SIGKILL to any still alive after the stop
   * timeout; resolves once all have exited: true when all left on SIGTERM.
   */
  stop(): Promise<boolean>;
  /** SIGKILL to every child alive, at once. */
  kill(): void;
}

interface Slot {
  spec: ChildSpec;
  child?: ChildProcess;
  exited: Promise<void>;
  startedAt: number;
  backoffMs: number;
  crashes: number[];
  restart?: NodeJS.Timeout;
}

const seconds = (ms: number) => `${ms / 1000} s`;

/**
 * Runs children the way a container platform runs containers: one that
 * exits is started again after a backoff, one that keeps crashing is given
 * up on, and stopping asks each to drain (SIGTERM) before it is killed.
 */
export function createSupervisor(options: SupervisorOptions): Supervisor {
  const policy = { ...defaultRestartPolicy, ...options.policy };
  const stopTimeoutMs = options.stopTimeoutMs ?? 15_000;
  const { say } = options;
  const slots: Slot[] = [];
  let stopping = false;
  let giveUp: (verdict: GiveUp) => void = () => undefined;
  const gaveUp = new Promise<GiveUp>((resolve) => (giveUp = resolve));

  function start(slot: Slot): number | undefined {
    slot.startedAt = Date.now();
    let exited: (how: string) => void = () => undefined;
    slot.exited = new Promise((resolve) => {
      let done = false;
      exited = (how) => {
        if (done) return;
        done = true;
        slot.child = undefined;
        resolve();
        afterExit(slot, how);
      };
    });
    try {
      // In the supervisor's process group, so a signal to the group reaches
      // every child even when the supervisor cannot pass it on.
      const child = spawn(process.execPath, slot.spec.args, { env: slot.spec.env, stdio: ['ignore', 'inherit', 'inherit'] });
      slot.child = child;
      child.once('exit', (code, signal) => exited(code === null ? `signal ${signal}` : `exit code ${code}`));
      child.once('error', (error) => {
        if (child.pid === undefined) exited(`not started: ${error.message}`);
      });
      return child.pid;
    } catch (error) {
      setImmediate(() => exited(`not started: ${(error as Error).message}`));
      return undefined;
    }
  }

  function afterExit(slot: Slot, how: string): void {
    if (stopping) return;
    const { name } = slot.spec;
    const now = Date.now();
    if (now - slot.startedAt >= policy.healthyAfterMs) slot.backoffMs = policy.backoffMs;
    slot.crashes = [...slot.crashes.filter((at) => now - at < policy.crashWindowMs), now];
    if (slot.crashes.length >= policy.maxCrashes) {
      say(`${name} exited (${how}); not restarting it`);
      giveUp({ name, reason: `it exited ${slot.crashes.length} times within ${seconds(policy.crashWindowMs)} (last: ${how})` });
      return;
    }
    say(`${name} exited (${how}); restarting in ${seconds(slot.backoffMs)}`);
    slot.restart = setTimeout(() => {
      slot.restart = undefined;
      say(`${name} restarted (pid ${start(slot)})`);
    }, slot.backoffMs);
    slot.backoffMs = Math.min(slot.backoffMs * 2, policy.maxBackoffMs);
  }

  async function stopChild(slot: Slot, child: ChildProcess): Promise<boolean> {
    child.kill('SIGTERM');
    // A stopped (SIGSTOP) child would not see the SIGTERM until continued.
    child.kill('SIGCONT');
    let timer: NodeJS.Timeout | undefined;
    const inTime = await Promise.race([
      slot.exited.then(() => true),
      new Promise<boolean>((resolve) => (timer = setTimeout(() => resolve(false), stopTimeoutMs))),
    ]);
    clearTimeout(timer);
    if (inTime) return true;
    say(`${slot.spec.name} (pid ${child.pid}) did not stop within ${seconds(stopTimeoutMs)} of SIGTERM; sending SIGKILL`);
    child.kill('SIGKILL');
    await slot.exited;
    return false;
  }

  function halt(): void {
    stopping = true;
    for (const slot of slots) clearTimeout(slot.restart);
  }

  return {
    launch(spec) {
      if (stopping) throw new Error(`not launching ${spec.name}: stopping`);
      const slot: Slot = { spec, exited: Promise.resolve(), startedAt: 0, backoffMs: policy.backoffMs, crashes: [] };
      slots.push(slot);
      return start(slot);
    },
    gaveUp,
    async stop() {
      halt();
      const running = slots.flatMap((slot) => (slot.child ? [stopChild(slot, slot.child)] : []));
      return (await Promise.all(running)).every(Boolean);
    },
    kill() {
      halt();
      for (const slot of slots) slot.child?.kill('SIGKILL');
    },
  };
}

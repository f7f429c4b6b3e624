import assert from 'node:assert/strict';
import { test } from 'node:test';
import { freePort, untilReady } from './functions.js';
import { createSupervisor, type SupervisorOptions } from './supervisor.js';

// The supervisor with real child processes: a small HTTP server standing in
// for a function (scripts/fixtures/box-office-window.ts), and `node -e`
// one-liners for children that exit by themselves.
const boxOfficeWindow = ['--import', 'tsx', 'scripts/fixtures/box-office-window.ts'];
const limit = { timeout: 120_000 };

function supervised(options: Omit<SupervisorOptions, 'say'>) {
  const lines: string[] = [];
  const supervisor = createSupervisor({ ...options, say: (line) => lines.push(line) });
  return {
    supervisor,
    lines,
    /** Waits for the `nth` log line matching `pattern`. */
    async line(pattern: RegExp, nth = 1): Promise<RegExpExecArray> {
      for (const deadline = Date.now() + 60_000; ; ) {
        const match = lines.map((line) => pattern.exec(line)).filter((m) => m !== null)[nth - 1];
        if (match) return match;
        if (Date.now() > deadline) assert.fail(`no line ${nth} matching ${pattern} in:\n${lines.join('\n')}`);
        await new Promise((resolve) => setTimeout(resolve, 20));
      }
    },
  };
}

const alive = (pid: number) => {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
};

const pidServing = async (port: number) => Number(await (await fetch(`http://127.0.0.1:${port}/`)).text());

test('a child killed with SIGKILL is started again under a new pid and serves again', limit, async (t) => {
  const { supervisor, lines, line } = supervised({});
  t.after(() => supervisor.kill());
  const port = await freePort();
  const pid = supervisor.launch({ name: 'box-office', args: boxOfficeWindow, env: { ...process.env, PORT: String(port) } });
  assert.ok(pid);
  await untilReady(`http://127.0.0.1:${port}`);
  assert.equal(await pidServing(port), pid);

  process.kill(pid, 'SIGKILL');
  const restarted = Number((await line(/^box-office restarted \(pid (\d+)\)$/))[1]);
  assert.notEqual(restarted, pid);
  assert.ok(lines.includes('box-office exited (signal SIGKILL); restarting in 0.5 s'), lines.join('\n'));
  await untilReady(`http://127.0.0.1:${port}`);
  assert.equal(await pidServing(port), restarted);
});

test('a child that keeps exiting is given up on at the crash limit and not started again', limit, async (t) => {
  const { supervisor, lines } = supervised({ policy: { backoffMs: 10, maxCrashes: 3, crashWindowMs: 60_000 } });
  t.after(() => supervisor.kill());
  supervisor.launch({ name: 'sold-out', args: ['-e', 'process.exit(3)'], env: process.env });

  const verdict = await supervisor.gaveUp;
  assert.equal(verdict.name, 'sold-out');
  assert.equal(verdict.reason, 'it exited 3 times within 60 s (last: exit code 3)');
  // Long enough for a fourth start to have happened and exited, were there one.
  await new Promise((resolve) => setTimeout(resolve, 500));
  assert.equal(lines.filter((l) => l.startsWith('sold-out exited')).length, 3, lines.join('\n'));
  assert.equal(lines.filter((l) => l.startsWith('sold-out restarted')).length, 2, lines.join('\n'));
});

test('the restart backoff doubles up to its cap while a child exits at once, and starts over after one that ran well', limit, async (t) => {
  const quick = supervised({ policy: { backoffMs: 20, maxBackoffMs: 80, healthyAfterMs: 60_000, maxCrashes: 100 } });
  const steady = supervised({ policy: { backoffMs: 20, maxBackoffMs: 80, healthyAfterMs: 500, maxCrashes: 100 } });
  t.after(() => quick.supervisor.kill());
  t.after(() => steady.supervisor.kill());
  quick.supervisor.launch({ name: 'flaky', args: ['-e', 'process.exit(1)'], env: process.env });
  steady.supervisor.launch({ name: 'steady', args: ['-e', 'setTimeout(() => process.exit(1), 600)'], env: process.env });

  const delays = async (run: ReturnType<typeof supervised>, count: number) => {
    await run.line(/restarting in/, count);
    await run.supervisor.stop();
    return run.lines.flatMap((l) => /restarting in (\S+) s$/.exec(l)?.[1] ?? []).slice(0, count);
  };
  assert.deepEqual(await delays(quick, 5), ['0.02', '0.04', '0.08', '0.08', '0.08']);
  assert.deepEqual(await delays(steady, 3), ['0.02', '0.02', '0.02']);
});

test('stopping drains children with SIGTERM, kills one that ignores it after the timeout, and restarts none', limit, async (t) => {
  const { supervisor, lines } = supervised({ stopTimeoutMs: 300 });
  t.after(() => supervisor.kill());
  const [drains, stuck] = [await freePort(), await freePort()];
  const drainingPid = supervisor.launch({ name: 'draining', args: boxOfficeWindow, env: { ...process.env, PORT: String(drains) } });
  const stuckPid = supervisor.launch({ name: 'stuck', args: boxOfficeWindow, env: { ...process.env, PORT: String(stuck), SIGTERM: 'ignore' } });
  assert.ok(drainingPid && stuckPid);
  await untilReady(`http://127.0.0.1:${drains}`);
  await untilReady(`http://127.0.0.1:${stuck}`);

  assert.equal(await supervisor.stop(), false, 'a stop that needed SIGKILL is not clean');
  assert.equal(alive(drainingPid), false);
  assert.equal(alive(stuckPid), false);
  assert.deepEqual(lines, [`stuck (pid ${stuckPid}) did not stop within 0.3 s of SIGTERM; sending SIGKILL`]);
});

test('stopping children that all drain on SIGTERM is clean', limit, async (t) => {
  const { supervisor, lines } = supervised({});
  t.after(() => supervisor.kill());
  const port = await freePort();
  const pid = supervisor.launch({ name: 'draining', args: boxOfficeWindow, env: { ...process.env, PORT: String(port) } });
  assert.ok(pid);
  await untilReady(`http://127.0.0.1:${port}`);

  assert.equal(await supervisor.stop(), true);
  assert.equal(alive(pid), false);
  assert.deepEqual(lines, []);
});

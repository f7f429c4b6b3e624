import { failures, faults, formatTable, runScenario, sizing, startHarness, type Row } from './chaos/index.js';

// `npm run chaos [-- [--quick] <scenario>...]`: the fault suite of issue 8
// on a real Postgres and Kafka (see scripts/chaos/index.ts). Prints one row
// per scenario and exits 1 when any row lost, doubled or dead-lettered a
// booking, saw a 500 or a crash, or did not recover by itself.

const args = process.argv.slice(2);
const quick = args.includes('--quick');
const wanted = args.filter((arg) => !arg.startsWith('--'));
const unknown = wanted.filter((name) => !faults.some((fault) => fault.name === name));
if (unknown.length || args.includes('--help')) {
  console.error(`usage: npm run chaos -- [--quick] [scenario...]\nscenarios:\n${faults.map((f) => `  ${f.name.padEnd(22)} ${f.what}`).join('\n')}`);
  process.exit(unknown.length ? 2 : 0);
}
const chosen = wanted.length ? faults.filter((fault) => wanted.includes(fault.name)) : faults;
const began = Date.now();
const say = (line: string) => console.log(`[chaos ${((Date.now() - began) / 1000).toFixed(1).padStart(6)} s] ${line}`);

say('starting Kafka (or using KAFKA_BROKERS), an embedded Postgres and a token issuer of this run');
const harness = await startHarness();
for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.once(signal, () => {
    say(`${signal}: stopping everything this run started`);
    harness.closeNow();
    void harness.close().finally(() => process.exit(130));
  });
}

const rows: Row[] = [];
try {
  for (const fault of chosen) {
    const row = await runScenario(harness, fault, quick ? sizing.quick : sizing.full, { progress: say });
    rows.push(row);
    say(`${fault.name}: ${row.skipped ?? (failures(row).length ? `FAIL (${failures(row).join(', ')})` : 'ok')}`);
  }
} finally {
  await harness.close();
}
console.log(`\n${formatTable(rows)}`);
process.exit(rows.some((row) => failures(row).length) ? 1 : 0);

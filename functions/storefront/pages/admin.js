import { api, button, el, renderAccount, signIn, signInState } from './auth.js';

// The operator view (admin only, as the summary API decides): the events
// with the tickets sold, pending and left, the waiting rooms of on-sales,
// both refreshed every 5 s while the tab is visible, and the load-test
// history as SVG charts.
const svgNs = 'http://www.w3.org/2000/svg';
const colours = ['#1a5fb4', '#c64600', '#26a269', '#813d9c'];
const session = await signInState();
renderAccount(document.getElementById('account'), session);
const { user } = session;
const gate = document.getElementById('gate');

if (!user) {
  gate.append(el('p', 'The operator view is for box-office staff: sign in as an admin.'), button('Sign in', () => signIn(session.manager)));
} else if (await summary()) {
  setInterval(() => { if (!document.hidden) void summary(); }, 5_000);
  await charts();
}

/** Draws the summary; false when the API refuses this user (403: not an admin), having said so. */
async function summary() {
  const { status, body } = await api(user, 'GET', '/api/v1/admin/events?limit=500');
  if (status === 403) {
    gate.replaceChildren(el('p', 'Admins only: the operator view is for box-office staff, and this account is not an admin.', { class: 'status bad', role: 'alert' }));
    return false;
  }
  if (status !== 200) {
    gate.replaceChildren(el('p', `The summary could not be read (${status}${body?.detail ? `: ${body.detail}` : ''}); trying again shortly.`, { class: 'status bad' }));
    return true;
  }
  gate.replaceChildren();
  const updated = el('p', `Updated ${new Date().toLocaleTimeString()}; refreshed every 5 seconds.`, { class: 'muted' });
  document.getElementById('sales-table').replaceChildren(table('Every event: tickets sold (confirmed), pending (booked, not yet confirmed) and left', ['Event', 'Sold', 'Pending', 'Left', 'Capacity'],
    body.map((event) => [event.event, event.sold, event.pending, event.left, event.capacity])), updated);
  document.getElementById('sales').hidden = false;
  const rooms = body.filter((event) => event.waitingRoom);
  document.getElementById('rooms').replaceChildren(rooms.length
    ? table('Events sold through a waiting room: who waits, the passes open now, and everyone admitted so far', ['Event', 'Sale starts', 'Waiting', 'Active passes', 'Admitted so far', 'Admits'],
      rooms.map(({ event, waitingRoom: room }) => [event, new Date(room.startsAt).toLocaleString(), room.waiting, `${room.activePasses} of ${room.maxActive}`, room.admitted, `${room.admitPerMinute}/min`]))
    : el('p', 'No event sells through a waiting room.'));
  document.getElementById('room').hidden = false;
  return true;
}

function table(caption, titles, rows) {
  const t = el('table');
  const head = el('tr');
  for (const title of titles) head.append(el('th', title, { scope: 'col' }));
  t.append(el('caption', caption, { class: 'muted' }), head);
  for (const cells of rows) {
    const row = el('tr');
    row.append(...cells.map((cell) => el('td', String(cell))));
    t.append(row);
  }
  return t;
}

function svg(tag, attributes = {}, text) {
  const e = document.createElementNS(svgNs, tag);
  for (const [name, value] of Object.entries(attributes)) e.setAttribute(name, String(value));
  if (text !== undefined) e.textContent = text;
  return e;
}

/** A line chart of `series` ({ name, points: [{ x: run index, y }] }), on a log scale when the values span decades. */
function lineChart(title, unit, runs, series) {
  const [width, height, left, bottom] = [640, 240, 60, 30];
  const values = series.flatMap((s) => s.points.map((p) => p.y)).filter((y) => y > 0);
  const log = Math.max(...values) / Math.min(...values) > 20;
  const scale = (y) => (log ? Math.log10(y) : y);
  const [low, high] = [Math.min(...values.map(scale), log ? Infinity : 0), Math.max(...values.map(scale))];
  const x = (i) => left + (runs.length === 1 ? (width - left) / 2 : (i * (width - left - 20)) / (runs.length - 1));
  const y = (v) => height - bottom - ((scale(v) - low) / (high - low || 1)) * (height - bottom - 10);
  const chart = svg('svg', { viewBox: `0 0 ${width} ${height + 20 * series.length}`, role: 'img', 'aria-label': `${title}: ${series.map((s) => `${s.name} ${s.points.map((p) => p.y).join(', ')}`).join('; ')} ${unit}` });
  chart.append(svg('line', { x1: left, y1: height - bottom, x2: width, y2: height - bottom, stroke: '#555' }), svg('line', { x1: left, y1: 0, x2: left, y2: height - bottom, stroke: '#555' }));
  chart.append(svg('text', { x: 4, y: 14, 'font-size': 12 }, `${unit}${log ? ' (log)' : ''}`));
  for (const v of [log ? 10 ** low : 0, log ? 10 ** high : high]) chart.append(svg('text', { x: 4, y: y(Math.max(v, 1e-9)) + 4, 'font-size': 11 }, String(Math.round(v))));
  runs.forEach((run, i) => chart.append(svg('text', { x: x(i) - 20, y: height - bottom + 16, 'font-size': 11 }, run.at.slice(5, 10))));
  series.forEach((s, n) => {
    const colour = colours[n % colours.length];
    const points = s.points.filter((p) => p.y > 0);
    chart.append(svg('polyline', { points: points.map((p) => `${x(p.x)},${y(p.y)}`).join(' '), fill: 'none', stroke: colour, 'stroke-width': 2 }));
    for (const p of points) chart.append(svg('circle', { cx: x(p.x), cy: y(p.y), r: 3.5, fill: colour }));
    chart.append(svg('rect', { x: left, y: height + 20 * n, width: 12, height: 12, fill: colour }), svg('text', { x: left + 18, y: height + 20 * n + 11, 'font-size': 12 }, s.name));
  });
  const figure = el('figure', undefined, { class: 'chart' });
  figure.append(el('figcaption', title), chart);
  return figure;
}

async function charts() {
  const history = await fetch('/load-history.json').then((res) => res.json());
  const section = document.getElementById('charts');
  if (history.length === 0) return void section.replaceChildren(el('p', 'No load-test results here (load/results/ is kept in the repository, not in the containers).'));
  const byFunction = new Map();
  for (const run of history) {
    const key = run.scenario ? `${run.function} (${run.scenario})` : run.function;
    byFunction.set(key, [...(byFunction.get(key) ?? []), run]);
  }
  const figures = [];
  for (const [name, runs] of byFunction) {
    const baselineNames = [...new Set(runs.flatMap((run) => Object.keys(run.baselines)))];
    const series = (metric) => [
      { name, points: runs.map((run, i) => ({ x: i, y: run[metric] })) },
      ...baselineNames.map((b) => ({ name: `${b} (same run)`, points: runs.map((run, i) => ({ x: i, y: run.baselines[b]?.[metric] ?? 0 })) })),
    ];
    const heading = el('h3', name);
    figures.push(heading, lineChart(`${name}: requests per second`, 'req/s', runs, series('requestsPerSecond')), lineChart(`${name}: p99 latency`, 'ms', runs, series('latencyP99Ms')));
  }
  section.replaceChildren(...figures);
}

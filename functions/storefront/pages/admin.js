import { api, button, el, renderAccount, signIn, signInState } from './auth.js';

// The operator view (realm role admin): the events with what is left, the
// waiting rooms' settings, and the load-test history as SVG charts.
const svgNs = 'http://www.w3.org/2000/svg';
const colours = ['#1a5fb4', '#c64600', '#26a269', '#813d9c'];
const session = await signInState();
renderAccount(document.getElementById('account'), session);
const { user } = session;
const gate = document.getElementById('gate');
const roles = user?.profile.realm_access?.roles ?? [];

if (!user) {
  gate.append(el('p', 'The operator view is for box-office staff: sign in as an admin.'), button('Sign in', () => signIn(session.manager)));
} else if (!roles.includes('admin')) {
  gate.append(el('p', 'Only an admin may see the operator view.', { class: 'status bad' }));
} else {
  await Promise.all([events(), charts()]);
}

async function events() {
  const { status, body } = await api(user, 'GET', '/api/v1/inventory/events');
  if (status !== 200) return;
  const table = el('table');
  const head = el('tr');
  for (const title of ['Event', 'Venue', 'Left', 'Per customer', 'On sale']) head.append(el('th', title, { scope: 'col' }));
  table.append(el('caption', 'Every event, with the tickets left', { class: 'muted' }), head);
  for (const event of body) {
    const row = el('tr');
    row.append(el('td', event.event), el('td', event.venue.name), el('td', String(event.capacity)), el('td', event.maxTicketsPerCustomer ? String(event.maxTicketsPerCustomer) : '-'), el('td', event.onSale ? `${new Date(event.onSale.startsAt).toLocaleString()}, ${event.onSale.admitPerMinute}/min, at most ${event.onSale.maxActive} active` : '-'));
    table.append(row);
  }
  document.getElementById('sales-table').replaceChildren(table);
  document.getElementById('sales').hidden = false;
  const rooms = body.filter((event) => event.onSale);
  document.getElementById('rooms').replaceChildren(rooms.length ? el('p', `${rooms.length} events sell through a waiting room (see the table).`) : el('p', 'No event sells through a waiting room.'));
  document.getElementById('room').hidden = false;
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

import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { mkdir, readFile } from 'node:fs/promises';
import { after, before, test } from 'node:test';
import puppeteer, { type Browser, type Page } from 'puppeteer-core';
import { startNpmStart, type StartedSystem } from '../../shared/test-support/npm-start.js';

// The pages as a customer and an operator use them: a real headless
// Chromium (Debian's package) against a real `npm start` on a database of its
// own: browse, sign in at the dev issuer, book, see it confirmed, cancel; the
// operator's summary (admins only) and charts. Every page passes axe-core with no serious or critical
// violation, and is kept as a screenshot in .data/screenshots/.
const chromium = '/usr/bin/chromium';
const screenshots = '.data/screenshots';
const missing = existsSync(chromium) ? undefined : `${chromium} is not installed (apt-get install chromium; .ci/run does): the storefront is not tried in a browser`;
if (missing && process.env.CI === 'true') throw new Error(`under CI=true nothing skips: ${missing}`);
if (missing) console.warn(`\n*** SKIPPED: ${missing} ***\n`);
const browserTest = missing ? (name: string, _fn: () => Promise<void>) => test(name, { skip: `SKIPPED: ${missing}` }, () => undefined) : (name: string, fn: () => Promise<void>) => test(name, { timeout: 180_000 }, fn);

let gateway = '';
let browser: Browser;
let system: StartedSystem | undefined;

before(async () => {
  if (missing) return;
  system = await startNpmStart('storefront', { OIDC_ISSUER: '' });
  gateway = system.gateway;
  browser = await puppeteer.launch({ executablePath: chromium, headless: true, args: ['--no-sandbox', '--disable-dev-shm-usage'] });
  await mkdir(screenshots, { recursive: true });
});

after(async () => {
  await browser?.close();
  await system?.stop();
});

const axeSource = readFile(new URL(import.meta.resolve('axe-core/axe.min.js')), 'utf8');

/** axe-core's serious and critical violations on the page as it is now (none expected), and a screenshot of it. */
async function check(page: Page, name: string): Promise<void> {
  await page.screenshot({ path: `${screenshots}/${name}.png`, fullPage: true });
  // Evaluated by the DevTools protocol, which the pages' Content-Security-Policy does not govern.
  await page.evaluate(await axeSource);
  const violations = await page.evaluate(`axe.run().then(({ violations }) => violations
    .filter((v) => v.impact === 'serious' || v.impact === 'critical')
    .map((v) => v.id + ' (' + v.impact + '): ' + v.help + ' at ' + v.nodes.map((n) => n.target.join(' ')).join(', ')))`);
  assert.deepEqual(violations, [], `${name}: accessibility violations`);
}

/** Waits until the element `selector` says `text` (the pages answer asynchronously). */
async function waitForText(page: Page, selector: string, text: RegExp, timeout = 30_000): Promise<void> {
  await page.waitForFunction(`${text}.test(document.querySelector(${JSON.stringify(selector)})?.textContent ?? '')`, { timeout });
}

const statusText = (page: Page) => page.$eval('[role=status]', (e) => e.textContent ?? '');

browserTest('a customer browses the events, signs in as alice, books 2 tickets, sees them CONFIRMED and cancels them', async () => {
  const context = await browser.createBrowserContext();
  const page = await context.newPage();
  const problems: string[] = [];
  page.on('pageerror', (error) => problems.push(String(error)));
  await page.setViewport({ width: 1024, height: 768 });

  await page.goto(`${gateway}/`);
  await page.waitForSelector('.cards li a');
  const events = await page.$$eval('.cards li', (items) => items.map((i) => i.textContent ?? ''));
  assert.ok(events.some((text) => /Late Night Jazz Trio.*10 tickets left/.test(text)), `the demo events with what is left: ${events.join(' | ')}`);
  // Keyboard alone: the first Tab reaches the skip link, which leads to the content.
  await page.keyboard.press('Tab');
  assert.equal(await page.evaluate('document.activeElement?.textContent'), 'Skip to content');
  await check(page, 'events');

  await page.click('a[href="#/event/2"]');
  await page.waitForSelector('form[aria-label="Book tickets"]');
  const facts = await page.$eval('dl', (e) => e.textContent ?? '');
  assert.match(facts, /The Cellar Club.*12 Vine Lane.*19\.99/);
  await page.click('form[aria-label="Book tickets"] button[type=submit]');
  await waitForText(page, '[role=status]', /Sign in to book/);
  await check(page, 'event');

  await page.click('#account button');
  await page.waitForSelector('button[value=alice]');
  assert.match(await page.content(), /Development only/);
  await check(page, 'sign-in');
  await Promise.all([page.waitForNavigation(), page.click('button[value=alice]')]);
  await waitForText(page, '#account', /Signed in as alice/);
  assert.equal(new URL(page.url()).hash, '#/event/2', 'back on the event page, without the code in the address');
  assert.equal(new URL(page.url()).search, '');

  await page.waitForSelector('#ticket-count');
  await page.click('#ticket-count', { clickCount: 3 });
  await page.keyboard.type('2');
  await page.click('form[aria-label="Book tickets"] button[type=submit]');
  await waitForText(page, '[role=status]', /CONFIRMED/, 60_000);
  assert.match(await statusText(page), /Booking CONFIRMED: 2 tickets, 39\.98/);
  await waitForText(page, 'main', /8 tickets left/);
  await check(page, 'booked');

  await page.click('a[href="#/bookings"]');
  await page.waitForSelector('table');
  const row = () => page.$eval('table tr:nth-of-type(2)', (r) => [...r.querySelectorAll('td')].map((td) => td.textContent ?? ''));
  assert.deepEqual((await row()).filter((_, i) => [2, 3, 5].includes(i)), ['2', '39.98', 'CONFIRMED']);
  await check(page, 'bookings');
  await page.click('table tr:nth-of-type(2) button');
  await waitForText(page, '[role=status]', /Booking cancelled/);
  assert.equal((await row())[5], 'CANCELLED');
  const left = (await (await fetch(`${gateway}/api/v1/inventory/event/2`)).json()) as { capacity: number };
  assert.equal(left.capacity, 10, 'the cancelled tickets are back on sale');
  await check(page, 'cancelled');

  // A phone-sized screen: nothing wider than it.
  await page.setViewport({ width: 375, height: 667, isMobile: true, hasTouch: true });
  await page.goto(`${gateway}/`);
  await page.waitForSelector('.cards li a');
  assert.ok(await page.evaluate('document.documentElement.scrollWidth <= window.innerWidth'), 'no sideways scrolling on a phone');
  await check(page, 'events-phone');
  assert.deepEqual(problems, [], 'no script errors');
  await context.close();
});

/** The bearer token oidc-client-ts keeps for the signed-in user of `page`. */
async function accessToken(page: Page): Promise<string> {
  return page.evaluate(`JSON.parse(sessionStorage.getItem(Object.keys(sessionStorage).find((k) => k.startsWith('oidc.user:'))) ?? '{}').access_token`) as Promise<string>;
}

/** Signs in at the operator view's gate as one of the dev issuer's demo users. */
async function signInToOperatorView(page: Page, who: string): Promise<void> {
  await page.goto(`${gateway}/admin.html`);
  await waitForText(page, '#gate', /sign in as an admin/);
  await page.click('#gate button');
  await page.waitForSelector(`button[value="${who}"]`);
  await Promise.all([page.waitForNavigation(), page.click(`button[value="${who}"]`)]);
  // The sign-in comes back to / and goes on to the page it started from.
  await page.waitForFunction(`document.getElementById('load-title') && /Signed in as ${who}/.test(document.querySelector('#account')?.textContent ?? '')`, { timeout: 30_000 });
}

/** The cells of the operator table `selector`'s row that starts with `first`. */
async function rowOf(page: Page, selector: string, first: string): Promise<string[] | undefined> {
  const rows = await page.$$eval(`${selector} tr`, (trs) => trs.map((tr) => [...tr.querySelectorAll('td')].map((td) => td.textContent ?? '')));
  return rows.find((cells) => cells[0] === first);
}

browserTest('a customer (alice) opening the operator view is told it is for admins only, as the summary API answers 403', async () => {
  const context = await browser.createBrowserContext();
  const page = await context.newPage();
  await page.setViewport({ width: 1024, height: 768 });
  await signInToOperatorView(page, 'alice');
  await waitForText(page, '#gate', /Admins only/);
  assert.equal(await page.$eval('#sales', (e) => e.hasAttribute('hidden')), true, 'no summary for a customer');
  await check(page, 'operator-customer');
  await context.close();
});

browserTest('an admin signs in to the operator view and sees the events with sold, pending and left, the waiting rooms, and the load-test history as charts beside the same-run baselines', async () => {
  // alice books 3 tickets of the Symphony, and joins the waiting room of the Final, made an on-sale by the admin below.
  const customer = await browser.createBrowserContext();
  const alicePage = await customer.newPage();
  await signInToOperatorView(alicePage, 'alice');
  const alice = { authorization: `Bearer ${await accessToken(alicePage)}`, 'content-type': 'application/json' };
  await customer.close();
  const booked = await fetch(`${gateway}/api/v1/booking`, { method: 'POST', headers: alice, body: JSON.stringify({ userId: 1, eventId: 1, ticketCount: 3 }) });
  assert.equal(booked.status, 201, await booked.text());

  const context = await browser.createBrowserContext();
  const page = await context.newPage();
  await page.setViewport({ width: 1024, height: 768 });
  const problems: string[] = [];
  page.on('pageerror', (error) => problems.push(String(error)));
  page.on('console', (message) => problems.push(message.text()));
  await signInToOperatorView(page, 'admin-ana');
  const admin = { authorization: `Bearer ${await accessToken(page)}`, 'content-type': 'application/json' };
  const onSale = { startsAt: new Date(Date.now() + 3_600_000).toISOString(), admitPerMinute: 60, maxActive: 50, passMinutes: 10 };
  const patched = await fetch(`${gateway}/api/v1/inventory/event/3`, { method: 'PATCH', headers: admin, body: JSON.stringify({ onSale }) });
  assert.equal(patched.status, 200, await patched.text());
  const joined = await fetch(`${gateway}/api/v1/queue/3`, { method: 'POST', headers: alice });
  assert.equal(joined.status, 201, await joined.text());

  await page.waitForSelector('#charts figure svg polyline').catch((error: Error) => assert.fail(`no chart: ${error.message}; ${problems.join('; ')}; ${system?.output().slice(-2000)}`));
  // Sold and pending together are alice's 3 (pending until the order consumer confirms), and the page refreshes itself.
  const symphonyCells = (n: number, text: string) => `[...document.querySelectorAll('#sales-table tr')].some((tr) => tr.cells[0]?.textContent === 'Symphony at the Harbour' && tr.cells[${n}]?.textContent === '${text}')`;
  await page.waitForFunction(symphonyCells(3, '4997'), { timeout: 30_000 });
  const symphony = await rowOf(page, '#sales-table', 'Symphony at the Harbour');
  assert.ok(symphony && Number(symphony[1]) + Number(symphony[2]) === 3 && symphony[4] === '5000', `sold + pending 3 of 5000: ${symphony?.join(' | ')}`);
  await page.waitForFunction(symphonyCells(1, '3'), { timeout: 60_000 });
  assert.deepEqual((await rowOf(page, '#sales-table', 'Symphony at the Harbour'))?.slice(1, 4), ['3', '0', '4997'], 'once confirmed, all 3 sold');
  await waitForText(page, '#rooms', /Championship Final/);
  const room = await rowOf(page, '#rooms', 'Championship Final');
  assert.deepEqual(room?.slice(2, 5), ['1', '0 of 50', '0'], `alice waits, no pass is open, none admitted: ${room?.join(' | ')}`);

  const functionsCharted = await page.$$eval('#charts h3', (headings) => headings.map((h) => h.textContent ?? ''));
  assert.ok(functionsCharted.includes('get-event'), `a chart per function: ${functionsCharted.join(', ')}`);
  const legends = await page.$$eval('#charts figure', (figures) => figures.map((f) => f.textContent ?? ''));
  assert.ok(legends.some((text) => /ff-hello \(same run\)/.test(text)), 'the same-run baselines are drawn beside the function');
  await check(page, 'operator');
  // The README's picture: the summary and the waiting rooms, the viewport only (a full page of charts is too large to keep).
  await page.screenshot({ path: `${screenshots}/operator-summary.png`, clip: await page.$eval('#room', (e) => ({ x: 0, y: 0, width: 1024, height: Math.ceil(e.getBoundingClientRect().bottom + 16) })) });
  assert.deepEqual(problems, [], 'no script errors');
  await context.close();
});

import { api, button, el, money, renderAccount, signIn, signInState } from './auth.js';

// The storefront: hash routes #/ (events), #/event/<id>, #/bookings.
const main = document.getElementById('content');
const session = await signInState();
renderAccount(document.getElementById('account'), session);
const { user } = session;
let refresh;

window.addEventListener('hashchange', () => route(true));
await route(false);

async function route(moveFocus) {
  clearInterval(refresh);
  const hash = location.hash || '#/';
  const event = /^#\/event\/(\d+)$/.exec(hash);
  if (event) await eventPage(Number(event[1]));
  else if (hash === '#/bookings') await bookingsPage();
  else await eventsPage();
  // A new page's heading is where a keyboard or screen-reader user goes next.
  if (moveFocus) main.focus();
}

/** The events with the tickets left, refreshed every 5 s while the tab is visible. */
async function eventsPage() {
  document.title = 'Events · boxoffice';
  const heading = el('h1', 'Events');
  const list = el('ul', undefined, { class: 'cards', 'aria-live': 'polite', 'aria-busy': 'true' });
  main.replaceChildren(heading, list);
  const draw = async () => {
    const { status, body } = await api(null, 'GET', '/api/v1/inventory/events').catch(() => ({ status: 0 }));
    list.setAttribute('aria-busy', 'false');
    if (status !== 200) return void list.replaceChildren(el('li', 'The events cannot be loaded right now; trying again shortly.', { class: 'status bad' }));
    list.replaceChildren(...body.map((event) => {
      const item = el('li', undefined, { class: 'card' });
      const title = el('h2');
      title.append(el('a', event.event, { href: `#/event/${event.eventId}` }));
      item.append(title, el('p', `${event.venue.name} · ${money(event.ticketPrice)}`), leftText(event.capacity));
      return item;
    }));
  };
  await draw();
  refresh = setInterval(() => { if (!document.hidden) void draw(); }, 5_000);
}

function leftText(left) {
  return left > 0 ? el('p', `${left} tickets left`, { class: 'left' }) : el('p', 'Sold out', { class: 'soldout' });
}

/** One event: venue, price, what is left, and booking. */
async function eventPage(eventId) {
  const { status, body: event } = await api(null, 'GET', `/api/v1/inventory/event/${eventId}`);
  if (status !== 200) {
    main.replaceChildren(el('h1', 'Event not found'), el('p', `There is no event ${eventId}.`), link('#/', 'Back to the events'));
    return;
  }
  document.title = `${event.event} · boxoffice`;
  const left = el('p');
  const showLeft = (capacity) => left.replaceChildren(leftText(capacity));
  showLeft(event.capacity);
  const facts = el('dl');
  for (const [term, value] of [['Venue', event.venue.name], ['Address', event.venue.address], ['Price per ticket', money(event.ticketPrice)], ...(event.maxTicketsPerCustomer ? [['Per customer', `at most ${event.maxTicketsPerCustomer}`]] : []), ...(event.onSale ? [['On sale', `${new Date(event.onSale.startsAt).toLocaleString()} through a waiting room`]] : [])]) {
    facts.append(el('dt', term), el('dd', value));
  }
  const outcome = el('div', undefined, { role: 'status', 'aria-live': 'polite' });
  const form = el('form', undefined, { class: 'inline', 'aria-label': 'Book tickets' });
  const count = el('input', undefined, { id: 'ticket-count', name: 'ticketCount', type: 'number', min: '1', max: '50', value: '2', required: '', inputmode: 'numeric' });
  const label = el('label', 'Tickets', { for: 'ticket-count' });
  const field = el('div');
  field.append(label, count);
  const submit = el('button', 'Book', { type: 'submit' });
  form.append(field, submit);
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    submit.disabled = true;
    try {
      await book(event, Number(count.value), outcome);
    } finally {
      submit.disabled = false;
      const fresh = await api(null, 'GET', `/api/v1/inventory/event/${eventId}`);
      if (fresh.status === 200) showLeft(fresh.body.capacity);
    }
  });
  main.replaceChildren(el('h1', event.event), facts, left, el('h2', 'Book tickets'), form, outcome, link('#/', 'Back to the events'));
}

function link(href, text) {
  const p = el('p');
  p.append(el('a', text, { href }));
  return p;
}

function say(outcome, text, kind = '') {
  outcome.className = `status ${kind}`;
  outcome.replaceChildren(el('p', text));
}

/** Books, and tells what became of it: booked then confirmed, sold out, over the limit, the waiting room, not signed in. */
async function book(event, ticketCount, outcome) {
  if (!user) {
    say(outcome, 'Sign in to book tickets.', 'bad');
    outcome.append(button('Sign in', () => signIn(session.manager)));
    return;
  }
  const pass = sessionStorage.getItem(`queue-pass:${event.eventId}`);
  const answer = await api(user, 'POST', '/api/v1/booking', {
    body: { userId: user.profile.customer_id, eventId: event.eventId, ticketCount },
    headers: { 'Idempotency-Key': crypto.randomUUID(), ...(pass ? { 'Queue-Pass': pass } : {}) },
  }).catch(() => ({ status: 0, body: undefined }));
  const type = String(answer.body?.type ?? '').replace('urn:boxoffice:problem:', '');
  if (answer.status === 201) return confirmation(answer.body, outcome);
  if (answer.status === 401) return say(outcome, 'Your sign-in has expired: sign in again to book.', 'bad');
  if (answer.status === 409 && type === 'ticket-limit-reached') return say(outcome, `Over the limit: this event allows ${answer.body.limit} tickets per customer; you may book ${answer.body.mayStillBook} more.`, 'bad');
  if (answer.status === 409) return say(outcome, `Sold out: not enough tickets left for ${ticketCount}. ${answer.body?.detail ?? ''}`, 'bad');
  if (answer.status === 403 && type.startsWith('queue-pass')) {
    sessionStorage.removeItem(`queue-pass:${event.eventId}`);
    return waitingRoom(event, outcome);
  }
  say(outcome, `The booking did not go through: ${answer.body?.detail ?? answer.body?.title ?? 'the service is not answering'}. Please try again.`, 'bad');
}

/** A booking is accepted PENDING; its order follows within moments. */
async function confirmation(booking, outcome) {
  say(outcome, `Booked ${booking.ticketCount} tickets (${money(booking.totalPrice)}): waiting for confirmation…`);
  for (let attempt = 0; attempt < 60; attempt++) {
    await new Promise((resolve) => setTimeout(resolve, 1_000));
    const { status, body } = await api(user, 'GET', `/api/v1/booking/${booking.bookingId}`);
    if (status === 200 && body.status === 'CONFIRMED') return say(outcome, `Booking CONFIRMED: ${booking.ticketCount} tickets, ${money(booking.totalPrice)}, order ${body.orderId}. See My bookings.`, 'ok');
    if (status === 200 && body.status === 'FAILED') return say(outcome, 'The booking failed and its tickets were given back.', 'bad');
  }
  say(outcome, 'Booked; the confirmation is taking longer than usual. My bookings shows its status.');
}

/** The event sells through a waiting room: join it, show the place and the estimated wait, and offer booking once admitted. */
async function waitingRoom(event, outcome) {
  const joined = await api(user, 'POST', `/api/v1/queue/${event.eventId}`);
  if (joined.status !== 200 && joined.status !== 201) return say(outcome, `The waiting room cannot be joined: ${joined.body?.detail ?? 'try again shortly'}.`, 'bad');
  const show = (place) => {
    if (place.status === 'ADMITTED') {
      sessionStorage.setItem(`queue-pass:${event.eventId}`, place.pass);
      clearInterval(refresh);
      return say(outcome, 'It is your turn: book now, before your pass expires.', 'ok');
    }
    say(outcome, `You are in the waiting room: number ${place.position} in line, about ${Math.ceil((place.estimatedWaitSeconds ?? 0) / 60)} min to wait. This page updates by itself.`);
  };
  show(joined.body);
  refresh = setInterval(async () => {
    const place = await api(user, 'GET', `/api/v1/queue/${event.eventId}`);
    if (place.status === 200) show(place.body);
  }, 5_000);
}

/** The customer's bookings and orders, with their status, and cancellation. */
async function bookingsPage() {
  document.title = 'My bookings · boxoffice';
  const heading = el('h1', 'My bookings');
  if (!user) {
    main.replaceChildren(heading, el('p', 'Sign in to see your bookings and orders.'), button('Sign in', () => signIn(session.manager)));
    return;
  }
  const { status, body: orders } = await api(user, 'GET', '/api/v1/orders');
  if (status !== 200) return void main.replaceChildren(heading, el('p', 'Your orders cannot be loaded right now.', { class: 'status bad' }));
  if (orders.length === 0) return void main.replaceChildren(heading, el('p', 'No bookings yet.'), link('#/', 'Find an event'));
  const table = el('table');
  const caption = el('caption', 'Your orders, newest first', { class: 'muted' });
  const head = el('tr');
  for (const title of ['Order', 'Event', 'Tickets', 'Total', 'Placed', 'Status', '']) head.append(el('th', title, { scope: 'col' }));
  table.append(caption, head);
  const outcome = el('div', undefined, { role: 'status', 'aria-live': 'polite' });
  for (const order of orders) {
    const row = el('tr');
    const eventCell = el('td');
    eventCell.append(el('a', `Event ${order.eventId}`, { href: `#/event/${order.eventId}` }));
    const action = el('td');
    if (order.status === 'ACTIVE') {
      action.append(button(`Cancel order ${order.orderId}`, async () => {
        const answer = await api(user, 'DELETE', `/api/v1/booking/${order.bookingId}`);
        if (answer.status === 200) {
          await bookingsPage();
          say(document.querySelector('[role=status]') ?? outcome, `Booking cancelled: ${order.quantity} tickets given back.`, 'ok');
        } else say(outcome, `The cancellation did not go through: ${answer.body?.detail ?? 'try again'}.`, 'bad');
      }, 'secondary'));
    }
    row.append(el('td', order.orderId), eventCell, el('td', String(order.quantity)), el('td', money(order.total)), el('td', new Date(order.placedAt).toLocaleString()), el('td', order.status === 'ACTIVE' ? 'CONFIRMED' : 'CANCELLED'), action);
    table.append(row);
  }
  const wrap = el('div', undefined, { class: 'table-wrap' });
  wrap.append(table);
  main.replaceChildren(heading, outcome, wrap);
}

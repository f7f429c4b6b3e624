// Sign-in for the pages: the authorization code flow with PKCE, by
// oidc-client-ts (its browser build, the global `oidc`), against the issuer
// the functions trust (/config.json). The user is kept in sessionStorage.

/** @returns {Promise<{ manager: any, user: any }>} */
export async function signInState() {
  const config = await fetch('/config.json').then((res) => res.json());
  const manager = new oidc.UserManager({
    authority: config.issuer,
    client_id: config.clientId,
    redirect_uri: `${location.origin}/`,
    post_logout_redirect_uri: `${location.origin}/`,
    response_type: 'code',
    scope: 'openid',
    loadUserInfo: false,
    automaticSilentRenew: false,
  });
  const query = new URLSearchParams(location.search);
  if (query.has('code') && query.has('state')) {
    try {
      const user = await manager.signinRedirectCallback();
      // Back to the page the sign-in started from, without the code in the address.
      const back = typeof user.state === 'string' && user.state.startsWith('/') ? new URL(user.state, location.origin) : new URL('/', location.origin);
      if (back.pathname !== location.pathname) location.replace(back);
      history.replaceState(null, '', back.pathname + back.hash);
    } catch (error) {
      history.replaceState(null, '', '/');
      console.warn('sign-in failed', error);
    }
  }
  const user = await manager.getUser();
  return { manager, user: user && !user.expired ? user : null };
}

/** The account area of the header: who is signed in, and the button to sign in or out. */
export function renderAccount(element, { manager, user }) {
  element.replaceChildren();
  if (user) {
    const who = document.createElement('span');
    who.textContent = `Signed in as ${user.profile.preferred_username ?? user.profile.sub} `;
    const out = button('Sign out', async () => {
      await manager.removeUser();
      location.reload();
    }, 'secondary');
    element.append(who, out);
  } else {
    element.append(button('Sign in', () => signIn(manager)));
  }
}

export function signIn(manager) {
  return manager.signinRedirect({ state: `${location.pathname}${location.hash}` });
}

/** Calls the public API, with the bearer token when signed in; answers { status, body }. */
export async function api(user, method, path, { body, headers = {} } = {}) {
  const res = await fetch(path, {
    method,
    headers: {
      ...(user ? { Authorization: `Bearer ${user.access_token}` } : {}),
      ...(body === undefined ? {} : { 'Content-Type': 'application/json' }),
      ...headers,
    },
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
  });
  const text = await res.text();
  return { status: res.status, body: text ? JSON.parse(text) : undefined };
}

export function button(label, onClick, kind = '') {
  const b = document.createElement('button');
  b.type = 'button';
  b.textContent = label;
  if (kind) b.className = kind;
  b.addEventListener('click', onClick);
  return b;
}

/** An element with text, built without innerHTML so that no API text is ever markup. */
export function el(tag, text, attributes = {}) {
  const e = document.createElement(tag);
  if (text !== undefined) e.textContent = text;
  for (const [name, value] of Object.entries(attributes)) e.setAttribute(name, value);
  return e;
}

export const money = (amount) => `${Number(amount).toFixed(2)}`;

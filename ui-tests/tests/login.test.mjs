// Logging in with the one-time URL `otto ui` prints, on a real node.

import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';

import { launch, newPage, shot } from '../lib/browser.mjs';
import { apiLoginUrl, cliLoginUrl, startNode } from '../lib/otto.mjs';

let node;
let browser;

before(async () => {
  node = await startNode({ org: 'acme', name: 'login-1' });
  browser = await launch();
});

after(async () => {
  await browser?.close();
  await node?.stop();
});

test('the one-time URL logs in once, and nothing else does', { timeout: 120_000 }, async () => {
  const url = await cliLoginUrl(node.home);
  assert.ok(url.startsWith(`${node.base}/ui/login/`), `${url} is not on ${node.base}`);
  const other = await apiLoginUrl(node.home);
  assert.notEqual(other, url, 'each login URL is new');

  const first = await newPage(browser);
  const landed = await first.page.goto(url);
  assert.equal(landed.status(), 200, 'the login ends on a page');
  assert.equal(new URL(first.page.url()).pathname, '/ui/runs', 'the login lands on the runs');
  const cookies = await first.context.cookies(`${node.base}/ui/runs`);
  const session = cookies.find((c) => c.name === 'otto_ui');
  assert.ok(session, `no otto_ui cookie after the login: ${JSON.stringify(cookies)}`);
  assert.equal(session.httpOnly, true, 'the session cookie is HttpOnly');
  assert.equal(session.sameSite, 'Strict', 'the session cookie is SameSite=Strict');
  assert.ok(
    await first.page.getAttribute('meta[name="otto-csrf"]', 'content'),
    'the page carries a CSRF token',
  );
  await shot(first.page, 'runs-empty');
  assert.deepEqual(first.page.problems, [], 'the page ran without errors');

  // The same URL again, from another browser profile: refused.
  const second = await newPage(browser);
  const again = await second.page.goto(url);
  assert.equal(again.status(), 403, 'a login URL works once');
  assert.equal(
    (await second.context.cookies(`${node.base}/ui/runs`)).some((c) => c.name === 'otto_ui'),
    false,
    'a refused login sets no session',
  );
  await shot(second.page, 'login-used-403');

  // No session at all: the runs page is refused.
  const third = await newPage(browser);
  const none = await third.page.goto(`${node.base}/ui/runs`);
  assert.equal(none.status(), 401, 'no session, no page');
  const body = await third.page.textContent('body');
  assert.match(body, /otto ui/, 'the 401 page says how to get a login URL');
  await shot(third.page, 'no-session-401');

  // The logged-in context still works after the refusals.
  const still = await first.page.goto(`${node.base}/ui/runs`);
  assert.equal(still.status(), 200);
  for (const { context } of [first, second, third]) await context.close();
});

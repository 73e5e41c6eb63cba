// CSRF at the browser level: script in a logged-in page that POSTs without the page's
// token is refused; the same POST with the token goes through.

import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';

import { csrfToken, launch, newPage, shot } from '../lib/browser.mjs';
import { loginUrl, startNode } from '../lib/otto.mjs';

let node;
let browser;

before(async () => {
  node = await startNode({ org: 'acme', name: 'csrf-1' });
  browser = await launch();
});

after(async () => {
  await browser?.close();
  await node?.stop();
});

/** POSTs a form body to `path` from the page's own script; the status and body. */
function postFromPage(page, path, body, headers = {}) {
  return page.evaluate(
    async ({ path, body, headers }) => {
      const response = await fetch(path, {
        method: 'POST',
        headers: { 'content-type': 'application/x-www-form-urlencoded', ...headers },
        body,
        credentials: 'same-origin',
      });
      return { status: response.status, text: await response.text() };
    },
    { path, body, headers },
  );
}

test('a POST from page script needs the CSRF token', { timeout: 90_000 }, async () => {
  const { page } = await newPage(browser);
  await page.goto(await loginUrl(node.home));
  await page.goto(`${node.base}/ui/explain`);
  const token = await csrfToken(page);
  assert.ok(token, 'the page has a CSRF token');
  const hidden = await page.getAttribute('form[data-testid=explain-form] input[name=_csrf]', 'value');
  assert.equal(hidden, token, 'the form carries the same token');
  const action = (await page.getAttribute('form[data-testid=explain-form]', 'action')) || '/ui/explain';
  const ottofile = encodeURIComponent("pipeline { stage('A') { steps { echo 'a' } } }");

  const without = await postFromPage(page, action, `ottofile=${ottofile}`);
  assert.equal(without.status, 403, 'no token: refused');
  assert.match(without.text, /CSRF/i, 'the refusal says why');

  const wrong = await postFromPage(page, action, `ottofile=${ottofile}&_csrf=${'0'.repeat(token.length)}`);
  assert.equal(wrong.status, 403, 'a wrong token: refused');

  const logout = await postFromPage(page, '/ui/logout', '');
  assert.equal(logout.status, 403, 'even signing out needs the token');

  const withToken = await postFromPage(page, action, `ottofile=${ottofile}&_csrf=${encodeURIComponent(token)}`);
  assert.equal(withToken.status, 200, 'the same POST with the token goes through');
  assert.match(withToken.text, /data-testid="stage-graph"/, 'and is planned');

  // A real form submission whose token was taken out: the browser shows the refusal.
  await page.goto(`${node.base}/ui/explain`);
  await page.fill('form[data-testid=explain-form] textarea[name=ottofile]', decodeURIComponent(ottofile));
  await page.evaluate(() => document.querySelector('form[data-testid=explain-form] input[name=_csrf]').remove());
  const [response] = await Promise.all([
    page.waitForResponse((r) => r.request().method() === 'POST'),
    page.locator('form[data-testid=explain-form] button, form[data-testid=explain-form] input[type=submit]').first().click(),
  ]);
  assert.equal(response.status(), 403, 'the form without its token is refused');
  await page.waitForLoadState('load');
  assert.match(await page.textContent('body'), /CSRF/, 'for want of the token');
  await shot(page, 'csrf-403');
});

// The explain page: a pasted Ottofile is planned and drawn; a broken one shows where it
// is broken.

import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, test } from 'node:test';

import { launch, newPage, shot, showingFailure } from '../lib/browser.mjs';
import { loginUrl, startNode, workspace } from '../lib/otto.mjs';

const BROKEN = `pipeline {
  name = 'broken'
  stage('Build') {
    stpes { sh 'make' }
  }
}
`;

let node;
let browser;
let page;

/** Submits the explain form as a person would; fails unless the node answers 200. */
async function submit(form) {
  const [response] = await Promise.all([
    page.waitForResponse((r) => r.request().method() === 'POST' && r.request().isNavigationRequest()),
    form.locator('button, input[type=submit]').first().click(),
  ]);
  assert.equal(response.status(), 200, `the explain form was answered ${response.status()}`);
  await page.waitForLoadState('load');
}

before(async () => {
  node = await startNode({ org: 'acme', name: 'explain-1' });
  browser = await launch();
  ({ page } = await newPage(browser));
  await page.goto(await loginUrl(node.home));
});

after(async () => {
  await browser?.close();
  await node?.stop();
});

test('a pasted Ottofile is drawn as its stage graph', { timeout: 90_000 }, () =>
  showingFailure(page, 'explain-graph', async () => {
    const ottofile = readFileSync(join(workspace, 'examples', 'local', 'Ottofile'), 'utf8');
    await page.goto(`${node.base}/ui/explain`);
    const form = page.locator('form[data-testid=explain-form]');
    await form.locator('textarea[name=ottofile]').fill(ottofile);
    await shot(page, 'explain-form');
    await submit(form);
    const graph = page.locator('svg[data-testid=stage-graph]');
    await graph.waitFor();
    const stages = await graph.locator('g[data-testid=stage]').evaluateAll((gs) => gs.map((g) => g.dataset.stage));
    assert.deepEqual(
      [...stages].sort(),
      ['Build', 'Check links', 'Check size', 'Publish'],
      'every stage of examples/local is drawn',
    );
    assert.equal(await page.locator('[data-testid=diagnostics]').count(), 0, 'no diagnostics');
    await shot(page, 'explain-graph');
    assert.deepEqual(page.problems, []);
  }));

test('a broken Ottofile shows its diagnostics with line and column', { timeout: 90_000 }, () =>
  showingFailure(page, 'explain-diagnostics', async () => {
    await page.goto(`${node.base}/ui/explain`);
    const form = page.locator('form[data-testid=explain-form]');
    await form.locator('textarea[name=ottofile]').fill(BROKEN);
    await submit(form);
    const diagnostics = page.locator('[data-testid=diagnostics]');
    await diagnostics.waitFor();
    const text = await diagnostics.textContent();
    assert.match(text, /stpes/, 'the diagnostic names the unknown word');
    assert.match(text, /\b4:5\b/, `the diagnostic gives line 4, column 5: ${text}`);
    assert.equal(await page.locator('svg[data-testid=stage-graph]').count(), 0, 'no graph');
    assert.equal(
      await page.locator('textarea[name=ottofile]').inputValue(),
      BROKEN,
      'the text is kept to fix it',
    );
    await shot(page, 'explain-diagnostics');
  }));

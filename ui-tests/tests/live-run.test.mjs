// A run on one real node, followed live in the browser: the stages move on without a
// reload, the input gate is approved from the page, the run ends succeeded, and the
// secret the first stage printed is masked in its log view.

import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { rmSync } from 'node:fs';
import { after, before, test } from 'node:test';

import { launch, newPage, shot, showingFailure } from '../lib/browser.mjs';
import { loginUrl, otto, startNode, startRun, status, waitFor, writeProject } from '../lib/otto.mjs';

const SECRET = `ui-secret-${randomBytes(8).toString('hex')}`;

const OTTOFILE = `// The browser tests' live run: a stage that uses a secret, an input gate, a last stage.
environments {
  uitest { secrets { UI_TOKEN } }
}

pipeline {
  name = 'ui-live'
  stage('Prepare') {
    environment -> uitest
    steps {
      sh '''
        echo "preparing with token=$(cat "$OTTO_SECRETS_DIR/UI_TOKEN")"
        echo "base64 form: $(printf %s "$(cat "$OTTO_SECRETS_DIR/UI_TOKEN")" | base64)"
        sleep 4
        echo "prepared"
      '''
    }
  }
  stage('Approve') {
    gates { enter { input 'Go on?' } }
    steps { echo 'approved, going on' }
  }
  stage('Finish') {
    steps { echo 'finished' }
  }
}
`;

/** The stage states the page may show for a stage that waits at its gate. */
const WAITING = ['waiting', 'waiting_gate'];

let node;
let browser;
/** The project directory `otto run` snapshots, removed after. */
let project;
/** The run of the first test. */
let runId;

before(async () => {
  node = await startNode({ org: 'acme', name: 'live-1' });
  await otto(node.home, ['secrets', 'set', 'UI_TOKEN'], { input: SECRET });
  browser = await launch();
});

after(async () => {
  await browser?.close();
  await node?.stop();
  if (project) rmSync(project, { recursive: true, force: true });
});

test('a run moves on live, is approved from the page and ends succeeded', { timeout: 150_000 }, async () => {
  const { page } = await newPage(browser);
  await showingFailure(page, 'live-run', () => liveRun(page));
});

async function liveRun(page) {
  await page.goto(await loginUrl(node.home));
  assert.equal(new URL(page.url()).pathname, '/ui/runs');

  project = writeProject('live', { Ottofile: OTTOFILE });
  runId = await startRun(node.home, project);
  await page.goto(`${node.base}/ui/runs/${runId}`);
  const stage = (name) => page.locator(`svg[data-testid=stage-graph] g[data-testid=stage][data-stage="${name}"]`);
  await stage('Prepare').waitFor();
  const first = await stage('Prepare').getAttribute('data-state');
  assert.ok(['pending', 'running'].includes(first), `Prepare is ${first} when the page opens`);
  const approveState = await stage('Approve').getAttribute('data-state');
  assert.equal(approveState, 'pending', 'the gate stage has not been reached yet');
  await shot(page, 'run-live-running');

  // From here on the page is not reloaded: a marker set now must survive every change.
  let navigations = 0;
  page.on('framenavigated', (frame) => {
    if (frame === page.mainFrame()) navigations += 1;
  });
  await page.evaluate(() => {
    window.__ottoNotReloaded = true;
  });

  await page.locator('g[data-testid=stage][data-stage="Prepare"][data-state=succeeded]').waitFor({ timeout: 45_000 });
  const waitingSel = WAITING.map(
    (s) => `g[data-testid=stage][data-stage="Approve"][data-state="${s}"]`,
  ).join(', ');
  await page.locator(waitingSel).first().waitFor({ timeout: 30_000 });
  const button = page.locator('form[data-testid=approve-form][data-stage="Approve"] button');
  await button.waitFor({ timeout: 30_000 });
  assert.equal(navigations, 0, 'the page changed without a navigation');
  assert.equal(await page.evaluate(() => window.__ottoNotReloaded), true, 'the page was not reloaded');
  assert.equal((await status(node.home, runId)).run.state, 'waiting', 'the node agrees the run waits');
  await shot(page, 'run-live-gate');

  const [approved] = await Promise.all([
    page.waitForResponse((r) => r.request().method() === 'POST' && r.request().isNavigationRequest()),
    button.click(),
  ]);
  assert.ok(approved.status() < 400, `the approval was answered ${approved.status()}`);
  await page.locator('[data-testid=run-state]').filter({ hasText: /succeeded/ }).waitFor({ timeout: 45_000 });
  for (const name of ['Prepare', 'Approve', 'Finish']) {
    assert.equal(await stage(name).getAttribute('data-state'), 'succeeded', `${name} on the page`);
  }
  assert.equal((await status(node.home, runId)).run.state, 'succeeded', 'the node agrees');
  const verify = await page.locator('[data-testid=verify-result]').textContent();
  assert.match(verify.trim(), /^verified/, 'the single-node run verifies');
  assert.ok(await page.locator('[data-testid=plan-digest]').textContent(), 'the plan digest is shown');
  await shot(page, 'run-live-succeeded');

  assert.deepEqual(page.problems, [], 'the pages ran without errors');
}

test('the log view masks the secret', { timeout: 90_000 }, async () => {
  assert.ok(runId, 'the first test started a run');
  // Independent of the live page: the run is brought to its end with the CLI if needed.
  await waitFor('the run to reach its gate or end', async () => {
    const run = await status(node.home, runId);
    return run.run.state !== 'running' && run.run.state !== 'queued' && run;
  }, { timeoutMs: 60_000 });
  if ((await status(node.home, runId)).run.state === 'waiting') {
    await otto(node.home, ['approve', runId, 'Approve']);
  }
  await waitFor('the run to succeed', async () => (await status(node.home, runId)).run.state === 'succeeded', { timeoutMs: 60_000 });
  const { page } = await newPage(browser);
  await page.goto(await loginUrl(node.home));
  await showingFailure(page, 'masked-secret', async () => {
    const stageResponse = await page.goto(`${node.base}/ui/runs/${runId}/stages/Prepare`);
    assert.equal(stageResponse.status(), 200);
    assert.match(await page.locator('[data-testid=stage-state]').textContent(), /succeeded/);
    const lines = await page.locator('[data-testid=log] [data-testid=log-line]').allTextContents();
    const prep = lines.find((l) => l.includes('preparing with token='));
    assert.ok(prep, `no "preparing" line in the log view: ${JSON.stringify(lines)}`);
    assert.match(prep, /token=\*\*\*/, 'the value is shown masked');
    assert.ok(lines.some((l) => /base64 form: \*\*\*/.test(l)), 'its base64 form is masked too');
    const html = await page.content();
    assert.equal(html.includes(SECRET), false, 'the secret value is nowhere in the page');
    assert.equal(html.includes(Buffer.from(SECRET).toString('base64')), false, 'nor its base64');
    await shot(page, 'stage-masked-secret');
    assert.deepEqual(page.problems, [], 'the page ran without errors');
  });
});

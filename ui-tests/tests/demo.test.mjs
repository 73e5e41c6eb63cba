// The two-org demo kept running (`otto-testnet demo --keep`), seen from dev-1's UI: the
// refused handoff of the first run and the verified one of the last, and a screenshot of
// every page.

import assert from 'node:assert/strict';
import { existsSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, test } from 'node:test';

import { launch, newPage, shot, showingFailure } from '../lib/browser.mjs';
import { bin, binDir, loginUrl, startGroup, tempDir, waitFor } from '../lib/otto.mjs';

let demo;
/** The test's own directory: the demo's work directory and its log, removed after. */
let parent;
let dir;
let logFile;
let browser;
let nodes;
/** The first run dev-1 started, refused by ops-1. */
let firstRun;

before(async () => {
  parent = tempDir('demo');
  dir = join(parent, 'work');
  logFile = join(parent, 'demo.log');
  demo = startGroup(
    bin('otto-testnet'),
    ['demo', '--keep', '--dir', dir, '--bin-dir', binDir, '--no-build'],
    { logFile },
  );
  const listed = join(dir, 'nodes.json');
  await waitFor(
    `the demo to write ${listed} (log: ${logFile})`,
    () => {
      if (demo.hasExited()) {
        throw new Error(`the demo exited: ${readFileSync(logFile, 'utf8').slice(-3000)}`);
      }
      return existsSync(listed) && JSON.parse(readFileSync(listed, 'utf8'));
    },
    { timeoutMs: 240_000, intervalMs: 500 },
  );
  nodes = JSON.parse(readFileSync(listed, 'utf8')).nodes;
  browser = await launch();
});

after(async () => {
  await browser?.close();
  if (demo) {
    const code = await demo.stop(30_000);
    // Stopped by SIGTERM, the demo stops its nodes and exits 0.
    assert.equal(code, 0, `the demo exits 0 when stopped (log: ${logFile})`);
  }
  if (parent) rmSync(parent, { recursive: true, force: true });
});

test('nodes.json lists both kept nodes', () => {
  assert.deepEqual(
    nodes.map((n) => [n.name, n.org]),
    [
      ['dev-1', 'acme-dev'],
      ['ops-1', 'acme-ops'],
    ],
  );
  for (const n of nodes) {
    assert.ok(existsSync(join(n.home, 'api.token')), `${n.home} is a node home`);
    assert.match(n.api, /^127\.0\.0\.1:\d+$/);
  }
  const printed = readFileSync(logFile, 'utf8');
  assert.match(printed, /dev-1 of acme-dev: open http:\/\/127\.0\.0\.1:\d+\/ui\/login\//, 'the demo prints a login URL');
});

test('dev-1 shows the refused handoff and the verified one', { timeout: 180_000 }, async () => {
  const dev = nodes.find((n) => n.name === 'dev-1');
  const base = `http://${dev.api}`;
  const { page } = await newPage(browser);
  await showingFailure(page, 'demo-dev', () => devPages(page, dev, base));
});

async function devPages(page, dev, base) {
  await page.goto(await loginUrl(dev.home));
  assert.equal(new URL(page.url()).pathname, '/ui/runs');

  const rows = page.locator('tr[data-testid=run-row]');
  await rows.first().waitFor();
  const runs = await rows.evaluateAll((trs) => trs.map((tr) => ({ id: tr.dataset.run, state: tr.dataset.state })));
  // The demo runs the pipeline until ops accepts it: refused runs, then the delivered one.
  assert.ok(runs.length >= 2, `the refused runs and the delivered one: ${JSON.stringify(runs)}`);
  assert.equal(runs[0].state, 'succeeded', `the newest run is the delivered one: ${JSON.stringify(runs)}`);
  const delivered = runs[0];
  const failed = runs.slice(1);
  assert.ok(failed.every((r) => r.state === 'failed'), `the runs before it were refused: ${JSON.stringify(runs)}`);
  // The first run: ops-1 refused the handoff of Deploy staging.
  const refused = runs[runs.length - 1];
  firstRun = refused.id;
  await shot(page, 'runs');

  // The filter narrows the list to the failed run.
  const filter = page.locator('form[data-testid=run-filter]');
  await filter.locator('select[name=state]').selectOption('failed');
  await Promise.all([page.waitForURL(/state=failed/), filter.locator('button, input[type=submit]').first().click()]);
  const filtered = await page.locator('tr[data-testid=run-row]').evaluateAll((trs) => trs.map((tr) => tr.dataset.run));
  assert.deepEqual(filtered, failed.map((r) => r.id), 'the state filter keeps only the failed runs');
  await shot(page, 'runs-filtered');

  // The refused run: ops-1 did not accept Deploy staging.
  await page.goto(`${base}/ui/runs/${refused.id}`);
  await page.locator('[data-testid=handoff]').first().waitFor();
  const handoffs = await page.locator('[data-testid=handoff]').evaluateAll((hs) =>
    hs.map((h) => ({ from: h.dataset.from, to: h.dataset.to, verified: h.dataset.verified })),
  );
  const toStaging = handoffs.find((h) => h.to === 'Deploy staging');
  assert.ok(toStaging, `the refused run shows the handoff of Deploy staging: ${JSON.stringify(handoffs)}`);
  assert.equal(toStaging.verified, 'false', `the refused handoff is not shown as verified: ${JSON.stringify(handoffs)}`);
  assert.match(await page.locator('[data-testid=run-state]').textContent(), /failed/);
  const lanes = await page.locator('g[data-testid=lane]').evaluateAll((ls) => ls.map((l) => l.dataset.owner));
  assert.ok(lanes.includes('ops'), `an ops lane: ${JSON.stringify(lanes)}`);
  assert.equal(
    await page.locator('g[data-testid=stage][data-stage="Deploy staging"]').getAttribute('data-state'),
    'failed',
    'the refused stage failed',
  );
  await shot(page, 'run-refused');

  // The delivered run: every handoff verified, and the chain verifies.
  await page.goto(`${base}/ui/runs/${delivered.id}`);
  await page.locator('[data-testid=handoff]').first().waitFor();
  const verified = await page.locator('[data-testid=handoff]').evaluateAll((hs) =>
    hs.map((h) => ({ from: h.dataset.from, to: h.dataset.to, verified: h.dataset.verified })),
  );
  assert.ok(
    verified.some((h) => h.verified === 'true' && h.from === 'Test' && h.to === 'Deploy staging'),
    `the accepted handoff of Deploy staging to ops is shown verified: ${JSON.stringify(verified)}`,
  );
  assert.equal(verified.filter((h) => h.verified !== 'true').length, 0, `no unverified handoff: ${JSON.stringify(verified)}`);
  assert.match((await page.locator('[data-testid=verify-result]').textContent()).trim(), /^verified/);
  await shot(page, 'run-delivered');

  // A stage run on ops, seen from dev: its receipt, no secret.
  const stageResp = await page.goto(`${base}/ui/runs/${delivered.id}/stages/${encodeURIComponent('Deploy production')}`);
  assert.equal(stageResp.status(), 200);
  assert.match(await page.locator('[data-testid=stage-state]').textContent(), /succeeded/);
  assert.ok((await page.locator('[data-testid=receipt]').count()) >= 1, 'the receipt is shown');
  await shot(page, 'stage-deploy-production');
  await page.goto(`${base}/ui/runs/${delivered.id}/stages/Build`);
  assert.ok((await page.locator('[data-testid=artifact]').count()) >= 1, 'Build shows its artifact');
  assert.ok((await page.locator('[data-testid=log] [data-testid=log-line]').count()) >= 1, 'Build shows its log');
  await shot(page, 'stage-build');

  // The mesh: this node and its peer.
  await page.goto(`${base}/ui/mesh`);
  assert.match(await page.locator('[data-testid=node-info]').textContent(), /dev-1/);
  // The wall, as GET /v1/node says it.
  const wall = await (await fetch(`${base}/v1/node`, { headers: { authorization: `Bearer ${readFileSync(join(dev.home, 'api.token'), 'utf8').trim()}` } })).json();
  const shown = page.locator('[data-testid=node-wall]');
  assert.equal(await shown.getAttribute('data-walled'), String(wall.wall.walled));
  assert.match(
    await shown.textContent(),
    wall.wall.walled ? new RegExp(`walled in \\(Landlock ABI ${wall.wall.landlock_abi}\\)`) : /without a wall/,
  );
  assert.ok((await page.locator('tr[data-testid=peer]').count()) >= 1, 'ops-1 is a peer');
  await shot(page, 'mesh');

  await page.goto(`${base}/ui/explain`);
  await shot(page, 'explain-empty');

  // The runs page on a phone.
  await page.setViewportSize({ width: 390, height: 844 });
  await page.goto(`${base}/ui/runs`);
  const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
  await shot(page, 'runs-phone');
  await page.goto(`${base}/ui/runs/${delivered.id}`);
  await shot(page, 'run-phone');
  assert.ok(overflow <= 0, `the runs page fits a 390px screen (${overflow}px too wide)`);
  assert.deepEqual(page.problems, [], 'the pages ran without errors');
}

test('ops-1 shows the delivered run and not the refused first one', { timeout: 120_000 }, async () => {
  const ops = nodes.find((n) => n.name === 'ops-1');
  const base = `http://${ops.api}`;
  const { page } = await newPage(browser);
  await page.goto(await loginUrl(ops.home));
  await page.goto(`${base}/ui/mesh`);
  assert.match(await page.locator('[data-testid=node-info]').textContent(), /ops-1/);
  await shot(page, 'mesh-ops');
  await page.goto(`${base}/ui/runs`);
  const runs = await page.locator('tr[data-testid=run-row]').evaluateAll((trs) =>
    trs.map((tr) => ({ id: tr.dataset.run, state: tr.dataset.state })),
  );
  assert.equal(runs[0]?.state, 'succeeded', `ops shows the delivered run: ${JSON.stringify(runs)}`);
  assert.equal(runs.some((r) => r.id === firstRun), false, 'ops has no record of the run it refused first');
  await shot(page, 'runs-ops');
});

// Headless Debian Chromium driven by playwright-core (no browser download), and
// screenshots under the target directory.

import { mkdirSync } from 'node:fs';
import { join } from 'node:path';

import { chromium } from 'playwright-core';

import { shotsDir } from './otto.mjs';

/** The Chromium executable: $CHROMIUM, else Debian's /usr/bin/chromium. */
export const chromiumPath = process.env.CHROMIUM || '/usr/bin/chromium';

/** How long any single browser action or wait may take. */
export const ACTION_MS = 20_000;

/**
 * Launches headless Chromium with a fresh profile (playwright makes a new user data
 * directory for each launch) and no background traffic to the outside.
 */
export function launch() {
  return chromium.launch({
    executablePath: chromiumPath,
    headless: true,
    timeout: 60_000,
    args: [
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
    ],
  });
}

/** A new browser context (no cookies) and a page in it, with bounded waits. */
export async function newPage(browser, options = {}) {
  const context = await browser.newContext({ viewport: { width: 1280, height: 900 }, ...options });
  context.setDefaultTimeout(ACTION_MS);
  context.setDefaultNavigationTimeout(ACTION_MS);
  const page = await context.newPage();
  const problems = [];
  page.on('pageerror', (e) => problems.push(`page error: ${e.message}`));
  page.on('console', (m) => {
    // A failed load is reported below with its URL.
    if (m.type() === 'error' && !m.text().startsWith('Failed to load resource')) {
      problems.push(`console error: ${m.text()}`);
    }
  });
  page.on('response', (r) => {
    if (r.status() >= 400 && !r.request().isNavigationRequest() && r.request().resourceType() !== 'fetch') {
      problems.push(`${r.status()} for ${r.request().resourceType()} ${r.url()}`);
    }
  });
  page.on('requestfailed', (r) => {
    if (r.resourceType() !== 'eventsource') {
      problems.push(`request failed: ${r.url()} (${r.failure()?.errorText})`);
    }
  });
  page.problems = problems;
  return { context, page };
}

/** Saves a full-page screenshot as target/ui-shots/NAME.png; its path. */
export async function shot(page, name) {
  mkdirSync(shotsDir, { recursive: true });
  const path = join(shotsDir, `${name}.png`);
  await page.screenshot({ path, fullPage: true });
  return path;
}

/**
 * Logs in with a one-time URL; resolves with the response of the page it lands on.
 */
export async function logIn(page, url) {
  const response = await page.goto(url);
  return response;
}

/** The CSRF token of the page (`<meta name="otto-csrf">`). */
export function csrfToken(page) {
  return page.getAttribute('meta[name="otto-csrf"]', 'content');
}

/**
 * Runs `fn`; when it fails, saves a screenshot `FAILED-NAME.png` of the page as it was
 * and adds the page's address and problems to the error.
 */
export async function showingFailure(page, name, fn) {
  try {
    return await fn();
  } catch (e) {
    const path = await shot(page, `FAILED-${name}`).catch(() => 'no screenshot');
    e.message += `\n  page ${page.url()} (screenshot ${path}); problems: ${JSON.stringify(page.problems)}`;
    throw e;
  }
}

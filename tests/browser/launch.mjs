// What the browser scripts (admin_page.mjs, dashboard_preview.mjs) share: reading their
// environment, step lines and checks, and one test run in headless Chromium — a fresh profile,
// a page whose script errors, console errors and requests to other origins are collected, the
// final "no outside requests, no page errors" check, a failure screenshot and exit status.
import { chromium } from 'playwright-core';
import { mkdtempSync, rmSync, mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/** The environment variable `k`; throws if it is not set. */
export const env = (k) => {
  const v = process.env[k];
  if (!v) throw new Error(`${k} not set`);
  return v;
};
export const OUT = env('FICUS_OUT_DIR');
const CHROMIUM = process.env.FICUS_CHROMIUM || '/usr/bin/chromium';

export const step = (m) => console.log(`browser: ${m}`);
export function check(cond, msg) {
  if (!cond) throw new Error(`check failed: ${msg}`);
}

/**
 * Runs `body(page, errors)` in a new headless Chromium page. Every request must stay on
 * `origin` (named `originName` in the message); page errors and console errors (except those
 * matching `ignoreConsole`) are collected into `errors`, to which `body` may add. On failure,
 * a full-page screenshot `failureShot` in OUT and a non-zero exit status.
 */
export async function inChromium({ viewport, origin, originName, failureShot, ignoreConsole }, body) {
  mkdirSync(OUT, { recursive: true });
  const profile = mkdtempSync(join(tmpdir(), 'ficus-chromium-'));
  // An empty profile directory of our own (playwright passes it as --user-data-dir).
  const ctx = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    viewport,
    args: [
      '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync',
    ],
  });
  let page;
  const errors = [];
  try {
    page = await ctx.newPage();
    page.on('pageerror', (e) => errors.push(String(e)));
    page.on('console', (m) => {
      if (m.type() === 'error' && !(ignoreConsole && ignoreConsole.test(m.text()))) errors.push(m.text());
    });
    const outside = [];
    page.on('request', (r) => { if (!r.url().startsWith(origin)) outside.push(r.url()); });

    await body(page, errors);

    check(outside.length === 0, `no request left the ${originName} origin: ${outside.join(', ')}`);
    check(errors.length === 0, `no page errors: ${errors.join(' | ')}`);
    step('no outside requests, no page errors');
    console.log('browser: 1 passed, 0 failed');
  } catch (e) {
    if (page) {
      try { await page.screenshot({ path: join(OUT, failureShot), fullPage: true }); } catch (_) { /* ignore */ }
    }
    console.error(`browser: FAILED: ${e.stack || e}`);
    if (errors.length) console.error(`browser: page errors: ${errors.join(' | ')}`);
    process.exitCode = 1;
  } finally {
    await ctx.close();
    rmSync(profile, { recursive: true, force: true });
  }
}

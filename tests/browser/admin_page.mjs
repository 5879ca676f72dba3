// Drives the ficus admin page in headless Chromium, as an operator would: load it, enter the
// token, set a percentage, check the proxy applies it (admin API and real requests), roll back,
// and take screenshots. Run by proxy/tests/admin_page.rs, which starts the proxy and backends
// and passes their addresses in the environment:
//   FICUS_ADMIN_URL, FICUS_PROXY_URL, FICUS_TOKEN, FICUS_ROUTE, FICUS_OUT_DIR, FICUS_CHROMIUM
// Prints one line per step; exits non-zero on the first failure.
import { join } from 'node:path';
import { OUT, env, step, check, inChromium } from './launch.mjs';

const ADMIN = env('FICUS_ADMIN_URL');
const PROXY = env('FICUS_PROXY_URL');
const TOKEN = env('FICUS_TOKEN');
const ROUTE = env('FICUS_ROUTE');

async function routeStatus() {
  const r = await fetch(`${ADMIN}/admin/routes`);
  const j = await r.json();
  return j.routes.find((x) => x.name === ROUTE);
}

/** Sends `n` keyed requests through the proxy; returns counts per backend. */
async function traffic(n) {
  const counts = { legacy: 0, new: 0 };
  for (let i = 0; i < n; i++) {
    const r = await fetch(`${PROXY}/api/tasks/${i}`, { headers: { 'x-user-id': `user-${i}` } });
    await r.arrayBuffer();
    counts[r.headers.get('x-ficus-backend')] += 1;
  }
  return counts;
}

async function waitFor(fn, what, ms = 10000) {
  const until = Date.now() + ms;
  for (;;) {
    const v = await fn();
    if (v) return v;
    if (Date.now() > until) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

await inChromium({
  viewport: { width: 1100, height: 900 },
  origin: ADMIN,
  originName: 'admin',
  failureShot: 'admin-failure.png',
  // The 403s are the wrong-token step's own requests; any other failed load or script error counts.
  ignoreConsole: /status of 403/,
}, async (page) => {
  await page.goto(`${ADMIN}/`);
  const card = page.locator(`.card[data-route="${ROUTE}"]`);
  await card.waitFor();
  step('page loaded, route card shown');
  check((await card.locator('.pct').getAttribute('data-percent')) === '0', 'starts at 0 %');

  // Token asked once: entered, kept in sessionStorage, not asked again after a reload.
  await page.fill('#token', TOKEN);
  await page.click('#token-save');
  await page.locator('#token-set').waitFor();
  check((await page.evaluate(() => sessionStorage.getItem('ficus-admin-token'))) === TOKEN, 'token in sessionStorage');
  await page.reload();
  await card.waitFor();
  check(await page.locator('#token-form').isHidden(), 'token form hidden after reload');
  step('token entered once and kept for the tab');

  // Set a percentage from the page; the proxy applies it.
  await card.locator('.pct-input').fill('40');
  await card.locator('.set-btn').click();
  await page.locator(`.card[data-route="${ROUTE}"] .pct[data-percent="40"]`).waitFor();
  const flash = await page.locator('#flash').textContent();
  check(/0 % → 40 %/.test(flash), `flash says what changed: ${flash}`);
  const st = await routeStatus();
  check(st.percent === 40 && st.source === 'runtime' && st.updated_by === 'admin-page', `admin API shows 40 % by admin-page: ${JSON.stringify(st)}`);
  const t40 = await traffic(400);
  check(t40.new > 100 && t40.new < 220 && t40.legacy + t40.new === 400, `about 40 % of 400 keyed requests to new: ${JSON.stringify(t40)}`);
  step(`set 40 % from the page: admin API agrees, traffic ${JSON.stringify(t40)}`);

  // The counters move (polled every 2 s).
  await waitFor(async () => Number(await card.locator('[data-backend="new"]').getAttribute('data-total')) >= t40.new, 'request counters on the page');
  step('request counters updated on the page');

  // Mismatches: shown with their diff; hostile text stays text.
  const mm = page.locator('details.mismatch');
  await mm.first().waitFor();
  await mm.first().locator('summary').click();
  const mmText = await mm.first().textContent();
  check(mmText.includes('/title') && mmText.includes('"Legacy title"') && mmText.includes('"New title"'), `mismatch diff shown: ${mmText}`);
  check(mmText.includes('<img src=x onerror=alert(1)>'), 'hostile path shown as text');
  check((await page.locator('img').count()) === 0, 'no element injected from data');
  step(`latest mismatches shown (${await mm.count()}), diff visible, output escaped`);

  await page.screenshot({ path: join(OUT, 'admin.png'), fullPage: true });
  step(`screenshot ${join(OUT, 'admin.png')}`);

  // Roll back from the page.
  await card.locator('.rollback-btn').click();
  await page.locator(`.card[data-route="${ROUTE}"] .pct[data-percent="0"]`).waitFor();
  const back = await routeStatus();
  check(back.percent === 0 && back.source === 'runtime', `admin API shows 0 % after rollback: ${JSON.stringify(back)}`);
  const t0 = await traffic(200);
  check(t0.new === 0 && t0.legacy === 200, `all traffic to legacy after rollback: ${JSON.stringify(t0)}`);
  await waitFor(async () => (await page.locator('#audit tbody').textContent()).includes('rollback'), 'audit row on the page');
  step(`rolled back from the page: admin API 0 %, traffic ${JSON.stringify(t0)}, audit row shown`);

  // A write hold (what `ficus migrate cutover` places) shows on the route's card: a badge, who
  // holds the writes until when, and the writes waiting.
  const auth = { 'Authorization': `Bearer ${TOKEN}`, 'Content-Type': 'application/json' };
  const held = await fetch(`${ADMIN}/admin/routes/${ROUTE}/hold`, { method: 'POST', headers: auth, body: JSON.stringify({ max_ms: 60000, actor: 'cutover' }) });
  check(held.ok, `hold placed: ${held.status} ${await held.text()}`);
  const waitingWrite = fetch(`${PROXY}/api/tasks/1`, { method: 'POST', body: '{}' });
  const badge = card.locator('.badge.held');
  await badge.waitFor({ state: 'visible' });
  await page.locator(`.card[data-route="${ROUTE}"] .hold[data-waiting="1"]`).waitFor();
  const holdText = await card.locator('.hold').textContent();
  check(/^writes held by cutover until .+ · 1 waiting · 0 in flight$/.test(holdText), `hold shown: ${holdText}`);
  await page.screenshot({ path: join(OUT, 'admin-held.png'), fullPage: true });
  const released = await fetch(`${ADMIN}/admin/routes/${ROUTE}/hold`, { method: 'DELETE', headers: auth });
  check(released.ok, `hold released: ${released.status}`);
  const w = await waitingWrite;
  check(w.status === 200, `the held write went on after the release: ${w.status}`);
  await badge.waitFor({ state: 'hidden' });
  check(await card.locator('.hold').isHidden(), 'hold line gone after the release');
  step(`hold shown on the card (${holdText}), gone after the release; screenshot ${join(OUT, 'admin-held.png')}`);

  // A wrong token is refused and asked for again.
  await page.evaluate(() => sessionStorage.setItem('ficus-admin-token', 'wrong'));
  await page.reload();
  await card.waitFor();
  await card.locator('.pct-input').fill('10');
  await card.locator('.set-btn').click();
  await page.locator('#token-form').waitFor();
  check(/refused \(403\)/.test(await page.locator('#flash').textContent()), 'wrong token refused');
  check((await routeStatus()).percent === 0, 'nothing changed with a wrong token');
  step('wrong token refused, asked again, nothing changed');

  // Narrow screen: no horizontal overflow of the page itself.
  await page.setViewportSize({ width: 375, height: 812 });
  await page.reload();
  await card.waitFor();
  const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
  check(overflow <= 1, `no horizontal scrolling at 375 px (overflow ${overflow}px)`);
  await page.screenshot({ path: join(OUT, 'admin-narrow.png'), fullPage: true });
  step(`narrow screen fits; screenshot ${join(OUT, 'admin-narrow.png')}`);
});

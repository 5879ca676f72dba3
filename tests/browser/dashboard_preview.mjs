// Opens the dashboard preview (dashboards/preview/, served by Prometheus under /user/) in
// headless Chromium, waits until every panel of dashboards/grafana/ficus.json is drawn from the
// live Prometheus, checks that none errored or came back empty, and takes a full-page screenshot.
// Run by tests/prometheus_live.rs, which starts Prometheus, a proxy and a migrator with traffic
// and passes in the environment:
//   FICUS_PREVIEW_URL, FICUS_PROMETHEUS_URL, FICUS_PANELS, FICUS_MIN_POINTS, FICUS_OUT_DIR, FICUS_CHROMIUM
// Prints one line per step; exits non-zero on the first failure.
import { join } from 'node:path';
import { OUT, env, step, check, inChromium } from './launch.mjs';

const PREVIEW = env('FICUS_PREVIEW_URL');
const PROM = env('FICUS_PROMETHEUS_URL');
const PANELS = Number(env('FICUS_PANELS'));
const MIN_POINTS = Number(process.env.FICUS_MIN_POINTS || '3');
const BANNER = 'ficus dashboard preview — rendered from dashboards/grafana/ficus.json against Prometheus; Grafana renders the same queries';

const shot = join(OUT, 'dashboard-preview.png');
await inChromium({
  viewport: { width: 1440, height: 1000 },
  origin: PROM,
  originName: 'Prometheus',
  failureShot: 'dashboard-preview-failure.png',
}, async (page, errors) => {
  page.on('response', (r) => { if (r.status() >= 400) errors.push(`HTTP ${r.status()} for ${r.url()}`); });
  const queries = { range: 0, instant: 0 };
  page.on('request', (r) => {
    if (r.url().includes('/api/v1/query_range?')) queries.range += 1;
    else if (r.url().includes('/api/v1/query?')) queries.instant += 1;
  });

  await page.goto(PREVIEW);
  check((await page.locator('#banner').textContent()).startsWith(BANNER), 'banner shown');
  // Every panel queried and drawn (generous: a loaded CI machine).
  await page.locator('body[data-done]').waitFor({ state: 'attached', timeout: 120000 });
  const done = await page.evaluate(() => document.body.dataset.done);
  const bodyError = await page.evaluate(() => document.body.dataset.error);
  check(!bodyError, `page failed: ${bodyError}`);
  step(`page drawn: ${done} (${queries.range} range and ${queries.instant} instant queries)`);

  const panels = await page.$$eval('section.panel', (els) => els.map((e) => ({
    title: e.dataset.title,
    type: e.dataset.type,
    state: e.dataset.state,
    error: e.dataset.error,
    points: Number(e.dataset.points || 0),
    svg: e.querySelectorAll('svg').length,
    marks: e.querySelectorAll('svg polyline, svg rect, svg circle, svg text').length,
  })));
  check(panels.length === PANELS, `${PANELS} panels on the page, got ${panels.length}`);
  check(done === `${PANELS} panels, 0 empty, 0 errors`, `done: ${done}`);
  const bad = panels.filter((p) => p.state !== 'ok' || p.svg !== 1 || p.marks === 0);
  check(bad.length === 0, `panels not drawn: ${JSON.stringify(bad)}`);
  const sparse = panels.filter((p) => p.type === 'timeseries' && p.points < MIN_POINTS);
  check(sparse.length === 0, `timeseries with fewer than ${MIN_POINTS} points: ${JSON.stringify(sparse)}`);
  const ts = panels.filter((p) => p.type === 'timeseries');
  step(`${panels.length} panels drawn, none empty or errored; ${ts.length} timeseries with ${Math.min(...ts.map((p) => p.points))}..${Math.max(...ts.map((p) => p.points))} points`);
  check(queries.range + queries.instant >= PANELS, `every panel queried Prometheus (${JSON.stringify(queries)})`);

  await page.screenshot({ path: shot, fullPage: true });
  step(`screenshot ${shot}`);
});

// ficus admin page: polls /admin/summary (and, with a token, /admin/mismatches) and drives the
// admin API. Every value from the server goes into the page as text (textContent), never as
// markup.
'use strict';

const POLL_MS = 2000;
const TOKEN_KEY = 'ficus-admin-token';
let token = sessionStorage.getItem(TOKEN_KEY) || '';
let prev = null; // { at: ms, counters: Map } from the previous poll, for rates
let timer = null;

const $ = (sel, root = document) => root.querySelector(sel);

// Builds an element: `attrs` keys are properties, or attributes when they start with data- or
// aria-; children are nodes or strings (added as text).
function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null) continue;
    if (k.startsWith('data-') || k.startsWith('aria-')) e.setAttribute(k, String(v));
    else e[k] = v;
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return e;
}

function fmtPct(p) { return (Math.round(p * 100) / 100).toString(); }
function fmtRate(r) { return r === null ? '–' : (r >= 10 ? r.toFixed(0) : r.toFixed(2)); }
// RFC 3339 without fractional seconds: 2026-01-02 03:04:05Z.
function fmtTime(t) { return t ? String(t).replace('T', ' ').replace(/\.\d+/, '') : '?'; }
function fmtNum(n) { return Number.isInteger(n) ? String(n) : n.toFixed(2); }

function flash(msg, isError) {
  const f = $('#flash');
  f.textContent = msg;
  f.className = 'flash' + (isError ? ' error' : '');
  f.hidden = false;
}

function showToken() {
  $('#token-form').hidden = !!token;
  $('#token-set').hidden = !token;
}

function authHeaders() {
  return { 'Authorization': 'Bearer ' + token, 'X-Ficus-Actor': 'admin-page' };
}

/** Sends a mutation; asks for the token again on 401/403. */
async function mutate(method, path, body) {
  if (!token) {
    flash('Enter the admin token first.', true);
    $('#token').focus();
    return null;
  }
  let r;
  try {
    r = await fetch(path, {
      method,
      headers: Object.assign({ 'Content-Type': 'application/json' }, authHeaders()),
      body: body === undefined ? undefined : JSON.stringify(body),
    });
  } catch (e) {
    flash('Admin API unreachable: ' + e, true);
    return null;
  }
  let data = null;
  try { data = await r.json(); } catch (_) { /* not JSON */ }
  if (r.status === 401 || r.status === 403) {
    token = '';
    sessionStorage.removeItem(TOKEN_KEY);
    showToken();
    flash('Token refused (' + r.status + '): ' + ((data && data.error) || '') + ' Enter it again.', true);
    return null;
  }
  if (!r.ok) {
    flash('Failed (' + r.status + '): ' + ((data && data.error) || r.statusText), true);
    return null;
  }
  return data;
}

async function setRollout(route, input) {
  const v = Number(input.value);
  if (input.value.trim() === '' || !Number.isFinite(v) || v < 0 || v > 100) {
    flash('Percent must be a number from 0 to 100.', true);
    return;
  }
  const d = await mutate('PUT', '/admin/routes/' + encodeURIComponent(route) + '/rollout', { percent: v });
  if (d) {
    input.dataset.dirty = '';
    flash(route + ': ' + fmtPct(d.from) + ' % → ' + fmtPct(d.to) + ' % to new');
    poll();
  }
}

async function rollback(route) {
  const d = await mutate('POST', '/admin/rollback', route ? { route } : {});
  if (d) {
    const names = d.rolled_back.map((c) => c.route + ' (' + fmtPct(c.from) + ' %)').join(', ');
    flash('Rolled back to 0 %: ' + (names || 'no routes'));
    for (const i of document.querySelectorAll('.pct-input')) i.dataset.dirty = '';
    poll();
  }
}

/** Flattens summary metrics into Map("name{k=v,...}" -> value) for rate computation. */
function counterMap(metrics) {
  const m = new Map();
  for (const [name, samples] of Object.entries(metrics || {})) {
    for (const s of samples) {
      const key = name + JSON.stringify(s.labels);
      m.set(key, s.value !== undefined ? s.value : s.count);
    }
  }
  return m;
}

/** Sum of samples of `name` whose labels match `want`, and its rate since the previous poll
 *  (a series that appeared since then counts from 0). */
function sumOf(summary, name, want) {
  let total = 0; let before = 0;
  for (const s of (summary.metrics[name] || [])) {
    if (!Object.entries(want).every(([k, v]) => s.labels[k] === v)) continue;
    total += s.value !== undefined ? s.value : s.count;
    before += (prev && prev.counters.get(name + JSON.stringify(s.labels))) || 0;
  }
  let rate = null;
  if (prev) {
    const dt = (summary.at_ms - prev.at) / 1000;
    if (dt > 0) rate = Math.max(0, (total - before) / dt);
  }
  return { total, rate };
}

function renderRoutes(s) {
  const box = $('#routes');
  const seen = new Set();
  for (const r of s.routes) {
    seen.add(r.name);
    let card = box.querySelector('.card[data-route="' + CSS.escape(r.name) + '"]');
    if (!card) {
      const input = el('input', { type: 'number', min: 0, max: 100, step: 0.01, className: 'pct-input', 'aria-label': 'percent to new for ' + r.name });
      input.addEventListener('input', () => { input.dataset.dirty = '1'; });
      input.addEventListener('keydown', (e) => { if (e.key === 'Enter') setRollout(r.name, input); });
      const setBtn = el('button', { type: 'button', className: 'set-btn' }, 'Set');
      setBtn.addEventListener('click', () => setRollout(r.name, input));
      const rbBtn = el('button', { type: 'button', className: 'danger rollback-btn' }, 'Roll back');
      rbBtn.addEventListener('click', () => rollback(r.name));
      card = el('div', { className: 'card', 'data-route': r.name },
        el('h3', {}, r.name, ' ', el('span', { className: 'badge held', hidden: true }, 'held')),
        el('div', { className: 'meta' }),
        el('div', { className: 'hold', hidden: true }),
        el('div', { className: 'pct' }),
        el('div', { className: 'bar' }, el('div', {})),
        el('div', { className: 'source' }),
        el('div', { className: 'traffic' }),
        el('div', { className: 'row' }, input, el('span', {}, '%'), setBtn, rbBtn));
      box.append(card);
    }
    const methods = r.methods.length ? r.methods.join(',') : 'any method';
    $('.meta', card).textContent = methods + ' ' + r.path + ' · target ' + r.target + ' · sticky ' + r.sticky;
    const pct = $('.pct', card);
    pct.replaceChildren(fmtPct(r.percent) + ' %', el('small', {}, ' to new'));
    pct.dataset.percent = String(r.percent);
    $('.bar > div', card).style.width = Math.min(100, Math.max(0, r.percent)) + '%';
    const src = $('.source', card);
    src.className = 'source ' + r.source;
    src.textContent = r.source === 'runtime'
      ? 'set at run time by ' + (r.updated_by || '?') + ' at ' + fmtTime(r.updated_at) + ' (file says ' + fmtPct(r.config_percent) + ' %)'
      : 'from the configuration file';
    // A write hold (a cut-over in progress): who holds the writes until when, how many wait.
    $('.badge.held', card).hidden = !r.held;
    card.dataset.held = r.held ? '1' : '';
    const hold = $('.hold', card);
    hold.hidden = !r.held;
    hold.dataset.waiting = String(r.waiting_writes || 0);
    hold.dataset.inFlight = String(r.in_flight_writes || 0);
    if (r.held) {
      hold.textContent = 'writes held by ' + (r.held_by || '?') + ' until ' + fmtTime(r.held_until) +
        ' · ' + (r.waiting_writes || 0) + ' waiting · ' + (r.in_flight_writes || 0) + ' in flight';
    } else {
      hold.textContent = '';
    }
    const t = $('.traffic', card);
    const rows = [];
    for (const b of ['legacy', 'new']) {
      const all = sumOf(s, 'ficus_requests_total', { route: r.name, backend: b });
      const err = sumOf(s, 'ficus_requests_total', { route: r.name, backend: b, class: '5xx' });
      rows.push(el('span', { className: b }, b),
        el('span', { className: 'mono', 'data-backend': b, 'data-total': all.total },
          fmtRate(all.rate) + ' req/s · ' + fmtNum(all.total) + ' total · ' + fmtNum(err.total) + ' 5xx'));
    }
    t.replaceChildren(...rows);
    const input = $('.pct-input', card);
    if (document.activeElement !== input && !input.dataset.dirty) input.value = String(r.percent);
  }
  for (const c of box.querySelectorAll('.card')) if (!seen.has(c.dataset.route)) c.remove();
  if (!s.routes.length) box.replaceChildren(el('p', { className: 'empty' }, 'No routes configured.'));
}

function renderShadow(s) {
  const results = s.metrics.ficus_shadow_requests_total || [];
  const box = $('#shadow-counts');
  if (!results.length) {
    box.replaceChildren(el('p', { className: 'empty' }, s.shadow.wired
      ? 'No request has been mirrored yet.'
      : 'Shadow mode is not active in this proxy (no shadow counters registered).'));
    return;
  }
  const byRoute = new Map();
  const kinds = new Set();
  for (const x of results) {
    if (!byRoute.has(x.labels.route)) byRoute.set(x.labels.route, {});
    byRoute.get(x.labels.route)[x.labels.result] = x.value;
    kinds.add(x.labels.result);
  }
  const order = ['match', 'mismatch', 'noise', 'error', 'dropped', 'skipped'].filter((k) => kinds.has(k))
    .concat([...kinds].filter((k) => !['match', 'mismatch', 'noise', 'error', 'dropped', 'skipped'].includes(k)));
  const head = el('tr', {}, el('th', {}, 'route'), order.map((k) => el('th', {}, k)), el('th', {}, 'mismatch/s'));
  const body = [...byRoute.entries()].map(([route, c]) => el('tr', { 'data-route': route },
    el('td', {}, route),
    order.map((k) => el('td', { className: 'num' }, fmtNum(c[k] || 0))),
    el('td', { className: 'num' }, fmtRate(sumOf(s, 'ficus_shadow_requests_total', { route, result: 'mismatch' }).rate))));
  box.replaceChildren(el('div', { className: 'scroll' }, el('table', {}, el('thead', {}, head), el('tbody', {}, body))));
}

function jsonText(v) {
  if (v === undefined) return '—';
  const t = JSON.stringify(v);
  return t.length > 300 ? t.slice(0, 300) + '…' : t;
}

function renderMismatches(m) {
  const box = $('#mismatches');
  if (!m) {
    box.replaceChildren(el('p', { className: 'empty' }, token
      ? 'Loading…'
      : 'Enter the admin token above to see mismatches (they hold request and response data).'));
    return;
  }
  if (!m.available) {
    box.replaceChildren(el('p', { className: 'empty' }, m.note));
    return;
  }
  if (!m.mismatches.length) {
    box.replaceChildren(el('p', { className: 'empty' }, 'No mismatch stored. ' + (m.note || '')));
    return;
  }
  const open = new Set([...box.querySelectorAll('details[open]')].map((d) => d.dataset.id));
  box.replaceChildren(...m.mismatches.map((x) => {
    const when = new Date(x.time_ms).toISOString().replace('T', ' ').replace(/\.\d+Z$/, 'Z');
    const rows = x.diff.map((d) => el('tr', {},
      el('td', {}, el('code', {}, d.path || '(root)')),
      el('td', {}, el('span', { className: 'kind' }, d.kind)),
      el('td', {}, el('del', { className: 'mono' }, jsonText(d.legacy))),
      el('td', {}, el('ins', { className: 'mono' }, jsonText(d.new)))));
    const det = el('details', { className: 'mismatch', 'data-id': x.id },
      el('summary', {}, '#' + x.id + ' ' + when + ' · ' + x.route + ' · ' + x.method + ' ',
        el('code', {}, x.path), ' · legacy ' + x.legacy.status + ' / new ' + x.new.status +
        ' · ' + x.diff.length + (x.diff_truncated ? '+' : '') + ' difference(s)'),
      el('div', { className: 'scroll' }, el('table', {},
        el('thead', {}, el('tr', {}, el('th', {}, 'where'), el('th', {}, 'kind'), el('th', {}, 'legacy'), el('th', {}, 'new'))),
        el('tbody', {}, rows))),
      el('p', { className: 'hint' }, 'request id ', el('code', {}, x.request_id), ' · served by ' + x.primary +
        ' · full record: ficus shadow show ' + x.id));
    if (open.has(String(x.id))) det.open = true;
    return det;
  }));
}

function renderMigration(s) {
  const box = $('#migration');
  const parts = [];
  for (const [key, title] of [['migration', 'Migration'], ['drift', 'Dual-write drift']]) {
    const sec = s[key];
    if (!sec.available) {
      parts.push(el('p', {}, el('b', {}, title + ': '), el('span', { className: 'empty' }, 'not available — ' + sec.note)));
      continue;
    }
    const rows = [];
    for (const name of sec.metrics) {
      for (const x of (s.metrics[name] || [])) {
        const labels = Object.entries(x.labels).map(([k, v]) => k + '=' + v).join(' ');
        rows.push(el('tr', {}, el('td', {}, el('code', {}, name)), el('td', {}, labels),
          el('td', { className: 'num' }, fmtNum(x.value !== undefined ? x.value : x.count))));
      }
    }
    parts.push(el('h3', {}, title), el('div', { className: 'scroll' }, el('table', {}, el('tbody', {}, rows))));
  }
  box.replaceChildren(...parts);
}

/** A step's evidence (audit `detail`), in one line. */
function evidenceText(detail) {
  if (!detail) return '';
  let d;
  try { d = JSON.parse(detail); } catch (_) { return detail; }
  const e = d.evidence;
  const parts = [];
  if (e) {
    const side = (n, x) => n + ' ' + x.requests + ' req, 5xx ' + (x.error_rate === null ? '–' : (x.error_rate * 100).toFixed(2) + ' %') +
      ', p99 ' + (x.p99_ms === null ? '–' : x.p99_ms + ' ms');
    parts.push(e.phase + ' ' + e.window_s + ' s: ' + side('new', e.new) + ' · ' + side('legacy', e.legacy));
    if (e.mismatch_rate !== null) parts.push('mismatch ' + (e.mismatch_rate * 100).toFixed(2) + ' % of ' + e.compared + ' (noise excluded ' + e.noise_excluded + ')');
    if (e.cohort) parts.push('cohort [' + e.cohort.from_percent + ', ' + e.cohort.to_percent + ') %: ' + e.cohort.mismatched + ' of ' + e.cohort.compared + ' mismatched');
  }
  if (d.reason) parts.push(d.reason);
  return parts.join(' · ');
}

function renderAudit(s) {
  const rows = s.audit.map((a) => el('tr', {},
    el('td', {}, fmtTime(a.at)), el('td', {}, a.route), el('td', { className: 'num' }, fmtPct(a.from_bp / 100)),
    el('td', { className: 'num' }, fmtPct(a.to_bp / 100)), el('td', {}, a.action), el('td', {}, a.actor),
    el('td', { className: 'evidence' }, evidenceText(a.detail))));
  $('#audit tbody').replaceChildren(...(rows.length ? rows : [el('tr', {}, el('td', { colSpan: 7, className: 'empty' }, 'No change recorded yet.'))]));
}

async function planCommand(route, cmd) {
  const d = await mutate('POST', '/admin/routes/' + encodeURIComponent(route) + '/plan/' + cmd);
  if (d) {
    flash(route + ': plan ' + (d.plan ? d.plan.status : cmd));
    poll();
  }
}

function renderPlans(s) {
  const box = $('#plans');
  const plans = s.plans || [];
  if (!plans.length) {
    box.replaceChildren(el('p', { className: 'empty' }, 'No route has a [routes.plan].'));
    return;
  }
  box.replaceChildren(...plans.map((p) => {
    const st = p.plan;
    const status = st ? st.status : 'not started';
    const head = el('h3', {}, p.route + ' · ', el('span', { className: 'badge plan-' + status }, status),
      ' · at ' + fmtPct(p.percent) + ' % · steps ' + p.steps.map(fmtPct).join(' → ') + ' %' +
      (p.next_percent !== null && p.next_percent !== undefined ? ' · next ' + fmtPct(p.next_percent) + ' %' : '') +
      (st && status === 'running' ? ' · ' + st.phase + (p.phase_seconds !== null ? ' for ' + Math.round(p.phase_seconds) + ' s' : '') : ''));
    const lines = [head];
    if (p.waiting) lines.push(el('p', { className: 'hint' }, 'waiting: ' + p.waiting));
    if (st && st.reason) lines.push(el('p', { className: 'hint' }, st.reason));
    const ev = p.live || (st && st.last);
    if (ev && ev.gates.length) {
      const rows = ev.gates.map((g) => el('tr', {}, el('td', {}, g.gate),
        el('td', { className: 'num' }, g.value === null ? '–' : fmtNum(g.value)),
        el('td', { className: 'num' }, fmtNum(g.threshold)),
        el('td', {}, g.pass === null ? 'no data' : (g.pass ? 'pass' : 'FAIL'))));
      lines.push(el('table', {}, el('thead', {}, el('tr', {}, el('th', {}, 'gate'), el('th', {}, 'value'), el('th', {}, 'threshold'), el('th', {}, 'verdict'))),
        el('tbody', {}, rows)));
    }
    const listed = (p.cohort_mismatches && p.cohort_mismatches.length) ? p.cohort_mismatches : (st ? st.cohort_mismatches : []);
    if (listed.length) {
      lines.push(el('p', {}, 'Cohort mismatches (' + listed.length + '):'));
      lines.push(el('ul', { className: 'cohort' }, ...listed.slice(0, 10).map((m) =>
        el('li', {}, m.request + ' · key ' + m.key + ' · new ' + (m.new_status === null ? '–' : m.new_status) + ' · ' + m.request_id))));
    }
    const buttons = el('div', { className: 'plan-buttons' });
    const can = {
      start: !st || ['done', 'failed', 'aborted'].includes(status),
      pause: status === 'running', resume: status === 'paused', abort: status === 'running' || status === 'paused',
    };
    for (const cmd of ['start', 'pause', 'resume', 'abort']) {
      if (!can[cmd]) continue;
      const b = el('button', { type: 'button', className: cmd === 'abort' ? 'danger' : '' }, cmd[0].toUpperCase() + cmd.slice(1));
      b.addEventListener('click', () => planCommand(p.route, cmd));
      buttons.appendChild(b);
    }
    lines.push(buttons);
    return el('div', { className: 'plan card' }, ...lines);
  }));
}

async function fetchMismatches() {
  if (!token) return null;
  try {
    const r = await fetch('/admin/mismatches?limit=20', { headers: authHeaders(), cache: 'no-store' });
    if (r.status === 401 || r.status === 403) {
      return { available: false, mismatches: [], note: 'The token was refused; enter it again to see mismatches.' };
    }
    return await r.json();
  } catch (e) {
    return { available: false, mismatches: [], note: 'Cannot load mismatches: ' + e };
  }
}

// Settings an operator must know about (e.g. a backend whose certificate is not checked).
function renderWarnings(s) {
  const box = $('#warnings');
  const list = s.warnings || [];
  box.hidden = list.length === 0;
  box.replaceChildren(...list.map((w) => el('p', {}, w)));
}

async function poll() {
  clearTimeout(timer);
  try {
    const r = await fetch('/admin/summary', { cache: 'no-store' });
    if (!r.ok) throw new Error('HTTP ' + r.status);
    const s = await r.json();
    renderWarnings(s);
    renderRoutes(s);
    renderPlans(s);
    renderShadow(s);
    renderMigration(s);
    renderAudit(s);
    renderMismatches(await fetchMismatches());
    prev = { at: s.at_ms, counters: counterMap(s.metrics) };
    const st = $('#status');
    st.className = 'status';
    st.textContent = 'updated ' + new Date(s.at_ms).toLocaleTimeString() + ' · state: ' + s.state + ' · every ' + POLL_MS / 1000 + ' s';
    $('#footer').textContent = 'ficus ' + s.version + ' · Prometheus metrics at /metrics';
  } catch (e) {
    const st = $('#status');
    st.className = 'status error';
    st.textContent = 'admin API unreachable (' + e.message + '); retrying';
  }
  timer = setTimeout(poll, POLL_MS);
}

document.addEventListener('DOMContentLoaded', () => {
  showToken();
  $('#token-form').addEventListener('submit', (e) => {
    e.preventDefault();
    const v = $('#token').value.trim();
    if (!v) return;
    token = v;
    sessionStorage.setItem(TOKEN_KEY, v);
    $('#token').value = '';
    showToken();
    flash('Token kept for this tab.');
    poll();
  });
  $('#token-forget').addEventListener('click', () => {
    token = '';
    sessionStorage.removeItem(TOKEN_KEY);
    showToken();
    renderMismatches(null);
  });
  $('#rollback-all').addEventListener('click', () => rollback(null));
  poll();
});

// ficus dashboard preview: draws dashboards/grafana/ficus.json from Prometheus without Grafana.
//
// Loads the Grafana dashboard JSON, places each panel by its gridPos on a 24-column grid,
// substitutes the template variables as tests/prometheus_live.rs does ($__rate_interval -> 1m,
// $route / ${route} -> .* = All; both can be changed with ?rate_interval= and ?route=), queries
// the Prometheus HTTP API (/api/v1/query_range for timeseries panels, /api/v1/query for stat,
// bar gauge and other single-value panels) and draws every panel as inline SVG.
//
// When every panel is drawn, <body data-done="N panels, M empty, E errors">; each panel is a
// <section class="panel" data-title data-type data-state="ok|empty|error" data-points data-error>.
// Text from the dashboard or from Prometheus only ever goes into the page as text.
'use strict';

const params = new URLSearchParams(location.search);
const DASHBOARD_URL = params.get('dashboard') || '../grafana/ficus.json';
const PROM = (params.get('prometheus') || '').replace(/\/+$/, '');
const VARS = {
  route: params.get('route') || '.*',
  rateInterval: params.get('rate_interval') || '1m',
};
const MAX_POINTS = 300;

// Grafana's classic palette, and the named colours thresholds use.
const PALETTE = ['#7EB26D', '#EAB839', '#6ED0E0', '#EF843C', '#E24D42', '#1F78C1', '#BA43A9',
  '#705DA0', '#508642', '#CCA300', '#447EBC', '#C15C17', '#890F02', '#0A437C', '#6D1F62', '#584477'];
const NAMED = {
  green: '#73BF69', red: '#F2495C', orange: '#FF9830', yellow: '#FADE2A', blue: '#5794F2',
  purple: '#B877D9', 'dark-green': '#37872D', 'dark-red': '#C4162A', text: '#ccccdc',
};
const SVGNS = 'http://www.w3.org/2000/svg';
const AXIS = '#8e8e9e';
const GRIDLINE = '#2c3235';

function h(tag, attrs = {}, text) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
  if (text != null) e.textContent = text;
  return e;
}
function s(tag, attrs = {}, text) {
  const e = document.createElementNS(SVGNS, tag);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, String(v));
  if (text != null) e.textContent = text;
  return e;
}

/** The template variables, as tests/prometheus_live.rs `substitute()` replaces them. */
function substitute(expr) {
  return expr
    .split('$__rate_interval').join(VARS.rateInterval)
    .split('${route}').join(VARS.route)
    .split('$route').join(VARS.route);
}

/** now, now-<N><s|m|h|d|w>, or unix seconds (milliseconds accepted). */
function parseTime(t, now) {
  if (/^\d+(\.\d+)?$/.test(t)) return Number(t) > 1e11 ? Number(t) / 1000 : Number(t);
  if (t === 'now') return now;
  const m = /^now-(\d+)([smhdw])$/.exec(t);
  if (m) return now - Number(m[1]) * { s: 1, m: 60, h: 3600, d: 86400, w: 604800 }[m[2]];
  throw new Error(`time ${JSON.stringify(t)}: expected now, now-<N><s|m|h|d|w> or unix seconds`);
}

async function fetchJson(url) {
  let r;
  try {
    r = await fetch(url);
  } catch (e) {
    throw new Error(`${url}: ${e.message}`);
  }
  const text = await r.text();
  let j;
  try {
    j = JSON.parse(text);
  } catch (e) {
    throw new Error(`${url}: HTTP ${r.status}, not JSON: ${text.slice(0, 200)}`);
  }
  return { status: r.status, json: j };
}

async function prom(endpoint, args) {
  const { status, json } = await fetchJson(`${PROM}/api/v1/${endpoint}?${new URLSearchParams(args)}`);
  if (json.status !== 'success') {
    throw new Error(`${json.errorType || `HTTP ${status}`}: ${json.error || 'query failed'}`);
  }
  return json.data;
}

/** Prometheus sample value: a number, or null for NaN / ±Inf. */
function num(v) {
  const n = Number(v);
  return Number.isFinite(n) ? n : null;
}

function seriesName(fmt, metric, expr) {
  if (fmt && fmt !== '__auto') {
    return fmt.replace(/\{\{\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*\}\}/g, (_, k) => metric[k] ?? '');
  }
  const { __name__: name = '', ...rest } = metric;
  const labels = Object.entries(rest).map(([k, v]) => `${k}="${v}"`).join(', ');
  return labels ? `${name}{${labels}}` : name || expr;
}

// ---- number formatting, by Grafana unit ----

function fmtNum(v) {
  const a = Math.abs(v);
  if (a === 0) return '0';
  let t;
  if (a >= 100) t = v.toFixed(0);
  else if (a >= 10) t = v.toFixed(1);
  else if (a >= 1) t = v.toFixed(2);
  else if (a >= 0.001) t = v.toPrecision(2);
  else return v.toExponential(1);
  return t.includes('.') ? t.replace(/0+$/, '').replace(/\.$/, '') : t;
}
function short(v) {
  const a = Math.abs(v);
  for (const [d, sfx] of [[1e12, ' T'], [1e9, ' B'], [1e6, ' M'], [1e3, ' K']]) {
    if (a >= d) return fmtNum(v / d) + sfx;
  }
  return fmtNum(v);
}
function fmtUnit(unit, v) {
  if (v == null) return '–';
  switch (unit) {
    case 'percent': return `${fmtNum(v)}%`;
    case 'percentunit': return `${fmtNum(v * 100)}%`;
    case 's': {
      const a = Math.abs(v);
      if (a === 0) return '0 s';
      if (a < 1e-3) return `${fmtNum(v * 1e6)} µs`;
      if (a < 1) return `${fmtNum(v * 1e3)} ms`;
      if (a < 60) return `${fmtNum(v)} s`;
      if (a < 3600) return `${fmtNum(v / 60)} min`;
      if (a < 86400) return `${fmtNum(v / 3600)} hour`;
      return `${fmtNum(v / 86400)} day`;
    }
    case 'reqps': return `${short(v)} req/s`;
    case 'ops': return `${short(v)} ops/s`;
    default: return short(v);
  }
}

function color(c) {
  return NAMED[c] || c || NAMED.green;
}
function thresholdColor(defaults, v) {
  const steps = defaults.thresholds?.steps || [];
  let c = steps.length ? steps[0].color : 'green';
  for (const st of steps) if (st.value == null || (v != null && v >= st.value)) c = st.color;
  return color(c);
}

/** Nice axis ticks between lo and hi, about n of them. */
function niceTicks(lo, hi, n) {
  const raw = (hi - lo) / Math.max(1, n);
  const mag = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 2.5, 5, 10].map((m) => m * mag).find((x) => x >= raw * (1 - 1e-9));
  return step;
}

// ---- panels ----

function flatten(panels, out = []) {
  for (const p of panels || []) {
    out.push(p);
    if (p.type === 'row' && Array.isArray(p.panels)) flatten(p.panels, out);
  }
  return out;
}

function place(e, gp) {
  e.style.gridColumn = `${(gp?.x ?? 0) + 1} / span ${gp?.w ?? 12}`;
  e.style.gridRow = `${(gp?.y ?? 0) + 1} / span ${gp?.h ?? 8}`;
}

async function queryPanel(p, range) {
  const targets = (p.targets || []).filter((t) => t.expr && !t.hide);
  const series = [];
  for (const t of targets) {
    const expr = substitute(t.expr);
    if (p.type === 'timeseries') {
      const data = await prom('query_range', { query: expr, start: range.start, end: range.end, step: range.step });
      for (const r of data.result || []) {
        series.push({
          name: seriesName(t.legendFormat, r.metric || {}, expr),
          points: (r.values || []).map(([ts, v]) => [Number(ts), num(v)]),
        });
      }
    } else {
      const data = await prom('query', { query: expr, time: range.end });
      const rows = data.resultType === 'scalar' ? [{ metric: {}, value: data.result }] : data.result || [];
      for (const r of rows) {
        series.push({ name: seriesName(t.legendFormat, r.metric || {}, expr), value: num(r.value?.[1]) });
      }
    }
  }
  return series;
}

function drawTimeseries(body, legend, series, p, range) {
  const d = p.fieldConfig?.defaults || {};
  const custom = d.custom || {};
  const unit = d.unit || 'short';
  const bars = custom.drawStyle === 'bars';
  const stacked = custom.stacking?.mode === 'normal';
  const fillOpacity = (custom.fillOpacity ?? 0) / 100;
  const lineWidth = custom.lineWidth ?? 1;

  series.forEach((sr, i) => { sr.color = PALETTE[i % PALETTE.length]; });
  for (const sr of series) {
    const li = h('li');
    const sw = h('span', { class: 'sw' });
    sw.style.background = sr.color;
    li.append(sw, h('span', {}, sr.name));
    legend.append(li);
  }

  // Lower and upper edge of each point (stacked series sit on the ones before them).
  const base = new Map();
  for (const sr of series) {
    sr.pts = sr.points.map(([t, v]) => {
      if (v == null) return { t, lo: null, hi: null };
      const lo = stacked ? base.get(t) ?? 0 : 0;
      if (stacked) base.set(t, lo + v);
      return { t, lo, hi: lo + v };
    });
  }
  const vals = series.flatMap((sr) => sr.pts.filter((q) => q.hi != null).flatMap((q) => (stacked || bars ? [q.lo, q.hi] : [q.hi])));
  let dataMin = Math.min(...vals);
  let dataMax = Math.max(...vals);
  if (custom.axisSoftMin != null) dataMin = Math.min(dataMin, custom.axisSoftMin);
  if (custom.axisSoftMax != null) dataMax = Math.max(dataMax, custom.axisSoftMax);
  let yMin = d.min ?? dataMin;
  let yMax = d.max ?? dataMax;
  if (!(yMax > yMin)) {
    if (d.max == null) yMax = yMin + (Math.abs(yMin) || 1);
    else yMin = yMax - (Math.abs(yMax) || 1);
  }

  const { width: W, height: H } = body.getBoundingClientRect();
  const top = 8;
  const bottom = 20;
  const plotH = Math.max(10, H - top - bottom);
  const yStep = niceTicks(yMin, yMax, Math.max(2, Math.floor(plotH / 32)));
  if (d.min == null) yMin = Math.floor(yMin / yStep + 1e-9) * yStep;
  if (d.max == null) yMax = Math.ceil(yMax / yStep - 1e-9) * yStep;
  const yTicks = [];
  for (let v = Math.ceil(yMin / yStep - 1e-9) * yStep; v <= yMax + yStep * 1e-9; v += yStep) {
    yTicks.push(Math.abs(v) < yStep * 1e-9 ? 0 : v);
  }
  const yLabels = yTicks.map((v) => fmtUnit(unit, v));
  const left = 10 + Math.max(...yLabels.map((l) => l.length)) * 6.3;
  const right = 10;
  const plotW = Math.max(10, W - left - right);
  const x = (t) => left + ((t - range.start) / (range.end - range.start)) * plotW;
  const y = (v) => top + (1 - (Math.min(Math.max(v, yMin), yMax) - yMin) / (yMax - yMin)) * plotH;

  const svg = s('svg', { width: W, height: H, viewBox: `0 0 ${W} ${H}`, role: 'img' });
  yTicks.forEach((v, i) => {
    svg.append(s('line', { x1: left, x2: left + plotW, y1: y(v), y2: y(v), stroke: GRIDLINE }));
    svg.append(s('text', { x: left - 6, y: y(v) + 4, 'text-anchor': 'end', fill: AXIS, 'font-size': 11 }, yLabels[i]));
  });
  // Time axis.
  const span = range.end - range.start;
  const tStep = [1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400]
    .find((c) => span / c <= plotW / 80) || 86400;
  const hms = tStep < 60;
  for (let t = Math.ceil(range.start / tStep) * tStep; t <= range.end; t += tStep) {
    const dt = new Date(t * 1000);
    const pad = (n) => String(n).padStart(2, '0');
    const label = `${pad(dt.getHours())}:${pad(dt.getMinutes())}${hms ? `:${pad(dt.getSeconds())}` : ''}`;
    svg.append(s('line', { x1: x(t), x2: x(t), y1: top, y2: top + plotH, stroke: GRIDLINE }));
    const half = label.length * 3.3;
    if (x(t) - half >= 0 && x(t) + half <= W) {
      svg.append(s('text', { x: x(t), y: top + plotH + 14, 'text-anchor': 'middle', fill: AXIS, 'font-size': 11 }, label));
    }
  }

  const clipId = `clip-${p.id ?? Math.random().toString(36).slice(2)}`;
  const clip = s('clipPath', { id: clipId });
  clip.append(s('rect', { x: left, y: top - 1, width: plotW, height: plotH + 2 }));
  svg.append(clip);
  const g = s('g', { 'clip-path': `url(#${clipId})` });
  svg.append(g);

  const stepPx = (range.step / span) * plotW;
  const groupW = Math.max(2, stepPx * 0.8);
  series.forEach((sr, k) => {
    if (bars) {
      const bw = stacked ? groupW : groupW / series.length;
      for (const q of sr.pts) {
        if (q.hi == null || q.hi === q.lo) continue;
        const bx = x(q.t) - groupW / 2 + (stacked ? 0 : k * bw);
        const y0 = y(Math.max(q.lo, yMin));
        const y1 = y(q.hi);
        g.append(s('rect', {
          x: bx, y: Math.min(y0, y1), width: Math.max(1, bw - 1), height: Math.max(1, Math.abs(y0 - y1)),
          fill: sr.color, 'fill-opacity': Math.max(fillOpacity, 0.3), stroke: sr.color, 'stroke-width': 1,
        }));
      }
      return;
    }
    // Lines, broken where a value is missing (spanNulls false).
    const segments = [];
    let cur = [];
    let prevT = null;
    for (const q of sr.pts) {
      if (q.hi == null || (prevT != null && q.t - prevT > range.step * 1.5)) {
        if (cur.length) segments.push(cur);
        cur = [];
      }
      if (q.hi != null) cur.push(q);
      prevT = q.t;
    }
    if (cur.length) segments.push(cur);
    for (const seg of segments) {
      if (seg.length === 1) {
        g.append(s('circle', { cx: x(seg[0].t), cy: y(seg[0].hi), r: 2.5, fill: sr.color }));
        continue;
      }
      const upper = seg.map((q) => `${x(q.t).toFixed(1)},${y(q.hi).toFixed(1)}`);
      if (fillOpacity > 0) {
        const lower = seg.slice().reverse().map((q) => `${x(q.t).toFixed(1)},${y(Math.max(q.lo, yMin)).toFixed(1)}`);
        g.append(s('polygon', { points: [...upper, ...lower].join(' '), fill: sr.color, 'fill-opacity': fillOpacity, stroke: 'none' }));
      }
      g.append(s('polyline', { points: upper.join(' '), fill: 'none', stroke: sr.color, 'stroke-width': Math.max(1.5, lineWidth), 'stroke-linejoin': 'round' }));
    }
  });
  body.append(svg);
}

/** Appends `text` to `parent` at the largest font size up to `max` px that fits `w` px wide. */
function fitted(parent, attrs, text, w, max) {
  const t = s('text', { ...attrs, 'font-size': max }, text);
  parent.append(t);
  const len = t.getComputedTextLength();
  const fs = len > w ? Math.max(7, (max * w) / len) : max;
  t.setAttribute('font-size', fs.toFixed(1));
  return [t, fs];
}

function drawStat(body, series, p) {
  const d = p.fieldConfig?.defaults || {};
  const o = p.options || {};
  const unit = d.unit || 'short';
  // textMode auto: names only when there are several values ("none", unused here, shows the value).
  const textMode = ['name', 'value_and_name', 'value'].includes(o.textMode) ? o.textMode : series.length > 1 ? 'value_and_name' : 'value';
  const background = o.colorMode === 'background';
  const { width: W, height: H } = body.getBoundingClientRect();
  const n = series.length;
  const horizontal = W >= H;
  const gap = 6;
  const tw = horizontal ? (W - gap * (n + 1)) / n : W - 2 * gap;
  const th = horizontal ? H - 2 * gap : (H - gap * (n + 1)) / n;
  const svg = s('svg', { width: W, height: H, viewBox: `0 0 ${W} ${H}`, role: 'img' });
  body.append(svg); // in the page, so text can be measured
  // One font size for all values (and one for all names), as Grafana does.
  const tiles = series.map((sr, i) => {
    const x0 = horizontal ? gap + i * (tw + gap) : gap;
    const y0 = horizontal ? gap : gap + i * (th + gap);
    const c = o.colorMode === 'none' ? NAMED.text : thresholdColor(d, sr.value);
    if (background) svg.append(s('rect', { x: x0, y: y0, width: tw, height: th, rx: 3, fill: c }));
    const fg = background ? '#ffffff' : c;
    const big = textMode === 'name' ? sr.name : fmtUnit(unit, sr.value);
    const at = { x: x0 + tw / 2, 'text-anchor': 'middle' };
    const [tv, fv] = fitted(svg, { ...at, fill: fg, 'font-weight': 600 }, big, tw - 12, Math.min(56, th * 0.45));
    const [tn, fn] = textMode === 'value_and_name'
      ? fitted(svg, { ...at, fill: background ? fg : NAMED.text }, sr.name, tw - 12, Math.min(18, th * 0.16))
      : [null, 0];
    return { y0, tv, fv, tn, fn };
  });
  const fsVal = Math.min(...tiles.map((t) => t.fv));
  const fsName = textMode === 'value_and_name' ? Math.min(...tiles.map((t) => t.fn)) : 0;
  for (const { y0, tv, tn } of tiles) {
    tv.setAttribute('font-size', fsVal.toFixed(1));
    if (tn) {
      tn.setAttribute('font-size', fsName.toFixed(1));
      const top = y0 + (th - fsName * 1.3 - fsVal) / 2;
      tn.setAttribute('y', (top + fsName * 0.9).toFixed(1));
      tv.setAttribute('y', (top + fsName * 1.3 + fsVal * 0.85).toFixed(1));
    } else {
      tv.setAttribute('y', (y0 + th / 2 + fsVal * 0.35).toFixed(1));
    }
  }
}

function drawBarGauge(body, series, p) {
  const d = p.fieldConfig?.defaults || {};
  const unit = d.unit || 'short';
  const { width: W, height: H } = body.getBoundingClientRect();
  const values = series.map((sr) => sr.value).filter((v) => v != null);
  const min = d.min ?? Math.min(0, ...values);
  let max = d.max ?? Math.max(...values);
  if (!(max > min)) max = min + 1;
  const rowH = Math.min(48, (H - 8) / series.length);
  const labels = series.map((sr) => fmtUnit(unit, sr.value));
  const svg = s('svg', { width: W, height: H, viewBox: `0 0 ${W} ${H}`, role: 'img' });
  body.append(svg); // in the page, so text can be measured
  const valueFs = Math.min(18, Math.max(9, rowH * 0.4));
  const valueTexts = labels.map((l) => fitted(svg, { 'text-anchor': 'end', 'font-weight': 600 }, l, W / 3, valueFs)[0]);
  const valueW = 12 + Math.max(...valueTexts.map((t) => t.getComputedTextLength()));
  const barW = Math.max(10, W - 16 - valueW);
  const defs = s('defs');
  svg.append(defs);
  series.forEach((sr, i) => {
    const y0 = 4 + i * rowH;
    const c = thresholdColor(d, sr.value);
    const gid = `grad-${p.id}-${i}`;
    const grad = s('linearGradient', { id: gid, x1: 0, x2: 1, y1: 0, y2: 0 });
    grad.append(s('stop', { offset: '0%', 'stop-color': c, 'stop-opacity': 0.35 }), s('stop', { offset: '100%', 'stop-color': c, 'stop-opacity': 1 }));
    defs.append(grad);
    const nameH = Math.min(14, rowH * 0.35);
    const by = y0 + nameH + 2;
    const bh = Math.max(4, rowH - nameH - 6);
    const frac = sr.value == null ? 0 : Math.min(1, Math.max(0, (sr.value - min) / (max - min)));
    svg.append(s('text', { x: 8, y: y0 + nameH - 2, fill: NAMED.text, 'font-size': Math.max(9, nameH - 2) }, sr.name));
    svg.append(s('rect', { x: 8, y: by, width: barW, height: bh, rx: 2, fill: '#ffffff', 'fill-opacity': 0.06 }));
    svg.append(s('rect', { x: 8, y: by, width: Math.max(frac > 0 ? 2 : 0, frac * barW), height: bh, rx: 2, fill: `url(#${gid})` }));
    const vt = valueTexts[i];
    vt.setAttribute('x', W - 8);
    vt.setAttribute('y', (by + bh / 2 + Number(vt.getAttribute('font-size')) * 0.35).toFixed(1));
    vt.setAttribute('fill', c);
  });
}

async function renderPanel(p, el, range) {
  const body = el.querySelector('.pbody');
  const msg = (text) => body.append(h('div', { class: 'msg' }, text));
  try {
    const series = await queryPanel(p, range);
    const points = series.map((sr) => (sr.points ? sr.points.filter(([, v]) => v != null).length : sr.value != null ? 1 : 0));
    el.dataset.series = String(series.length);
    el.dataset.points = String(Math.max(0, ...points));
    const shown = series.filter((_, i) => points[i] > 0);
    if (!shown.length) {
      el.dataset.state = 'empty';
      msg('No data');
      return;
    }
    if (p.type === 'timeseries') {
      const legend = h('ul', { class: 'legend' });
      el.append(legend);
      drawTimeseries(body, legend, shown, p, range);
    } else if (p.type === 'bargauge' || p.type === 'gauge') {
      drawBarGauge(body, shown, p);
    } else {
      drawStat(body, shown, p);
    }
    el.dataset.state = 'ok';
  } catch (e) {
    el.dataset.state = 'error';
    el.dataset.error = String(e.message || e);
    msg(`error: ${e.message || e}`);
  }
}

async function main() {
  const banner = document.getElementById('banner');
  const meta = document.getElementById('meta');
  const grid = document.getElementById('grid');
  let dash;
  try {
    const { status, json } = await fetchJson(DASHBOARD_URL);
    if (status !== 200) throw new Error(`${DASHBOARD_URL}: HTTP ${status}`);
    dash = json;
  } catch (e) {
    banner.classList.add('failed');
    banner.textContent = `${banner.textContent} — could not load the dashboard: ${e.message}`;
    document.body.dataset.error = e.message;
    document.body.dataset.done = '0 panels, 0 empty, 1 errors';
    return;
  }
  document.getElementById('title').textContent = dash.title || 'dashboard';
  document.title = `${dash.title || 'dashboard'} — preview`;

  const now = Date.now() / 1000;
  let range;
  try {
    const start = Math.floor(parseTime(params.get('from') || dash.time?.from || 'now-1h', now));
    const end = Math.ceil(parseTime(params.get('to') || dash.time?.to || 'now', now));
    if (!(end > start)) throw new Error(`empty time range ${start} .. ${end}`);
    const step = Number(params.get('step')) || Math.max(1, Math.ceil((end - start) / MAX_POINTS));
    range = { start, end, step };
  } catch (e) {
    banner.classList.add('failed');
    document.body.dataset.error = e.message;
    document.body.dataset.done = '0 panels, 0 empty, 1 errors';
    meta.textContent = e.message;
    return;
  }

  const panels = [];
  for (const p of flatten(dash.panels)) {
    if (p.type === 'row') {
      const r = h('div', { class: 'row-title' }, p.title || '');
      place(r, p.gridPos);
      grid.append(r);
      continue;
    }
    const el = h('section', { class: 'panel', 'data-title': p.title || '', 'data-type': p.type || '' });
    if (p.description) el.title = p.description;
    el.append(h('h2', {}, p.title || ''), h('div', { class: 'pbody' }));
    place(el, p.gridPos);
    grid.append(el);
    if ((p.targets || []).some((t) => t.expr)) panels.push([p, el]);
  }

  const fmtT = (t) => new Date(t * 1000).toLocaleString('sv-SE');
  const metaParts = [
    ['Prometheus', PROM || location.origin],
    ['range', `${fmtT(range.start)} → ${fmtT(range.end)} (${range.end - range.start} s, step ${range.step} s)`],
    ['route', VARS.route === '.*' ? '.* (All)' : VARS.route],
    ['$__rate_interval', VARS.rateInterval],
  ];
  meta.replaceChildren();
  const status = h('span', {}, ` · ${panels.length} panels: drawing …`);
  metaParts.forEach(([k, v], i) => {
    if (i) meta.append(' · ');
    meta.append(`${k} `, h('b', {}, v));
  });
  meta.append(status);

  await Promise.all(panels.map(([p, el]) => renderPanel(p, el, range)));
  const count = (st) => panels.filter(([, el]) => el.dataset.state === st).length;
  const done = `${panels.length} panels, ${count('empty')} empty, ${count('error')} errors`;
  status.textContent = ` · ${done}`;
  document.body.dataset.done = done;
}

main().catch((e) => {
  document.body.dataset.error = String(e.stack || e);
  document.body.dataset.done = '0 panels, 0 empty, 1 errors';
});

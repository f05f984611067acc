// Warren dashboard: a single static page in plain JavaScript (no framework, no build).
//
// Everything shown comes from the JSON API (docs/api.md). Data from the server only
// ever reaches the page through textContent / attributes, never through innerHTML.
// The page polls the API every 2 seconds while the tab is visible; each page builds its
// controls (filters, forms) once and refreshes only the parts that show data, so typing
// and open forms are never disturbed.

'use strict';

const POLL_MS = 2000;
const TOKEN_KEY = 'warren.token';
const THEME_KEY = 'warren.theme';
const STATES = ['pending', 'future', 'running', 'completed', 'failed', 'cancelled'];
const LIST_STATES = ['all', 'unfinished', 'pending', 'future', 'running', 'failed', 'cancelled', 'completed'];
const PRIORITY_NAMES = new Map([[100, 'background'], [0, 'normal'], [-100, 'interactive'], [-200, 'update'], [-300, 'updateinteractive']]);

// ---------------------------------------------------------------------------
// DOM helpers

const $ = (sel, root = document) => root.querySelector(sel);

/** Creates an element. Strings among the children become text nodes (never markup). */
function h(tag, props, ...children) {
  const el = document.createElement(tag);
  setProps(el, props);
  appendAll(el, children);
  return el;
}

const SVG_NS = 'http://www.w3.org/2000/svg';
/** Creates an SVG element; attributes are set with setAttribute. */
function s(tag, attrs, ...children) {
  const el = document.createElementNS(SVG_NS, tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v != null) el.setAttribute(k, String(v));
  }
  appendAll(el, children);
  return el;
}

function setProps(el, props) {
  if (!props) return;
  for (const [k, v] of Object.entries(props)) {
    if (v == null || v === false) continue;
    if (k === 'class') el.className = v;
    else if (k === 'text') el.textContent = String(v);
    else if (k === 'testid') el.dataset.testid = v;
    else if (k === 'dataset') Object.assign(el.dataset, v);
    else if (k.startsWith('on') && typeof v === 'function') el.addEventListener(k.slice(2), v);
    else if (typeof v !== 'string' && k in el) el[k] = v;
    else el.setAttribute(k, v === true ? '' : String(v));
  }
}

function appendAll(el, children) {
  for (const c of children.flat(Infinity)) {
    if (c == null || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
}

/**
 * Keeps the children of `container` in step with `items`: an element per key, rebuilt
 * only when its item changed (so buttons under the pointer and expanded rows survive
 * refreshes), in the items' order.
 */
const signatures = new WeakMap();
function syncKeyed(container, items, key, build) {
  const old = new Map();
  for (const el of Array.from(container.children)) old.set(el.dataset.key, el);
  let prev = null;
  for (const item of items) {
    const k = String(key(item));
    const sig = JSON.stringify(item);
    let el = old.get(k);
    old.delete(k);
    if (!el || signatures.get(el) !== sig) {
      const fresh = build(item);
      fresh.dataset.key = k;
      signatures.set(fresh, sig);
      if (el) el.replaceWith(fresh);
      el = fresh;
    }
    const want = prev ? prev.nextSibling : container.firstChild;
    if (want !== el) container.insertBefore(el, want);
    prev = el;
  }
  for (const el of old.values()) el.remove();
}

// ---------------------------------------------------------------------------
// Time and number formatting

const pad2 = (n) => String(n).padStart(2, '0');
let clockSkew = 0; // server clock minus this browser's clock, when they differ noticeably
const serverNow = () => Date.now() + clockSkew;

const timeFmt = new Intl.DateTimeFormat(undefined, { hour: '2-digit', minute: '2-digit', second: '2-digit' });
const dayFmt = new Intl.DateTimeFormat(undefined, { month: 'short', day: 'numeric' });
const yearFmt = new Intl.DateTimeFormat(undefined, { year: 'numeric', month: 'short', day: 'numeric' });
const fullFmt = new Intl.DateTimeFormat(undefined, {
  weekday: 'short', year: 'numeric', month: 'short', day: 'numeric',
  hour: '2-digit', minute: '2-digit', second: '2-digit', timeZoneName: 'short',
});
const hmFmt = new Intl.DateTimeFormat(undefined, { hour: '2-digit', minute: '2-digit' });

/** A compact local time: the time alone today, with the day otherwise. */
function shortTime(ms) {
  const d = new Date(ms);
  const today = new Date();
  if (d.toDateString() === today.toDateString()) return timeFmt.format(d);
  if (d.getFullYear() === today.getFullYear()) return `${dayFmt.format(d)}, ${timeFmt.format(d)}`;
  return `${yearFmt.format(d)}, ${timeFmt.format(d)}`;
}
const fullTime = (ms) => `${fullFmt.format(new Date(ms))} — ${new Date(ms).toISOString()}`;

/** "just now", "12 s ago", "3 min ago", "in 2 h" … relative to the server's clock. */
function relative(ms) {
  const diff = ms - serverNow();
  const a = Math.abs(diff);
  if (a < 5000) return diff <= 0 ? 'just now' : 'in a moment';
  let text;
  if (a < 60_000) text = `${Math.round(a / 1000)} s`;
  else if (a < 3_600_000) text = `${Math.round(a / 60_000)} min`;
  else if (a < 86_400_000) text = `${Math.floor(a / 3_600_000)} h ${Math.round((a % 3_600_000) / 60_000)} min`;
  else if (a < 7 * 86_400_000) text = `${Math.floor(a / 86_400_000)} d ${Math.round((a % 86_400_000) / 3_600_000)} h`;
  else if (a < 90 * 86_400_000) text = `${Math.round(a / 86_400_000)} days`;
  else if (a < 730 * 86_400_000) text = `${Math.round(a / (30.44 * 86_400_000))} months`;
  else text = `${Math.round(a / (365.25 * 86_400_000))} years`;
  return diff < 0 ? `${text} ago` : `in ${text}`;
}

/** A duration in ms as "850 ms", "4.2 s", "3 min 05 s", "1 h 02 min". */
function duration(ms) {
  if (ms == null) return '—';
  if (ms < 1000) return `${Math.round(ms)} ms`;
  if (ms < 60_000) return `${(ms / 1000).toFixed(ms < 10_000 ? 1 : 0)} s`;
  const sec = Math.floor(ms / 1000);
  if (sec < 3600) return `${Math.floor(sec / 60)} min ${pad2(sec % 60)} s`;
  if (sec < 86_400) return `${Math.floor(sec / 3600)} h ${pad2(Math.floor((sec % 3600) / 60))} min`;
  return `${Math.floor(sec / 86_400)} d ${Math.floor((sec % 86_400) / 3600)} h`;
}

const fmtNum = (n) => (n == null ? '—' : Number(n).toLocaleString());

/** A relative time that the poll loop keeps current (data-ts holds the instant). */
function relSpan(ms, cls = 'sub') {
  return h('span', { class: `rel ${cls}`, dataset: { ts: String(ms) }, text: relative(ms) });
}

/** A time cell's content: local time on top, relative time below. */
function timeBlock(ms, { empty = '—', testid } = {}) {
  if (ms == null) return h('span', { class: 'muted', text: empty, testid });
  return h('span', { class: 'time', title: fullTime(ms), testid, dataset: { ms: String(ms) } },
    shortTime(ms), relSpan(ms));
}

function refreshRelativeTimes() {
  for (const el of document.querySelectorAll('[data-ts]')) {
    const t = relative(Number(el.dataset.ts));
    if (el.textContent !== t) el.textContent = t;
  }
}

/** datetime-local value ("2026-11-28T10:00") ⇄ epoch ms (the browser's zone). */
function localInputToMs(value) {
  if (!value) return null;
  const ms = new Date(value).getTime();
  return Number.isNaN(ms) ? NaN : ms;
}
function msToLocalInput(ms) {
  const d = new Date(ms);
  return `${d.getFullYear()}-${pad2(d.getMonth() + 1)}-${pad2(d.getDate())}T${pad2(d.getHours())}:${pad2(d.getMinutes())}`;
}

// ---------------------------------------------------------------------------
// JSON display: pretty-printed and coloured by building spans (text only).

function jsonBlock(value, testid) {
  const pre = h('pre', { class: 'code json', testid });
  if (value === undefined) {
    pre.append(h('span', { class: 'json-null', text: 'not set' }));
    return pre;
  }
  const text = JSON.stringify(value, null, 2);
  const token = /("(?:\\.|[^"\\])*")(\s*:)?|(-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?)|\b(true|false)\b|\b(null)\b/g;
  let last = 0;
  for (let m = token.exec(text); m; m = token.exec(text)) {
    if (m.index > last) pre.append(text.slice(last, m.index));
    if (m[1] && m[2]) {
      pre.append(h('span', { class: 'json-key', text: m[1] }), m[2]);
    } else if (m[1]) {
      pre.append(h('span', { class: 'json-string', text: m[1] }));
    } else if (m[3]) {
      pre.append(h('span', { class: 'json-number', text: m[3] }));
    } else if (m[4]) {
      pre.append(h('span', { class: 'json-literal', text: m[4] }));
    } else {
      pre.append(h('span', { class: 'json-null', text: m[5] }));
    }
    last = token.lastIndex;
  }
  if (last < text.length) pre.append(text.slice(last));
  return pre;
}

// ---------------------------------------------------------------------------
// Token and API

let token = null;

class ApiError extends Error {
  constructor(message, status, field) {
    super(message);
    this.status = status;
    this.field = field || null;
  }
}
class SignedOut extends Error {}

function tokenFromHash() {
  const m = /(?:^#|[#&?/])token=([^&]+)/.exec(location.hash);
  if (!m) return false;
  let value = m[1];
  try { value = decodeURIComponent(value); } catch { /* keep it as it is */ }
  sessionStorage.setItem(TOKEN_KEY, value);
  // The token must not stay in the address bar (or the history, or a bookmark).
  const rest = location.hash.replace(/[#&?]?token=[^&]*/, '').replace(/^#?[&?]?/, '');
  history.replaceState(null, '', `${location.pathname}${location.search}#${rest.startsWith('/') ? rest : '/'}`);
  return true;
}

async function api(path, { method = 'GET', body } = {}) {
  if (!token) throw new SignedOut();
  const headers = { Authorization: `Bearer ${token}`, Accept: 'application/json' };
  const init = { method, headers, cache: 'no-store' };
  if (method !== 'GET') {
    headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(body ?? {});
  }
  let res;
  try {
    res = await fetch(path, init);
  } catch (e) {
    throw new ApiError(`cannot reach the server (${e.message})`, 0);
  }
  noteServerDate(res.headers.get('Date'));
  let payload = null;
  const text = await res.text();
  if (text) {
    try { payload = JSON.parse(text); } catch { payload = null; }
  }
  if (res.status === 401) {
    signOut((payload && payload.error && payload.error.message)
      ? `The server refused the token: ${payload.error.message}. Sign in again.`
      : 'The server refused the token. Sign in again.');
    throw new SignedOut();
  }
  if (!res.ok) {
    const err = payload && payload.error;
    throw new ApiError(err && err.message ? err.message : `${res.status} ${res.statusText || 'error'}`, res.status, err && err.field);
  }
  return payload;
}

/** Estimates the server's clock from the Date header (1 s resolution: only big skews count). */
function noteServerDate(header) {
  if (!header) return;
  const server = Date.parse(header);
  if (Number.isNaN(server)) return;
  const skew = server - Date.now();
  clockSkew = Math.abs(skew) > 3000 ? skew : 0;
}

// ---------------------------------------------------------------------------
// Live updates: one poll loop for the page on screen.

const live = { timer: null, busy: false, again: false, gen: 0, page: null, lastOk: 0 };

function schedulePoll() {
  clearTimeout(live.timer);
  live.timer = null;
  if (!token || document.hidden || !live.page) return;
  live.timer = setTimeout(tick, POLL_MS);
}

/** Refreshes the current page now (after an action, a filter change, a navigation). */
function refreshNow() {
  if (live.busy) {
    live.again = true;
    return;
  }
  tick();
}

async function tick() {
  clearTimeout(live.timer);
  live.timer = null;
  if (!token || !live.page) return;
  const gen = live.gen;
  const page = live.page;
  live.busy = true;
  try {
    await page.refresh(() => gen === live.gen && token !== null);
    if (gen === live.gen) {
      live.lastOk = Date.now();
      setLive('live');
      showPageAlert(null);
    }
  } catch (e) {
    if (!(e instanceof SignedOut) && gen === live.gen) {
      setLive('error');
      showPageAlert(e instanceof ApiError ? e.message : String(e));
      if (!(e instanceof ApiError)) console.error(e);
    }
  } finally {
    live.busy = false;
    refreshRelativeTimes();
    if (gen !== live.gen || live.again) {
      live.again = false;
      if (token && !document.hidden) tick();
    } else {
      schedulePoll();
    }
  }
}

function setLive(state) {
  const box = $('#live-status');
  box.dataset.state = state;
  const text = $('#live-text');
  if (state === 'live') text.textContent = `Live · updated ${timeFmt.format(new Date())}`;
  else if (state === 'paused') text.textContent = 'Paused while the tab is hidden';
  else if (state === 'error') text.textContent = 'Connection problem · retrying';
  else text.textContent = 'Connecting…';
}

function showPageAlert(message) {
  const alert = $('#page-alert');
  alert.hidden = !message;
  alert.textContent = message ? `Could not refresh: ${message}` : '';
}

document.addEventListener('visibilitychange', () => {
  if (!token) return;
  if (document.hidden) {
    clearTimeout(live.timer);
    live.timer = null;
    setLive('paused');
  } else {
    refreshNow();
  }
});

// ---------------------------------------------------------------------------
// Messages

function message(kind, ...content) {
  return h('p', { class: `message message-${kind}`, role: kind === 'error' ? 'alert' : 'status' }, ...content);
}

function toast(kind, ...content) {
  const el = message(kind, ...content);
  el.classList.add('toast');
  $('#toasts').append(el);
  setTimeout(() => el.remove(), 6000);
}

/** Asks before a destructive action; resolves to true when confirmed. */
function confirmAction(title, text, verb) {
  const dialog = $('#confirm-dialog');
  $('#confirm-title').textContent = title;
  $('#confirm-text').textContent = text;
  $('#confirm-yes').textContent = verb;
  dialog.returnValue = '';
  return new Promise((resolve) => {
    dialog.addEventListener('close', () => resolve(dialog.returnValue === 'yes'), { once: true });
    dialog.showModal();
    $('#confirm-yes').focus();
  });
}

/** Runs an action button: busy state while it runs; the answer or error goes to `out`. */
/** The warnings of an answer that created a task (say, no live node serves its cluster), as sentences to append. */
function warningsOf(answer) {
  return (answer.warnings || []).map((w) => ` Warning: ${w}.`);
}

async function runAction(button, out, fn) {
  button.disabled = true;
  button.classList.add('busy');
  try {
    const content = await fn();
    if (content) out.replaceChildren(message('ok', ...[].concat(content)));
    return true;
  } catch (e) {
    if (e instanceof SignedOut) return false;
    out.replaceChildren(message('error', e instanceof ApiError ? e.message : String(e)));
    return false;
  } finally {
    button.classList.remove('busy');
    button.disabled = false;
    refreshNow();
  }
}

// ---------------------------------------------------------------------------
// Shared bits of pages

function stateBadge(state, { large = false, testid } = {}) {
  const cls = `badge badge-${state}${large ? ' badge-large' : ''}`;
  return h('span', { class: cls, testid, dataset: { state } }, state);
}

/** A pending task whose next attempt is later shows as "future", as the counts do. */
function displayState(task) {
  if (task.state === 'pending' && task.next_attempt != null && task.next_attempt > serverNow() + 1000) return 'future';
  return task.state;
}

function pageHead(title, subtitle, ...actions) {
  return h('header', { class: 'page-head' },
    h('div', null, h('h1', { text: title, testid: 'page-title' }), subtitle ? h('p', { class: 'subtitle', text: subtitle }) : null),
    actions.length ? h('div', { class: 'page-actions' }, actions) : null);
}

function card(title, extra, ...body) {
  return h('section', { class: 'card' },
    h('div', { class: 'card-head' }, typeof title === 'string' ? h('h2', { text: title }) : title, extra),
    ...body);
}

function emptyState(title, text) {
  return h('div', { class: 'empty' }, h('strong', { text: title }), text);
}

function priorityText(p) {
  if (p == null) return '—';
  const name = PRIORITY_NAMES.get(p);
  return name ? `${p} (${name})` : String(p);
}

let knownTypes = [];
function typeDatalist(id) {
  const list = h('datalist', { id });
  const fill = () => list.replaceChildren(...knownTypes.map((t) => h('option', { value: t })));
  fill();
  list.refill = fill;
  return list;
}

// ---------------------------------------------------------------------------
// Overview page

function overviewPage(root) {
  const tiles = h('div', { class: 'tiles', testid: 'state-tiles' });
  const tileEls = {};
  for (const state of STATES) {
    const value = h('span', { class: 'tile-value', text: '–', testid: `count-${state}` });
    const tile = h('a', { class: `tile tile-${state}`, href: `#/tasks?state=${state}`, testid: `tile-${state}` },
      h('span', { class: 'tile-label', text: state }), value,
      h('span', { class: 'tile-hint', text: tileHint(state) }));
    tileEls[state] = { tile, value };
    tiles.append(tile);
  }

  const legend = h('div', { class: 'legend', testid: 'chart-legend' });
  const chartBox = h('div', { class: 'chart', testid: 'throughput' });
  const chartCard = card(h('div', null, h('h2', { text: 'Throughput' }), h('span', { class: 'muted', text: 'tasks finished per minute, last hour' })), legend, chartBox);

  const summary = h('div', { class: 'stats', testid: 'cluster-summary' });
  const summaryCard = card('Cluster', h('a', { href: '#/nodes', class: 'small', text: 'Nodes & runners →' }), h('div', { class: 'card-body' }, summary));

  const typesBody = h('tbody');
  const typesEmpty = h('div', { hidden: true }, emptyState('No tasks yet', 'Tasks appear here once something schedules them.'));
  const typesTable = h('table', { testid: 'types-table' },
    h('thead', null, h('tr', null, h('th', { text: 'Task type' }),
      ...STATES.map((st) => h('th', { class: 'num', text: st })), h('th', { class: 'num', text: 'total' }))),
    typesBody);
  const typesCard = card('Tasks per type', h('a', { href: '#/tasks', class: 'small', text: 'All managed tasks →' }),
    h('div', { class: 'card-body flush table-wrap' }, typesTable, typesEmpty));

  root.append(
    pageHead('Overview', 'The queue at a glance. Updates every 2 seconds.'),
    tiles,
    h('div', { class: 'grid-main-side' }, chartCard, summaryCard),
    typesCard,
  );

  let lastPoints = null;
  let lastWidth = 0;
  const drawChart = () => {
    if (!lastPoints) return;
    lastWidth = chartBox.clientWidth;
    chartBox.replaceChildren(throughputChart(lastPoints, Math.max(320, lastWidth - 16)));
  };
  const resize = new ResizeObserver(() => {
    if (Math.abs(chartBox.clientWidth - lastWidth) > 4) drawChart();
  });
  resize.observe(chartBox);
  let lastThroughput = '';

  return {
    title: 'Overview',
    nav: 'overview',
    destroy() { resize.disconnect(); },
    async refresh(alive) {
      const [overview, counts, throughput] = await Promise.all([
        api('/api/overview'), api('/api/counts'), api('/api/throughput'),
      ]);
      if (!alive()) return;
      showServerInfo(overview);
      const totals = overview.totals || counts.totals || {};
      for (const state of STATES) {
        const n = totals[state] ?? 0;
        tileEls[state].value.textContent = fmtNum(n);
        tileEls[state].tile.classList.toggle('nonzero', n > 0);
      }

      const sig = JSON.stringify(throughput.points);
      if (sig !== lastThroughput) {
        lastThroughput = sig;
        lastPoints = throughput.points || [];
        drawChart();
        const sum = (k) => lastPoints.reduce((a, p) => a + (p[k] || 0), 0);
        legend.replaceChildren(
          h('span', null, h('i', { class: 'sw-completed' }), 'Completed ', h('strong', { text: fmtNum(sum('completed')) })),
          h('span', null, h('i', { class: 'sw-failed' }), 'Failed ', h('strong', { text: fmtNum(sum('failed')) })),
          h('span', { class: 'muted' }, 'Cancelled ', h('strong', { text: fmtNum(sum('cancelled')) })),
        );
      }

      const busy = overview.busy_runners ?? 0;
      const runners = overview.runners ?? 0;
      const pct = runners ? Math.round((busy / runners) * 100) : 0;
      const meter = h('div', { class: 'meter', title: `${pct}% busy` }, h('span'));
      meter.firstChild.style.width = `${pct}%`;
      summary.replaceChildren(...[
        stat('Nodes', fmtNum(overview.nodes), 'stat-nodes'),
        stat('Runners busy', `${fmtNum(busy)} of ${fmtNum(runners)}`, 'stat-runners'),
        meter,
        overview.long_transactions
          ? h('a', { class: 'warning', href: '#/nodes', testid: 'long-transactions', text: `${fmtNum(overview.long_transactions)} task transaction(s) open longer than 60 s: each holds its locks (on SQLite the only write lock) and keeps dead rows from being cleaned up. See Nodes & runners.` })
          : null,
        stat('Scheduled tasks', fmtNum(overview.scheduled), 'stat-scheduled'),
        stat('Unfinished tasks', fmtNum((totals.pending || 0) + (totals.future || 0) + (totals.running || 0)), 'stat-unfinished'),
        stat('This node', overview.node || '—', 'stat-node'),
        stat('Database', overview.backend || '—', 'stat-backend'),
        stat('Version', overview.version || '—', 'stat-version'),
      ].filter(Boolean));

      knownTypes = (counts.types || []).map((t) => t.task_type);
      typesEmpty.hidden = knownTypes.length > 0;
      typesTable.hidden = knownTypes.length === 0;
      syncKeyed(typesBody, counts.types || [], (t) => t.task_type, typeRow);
    },
  };
}

function tileHint(state) {
  return {
    pending: 'due now, waiting for a runner',
    future: 'next attempt later',
    running: 'on a runner right now',
    completed: 'finished successfully',
    failed: 'gave up — needs attention',
    cancelled: 'stopped on purpose',
  }[state];
}

function stat(label, value, testid) {
  return h('div', { class: 'stat', testid }, h('span', { class: 'label', text: label }), h('span', { class: 'value', text: value }));
}

function typeRow(t) {
  const total = STATES.reduce((a, st) => a + (t[st] || 0), 0);
  const link = (state, n) => {
    const q = new URLSearchParams({ type: t.task_type });
    if (state) q.set('state', state);
    return h('a', { href: `#/tasks?${q}`, text: fmtNum(n) });
  };
  return h('tr', { testid: 'type-row', dataset: { type: t.task_type } },
    h('td', { class: 'type' }, h('a', { href: `#/tasks?${new URLSearchParams({ type: t.task_type })}`, text: t.task_type })),
    ...STATES.map((st) => {
      const n = t[st] || 0;
      if (!n) return h('td', { class: 'num zero', text: '0' });
      return h('td', { class: `num${st === 'failed' ? ' count-failed' : ''}` }, link(st, n));
    }),
    h('td', { class: 'num', text: fmtNum(total) }));
}

/** A step for about `parts` grid lines up to `max`: 1, 2 or 5 times a power of ten. */
function niceStep(max, parts) {
  const raw = Math.max(max / parts, 1);
  const p = 10 ** Math.floor(Math.log10(raw));
  for (const m of [1, 2, 5, 10]) if (raw <= m * p) return m * p;
  return 10 * p;
}

/** The throughput chart: stacked bars (completed, failed) per minute, drawn as SVG. */
function throughputChart(points, width) {
  const height = 240;
  const m = { top: 16, right: 12, bottom: 30, left: 44 };
  const pw = width - m.left - m.right;
  const ph = height - m.top - m.bottom;
  const max = Math.max(0, ...points.map((p) => (p.completed || 0) + (p.failed || 0)));
  const step = niceStep(max, 4);
  const ticks = Math.max(Math.ceil(max / step), max < 4 ? 4 : 2);
  const top = step * ticks;
  const y = (v) => m.top + ph - (v / top) * ph;
  const n = Math.max(points.length, 1);
  const bw = pw / n;
  const barW = Math.max(1, bw * 0.72);

  const svg = s('svg', {
    viewBox: `0 0 ${width} ${height}`, width, height, role: 'img',
    'aria-label': 'Tasks finished per minute over the last hour', 'data-testid': 'throughput-chart',
  });
  svg.append(s('title', null, 'Tasks finished per minute over the last hour'));

  // Horizontal grid lines and y labels.
  for (let i = 0; i <= ticks; i++) {
    const v = step * i;
    const yy = Math.round(y(v)) + 0.5;
    svg.append(s('line', { class: i === 0 ? 'axis' : 'grid', x1: m.left, x2: width - m.right, y1: yy, y2: yy }));
    svg.append(s('text', { class: 'tick-label', x: m.left - 8, y: yy + 4, 'text-anchor': 'end' }, fmtNum(v)));
  }
  svg.append(s('line', { class: 'axis', x1: m.left + 0.5, x2: m.left + 0.5, y1: m.top, y2: m.top + ph }));
  svg.append(s('text', { class: 'axis-title', x: m.left + 6, y: m.top - 4 }, 'tasks / min'));

  // Bars, one group per minute with a full-height hover area carrying the title.
  points.forEach((p, i) => {
    const x = m.left + i * bw;
    const c = p.completed || 0;
    const f = p.failed || 0;
    const g = s('g', { class: 'bucket', 'data-testid': 'chart-bucket' });
    const from = hmFmt.format(new Date(p.at));
    const to = hmFmt.format(new Date(p.at + 60_000));
    g.append(s('title', null, `${from}–${to}: ${c} completed, ${f} failed, ${p.cancelled || 0} cancelled`));
    g.append(s('rect', { class: 'hit', x, y: m.top, width: bw, height: ph }));
    const bx = x + (bw - barW) / 2;
    if (c > 0) g.append(s('rect', { class: 'bar-completed', x: bx, y: y(c), width: barW, height: y(0) - y(c), rx: Math.min(2, barW / 3) }));
    if (f > 0) g.append(s('rect', { class: 'bar-failed', x: bx, y: y(c + f), width: barW, height: y(c) - y(c + f), rx: Math.min(2, barW / 3) }));
    svg.append(g);

    // x labels every 10 minutes, and the last bucket as "now".
    const d = new Date(p.at);
    const last = i === points.length - 1;
    if (last || (d.getMinutes() % 10 === 0 && i < points.length - 4)) {
      const lx = x + bw / 2;
      svg.append(s('line', { class: 'axis', x1: lx, x2: lx, y1: m.top + ph, y2: m.top + ph + 4 }));
      svg.append(s('text', { class: 'tick-label', x: lx, y: m.top + ph + 18, 'text-anchor': last ? 'end' : 'middle' }, last ? 'now' : hmFmt.format(d)));
    }
  });

  if (max === 0) {
    svg.append(s('text', { class: 'empty-label', x: m.left + pw / 2, y: m.top + ph / 2, 'text-anchor': 'middle' }, 'No tasks finished in the last hour'));
  }
  return svg;
}

// ---------------------------------------------------------------------------
// Managed tasks page

const tasksMemory = { query: '', pages: [], draft: null, scheduleOpen: false };

function tasksPage(root, query) {
  const f = {
    type: query.get('type') || '',
    state: LIST_STATES.includes(query.get('state')) ? query.get('state') : 'all',
    from: query.get('from') || '',
    until: query.get('until') || '',
    data: query.get('data') || '',
    data_contains: query.get('data_contains') || '',
    error_contains: query.get('error_contains') || '',
    before: query.get('before') || '',
  };
  // Pages visited before this one ("newer" goes back through them).
  const sameFilter = tasksMemory.query && filterKey(f) === filterKey(Object.fromEntries(new URLSearchParams(tasksMemory.query)));
  const pages = sameFilter && f.before ? tasksMemory.pages : [];

  // Filter bar.
  const typeInput = h('input', { id: 'filter-type', type: 'search', value: f.type, placeholder: 'all types (* is a wildcard: demo:*)', list: 'task-types', spellcheck: 'false', testid: 'filter-type' });
  const stateSelect = h('select', { id: 'filter-state', testid: 'filter-state' },
    LIST_STATES.map((st) => h('option', { value: st, text: st === 'all' ? 'all states' : st, selected: st === f.state })));
  const fromInput = h('input', { id: 'filter-from', type: 'datetime-local', value: f.from, testid: 'filter-from' });
  const untilInput = h('input', { id: 'filter-until', type: 'datetime-local', value: f.until, testid: 'filter-until' });
  const dataInput = h('input', { id: 'filter-data', type: 'search', value: f.data, placeholder: 'order.id=42', spellcheck: 'false', testid: 'filter-data' });
  const dataContainsInput = h('input', { id: 'filter-data-contains', type: 'search', value: f.data_contains, placeholder: 'any text in the data', spellcheck: 'false', testid: 'filter-data-contains' });
  const errorContainsInput = h('input', { id: 'filter-error-contains', type: 'search', value: f.error_contains, placeholder: 'any text in the last error', spellcheck: 'false', testid: 'filter-error-contains' });
  const clear = h('button', { type: 'button', class: 'btn', text: 'Clear', testid: 'filter-clear' });
  const filterError = h('div', { class: 'filter-error', hidden: true, testid: 'filter-error' });
  const datalist = typeDatalist('task-types');

  const filterBar = h('section', { class: 'card', testid: 'task-filters' },
    h('form', { class: 'filters', onsubmit: (e) => { e.preventDefault(); applyFilters(); } },
      field('Type', typeInput, 'filter-type'),
      field('State', stateSelect, 'filter-state'),
      field('Created from', fromInput, 'filter-from'),
      field('Created until', untilInput, 'filter-until'),
      field('Data field', dataInput, 'filter-data'),
      field('Data contains', dataContainsInput, 'filter-data-contains'),
      field('Error contains', errorContainsInput, 'filter-error-contains'),
      h('div', { class: 'field' }, h('span', { class: 'label', text: '\u00a0' }), clear)),
    filterError, datalist);

  // Bulk actions on every task the filter matches.
  const bulkButtons = ['retry', 'cancel', 'delete'].map((action) => h('button', {
    type: 'button', class: `btn btn-small${action === 'delete' ? ' btn-danger' : ''}`,
    text: `${action[0].toUpperCase()}${action.slice(1)} all matching`, testid: `bulk-${action}`,
  }));
  const bulkHint = h('span', { class: 'muted small', testid: 'bulk-hint' });
  const bulkOut = h('div', { class: 'bulk-out', testid: 'bulk-out' });
  const bulkBar = h('div', { class: 'bulk-bar', testid: 'bulk-bar' }, bulkHint, h('div', { class: 'pager' }, ...bulkButtons));

  // Table.
  const tbody = h('tbody');
  const table = h('table', { testid: 'tasks-table' },
    h('thead', null, h('tr', null,
      h('th', { text: 'ID' }), h('th', { text: 'Type' }), h('th', { text: 'State' }), h('th', { text: 'Created' }),
      h('th', { text: 'Next attempt' }), h('th', { class: 'num', text: 'Failures / runs' }), h('th', { text: 'Last error' }))),
    tbody);
  const empty = h('div', { hidden: true, testid: 'tasks-empty' }, emptyState('No tasks match', 'Try another state or type mask, or clear the filters.'));
  const newer = h('button', { type: 'button', class: 'btn btn-small', text: '← Newer', testid: 'paging-newer' });
  const newest = h('button', { type: 'button', class: 'btn btn-small btn-ghost', text: 'Newest', testid: 'paging-newest' });
  const older = h('button', { type: 'button', class: 'btn btn-small', text: 'Older →', testid: 'paging-older' });
  const range = h('span', { class: 'muted small', testid: 'paging-info' });
  const listCard = h('section', { class: 'card' },
    h('div', { class: 'card-body flush table-wrap' }, table, empty),
    h('div', { class: 'table-foot' }, range, h('div', { class: 'pager' }, newest, newer, older)),
    h('div', { class: 'table-foot' }, bulkBar),
    bulkOut);

  // Schedule form.
  const scheduleToggle = h('button', { type: 'button', class: 'btn btn-primary', text: 'Schedule task', testid: 'schedule-toggle', 'aria-expanded': 'false' });
  const form = scheduleForm();
  form.card.hidden = !tasksMemory.scheduleOpen;
  scheduleToggle.setAttribute('aria-expanded', String(tasksMemory.scheduleOpen));
  scheduleToggle.addEventListener('click', () => {
    tasksMemory.scheduleOpen = form.card.hidden;
    form.card.hidden = !form.card.hidden;
    scheduleToggle.setAttribute('aria-expanded', String(!form.card.hidden));
    if (!form.card.hidden) form.focus();
  });

  root.append(
    pageHead('Managed tasks', 'Tasks in the database queue, newest first.', scheduleToggle),
    form.card,
    filterBar,
    listCard,
  );

  // Filters → URL (so Back from a task returns here) → refresh.
  function current() {
    return {
      type: typeInput.value.trim(), state: stateSelect.value, from: fromInput.value, until: untilInput.value,
      data: dataInput.value.trim(), data_contains: dataContainsInput.value, error_contains: errorContainsInput.value,
      before: f.before,
    };
  }
  /** The filter as the API reads it (query parameters and a bulk request's `filter`), without paging. */
  function apiFilter() {
    const c = current();
    const out = {};
    if (c.type) out.type = c.type;
    if (c.state !== 'all') out.state = c.state;
    const from = localInputToMs(c.from);
    const until = localInputToMs(c.until);
    if (from) out.from = String(from);
    if (until) out.until = String(until);
    for (const k of ['data', 'data_contains', 'error_contains']) if (c[k].trim()) out[k] = c[k];
    return out;
  }
  function writeUrl() {
    const q = new URLSearchParams();
    const c = current();
    for (const k of ['type', 'state', 'from', 'until', 'data', 'data_contains', 'error_contains', 'before']) {
      if (c[k] && !(k === 'state' && c[k] === 'all')) q.set(k, c[k]);
    }
    const qs = q.toString();
    tasksMemory.query = qs;
    tasksMemory.pages = pages;
    setNavHref('tasks', `#/tasks${qs ? `?${qs}` : ''}`);
    history.replaceState(null, '', `#/tasks${qs ? `?${qs}` : ''}`);
  }
  function applyFilters() {
    f.before = '';
    pages.length = 0;
    writeUrl();
    lastSig = '';
    refreshNow();
  }
  let debounce = null;
  typeInput.addEventListener('input', () => {
    clearTimeout(debounce);
    debounce = setTimeout(applyFilters, 350);
  });
  typeInput.addEventListener('change', () => { clearTimeout(debounce); applyFilters(); });
  for (const el of [stateSelect, fromInput, untilInput, dataInput, dataContainsInput, errorContainsInput]) el.addEventListener('change', applyFilters);
  clear.addEventListener('click', () => {
    for (const el of [typeInput, fromInput, untilInput, dataInput, dataContainsInput, errorContainsInput]) el.value = '';
    stateSelect.value = 'all';
    applyFilters();
  });
  const pastTense = { retry: 'Retried', cancel: 'Cancelled', delete: 'Deleted' };
  const consequence = {
    retry: 'Pending, failed and cancelled tasks among them run again as soon as possible; running and completed ones are left alone.',
    cancel: 'Pending and running tasks among them are cancelled (running ones are stopped and their work rolled back); finished ones are left alone.',
    delete: 'Every one that is not running is removed from the database with its data and result. This cannot be undone.',
  };
  bulkButtons.forEach((button, i) => {
    const action = ['retry', 'cancel', 'delete'][i];
    button.addEventListener('click', async () => {
      const filter = apiFilter();
      let count;
      let upTo;
      try {
        const counted = await api(`/api/tasks/count?${new URLSearchParams(filter)}`);
        count = counted.count;
        upTo = counted.newest_id;
      } catch (e) {
        if (e instanceof SignedOut) return;
        bulkOut.replaceChildren(message('error', e instanceof ApiError ? e.message : String(e)));
        return;
      }
      if (count === 0) {
        bulkOut.replaceChildren(message('ok', 'No tasks match this filter: nothing to do.'));
        return;
      }
      const verb = `${action[0].toUpperCase()}${action.slice(1)} ${fmtNum(count)} ${count === 1 ? 'task' : 'tasks'}`;
      if (!await confirmAction(`${verb}?`, `${fmtNum(count)} ${count === 1 ? 'task matches' : 'tasks match'} this filter. ${consequence[action]}`, verb)) return;
      const ok = await runAction(button, bulkOut, async () => {
        // `up_to`: what was counted and confirmed is what is acted on, nothing scheduled since.
        const r = await api('/api/tasks/bulk', { method: 'POST', body: { action, filter, up_to: upTo } });
        const skipped = Object.entries(r.skipped || {}).map(([st, n]) => `${fmtNum(n)} ${st}`);
        return `${pastTense[action]} ${fmtNum(r.changed)} of ${fmtNum(r.matched)} matching tasks.`
          + (skipped.length ? ` Left alone: ${skipped.join(', ')}.` : '')
          + (r.moved_on ? ` ${fmtNum(r.moved_on)} changed state meanwhile and were left alone.` : '')
          + (r.refused ? ` Refused: ${fmtNum(r.refused)} (${(r.refusals || []).join('; ')}).` : '');
      });
      if (ok) {
        lastSig = '';
        refreshNow();
      }
    });
  });
  function updateBulk() {
    const none = Object.keys(apiFilter()).length === 0;
    for (const b of bulkButtons) {
      b.disabled = none;
      b.title = none ? 'Filter the tasks first: a bulk action acts on every task the filter matches' : '';
    }
    bulkHint.textContent = none
      ? 'Filter the list to act on every task that matches.'
      : 'Act on every task this filter matches, on every page:';
  }
  older.addEventListener('click', () => {
    if (!nextBefore) return;
    pages.push(f.before);
    f.before = String(nextBefore);
    writeUrl();
    refreshNow();
  });
  newer.addEventListener('click', () => {
    f.before = pages.pop() || '';
    writeUrl();
    refreshNow();
  });
  newest.addEventListener('click', () => {
    pages.length = 0;
    f.before = '';
    writeUrl();
    refreshNow();
  });
  writeUrl();

  let nextBefore = null;
  let lastSig = '';
  let typesFetched = 0;

  return {
    title: 'Managed tasks',
    nav: 'tasks',
    destroy() { clearTimeout(debounce); },
    async refresh(alive) {
      const c = current();
      updateBulk();
      const q = new URLSearchParams({ state: c.state, limit: '50', ...apiFilter() });
      if (c.before) q.set('before', c.before);
      let answer;
      try {
        answer = await api(`/api/tasks?${q}`);
      } catch (e) {
        if (e instanceof ApiError && e.status === 400) {
          if (!alive()) return;
          filterError.hidden = false;
          filterError.replaceChildren(message('error', e.message));
          for (const [name, el] of [['type', typeInput], ['from', fromInput], ['until', untilInput], ['state', stateSelect],
            ['data', dataInput], ['data_contains', dataContainsInput], ['error_contains', errorContainsInput]]) {
            el.setAttribute('aria-invalid', String(e.field === name));
          }
          return;
        }
        throw e;
      }
      if (!alive()) return;
      filterError.hidden = true;
      for (const el of [typeInput, fromInput, untilInput, stateSelect, dataInput, dataContainsInput, errorContainsInput]) el.removeAttribute('aria-invalid');

      const tasks = answer.tasks || [];
      nextBefore = answer.next_before ?? null;
      const sig = JSON.stringify(tasks);
      if (sig !== lastSig) {
        lastSig = sig;
        syncKeyed(tbody, tasks, (t) => t.id, taskRow);
      }
      table.hidden = tasks.length === 0;
      empty.hidden = tasks.length > 0;
      older.disabled = nextBefore == null;
      newer.disabled = !c.before;
      newest.hidden = pages.length < 1;
      const more = nextBefore == null ? '' : ' · more are older';
      if (!tasks.length) range.textContent = '';
      else if (c.before && !pages.length) range.textContent = `Showing ${fmtNum(tasks.length)} tasks older than #${c.before}${more}`;
      else {
        const first = pages.length * 50 + 1;
        range.textContent = `Showing ${fmtNum(first)}–${fmtNum(first + tasks.length - 1)}${more}`;
      }

      // The type suggestions (for the filter and the form), now and then.
      if (Date.now() - typesFetched > 30_000) {
        typesFetched = Date.now();
        const counts = await api('/api/counts');
        knownTypes = (counts.types || []).map((t) => t.task_type);
        datalist.refill();
        form.datalist.refill();
      }
    },
  };
}

function filterKey(f) {
  return JSON.stringify([f.type || '', f.state || 'all', f.from || '', f.until || '', f.data || '', f.data_contains || '', f.error_contains || '']);
}

function field(label, input, id, hint) {
  return h('div', { class: 'field' }, h('label', { for: id, text: label }), input, hint ? h('span', { class: 'hint', text: hint }) : null);
}

function taskRow(t) {
  const state = displayState(t);
  let next;
  if (t.state === 'pending') next = timeBlock(t.next_attempt);
  else if (t.state === 'running') next = h('span', { class: 'muted' }, 'running', t.started_at ? h('span', { class: 'sub' }, 'since ', relSpan(t.started_at, '')) : null);
  else next = h('span', { class: 'muted' }, 'finished', t.finished_at ? h('span', { class: 'sub' }, relSpan(t.finished_at, '')) : null);
  const href = `#/tasks/${t.id}`;
  const row = h('tr', { class: 'clickable', testid: 'task-row', dataset: { id: String(t.id), state: t.state } },
    h('td', { class: 'id' }, h('a', { href, text: `#${t.id}` })),
    h('td', { class: 'type' }, t.task_type, t.cluster && t.cluster !== 'default' ? h('span', { class: 'sub', text: `cluster ${t.cluster}` }) : null),
    h('td', null, stateBadge(state, { testid: 'row-state' }), stuckNote(t)),
    h('td', null, timeBlock(t.created_at)),
    h('td', null, next),
    h('td', { class: 'num' }, h('span', { class: t.failures ? 'count-failed' : 'zero', text: String(t.failures ?? 0) }), h('span', { class: 'muted', text: ` / ${t.iterations ?? 0}` })),
    h('td', { class: 'error-cell' }, t.last_error
      ? h('span', { class: 'truncate error-text', title: t.last_error, text: t.last_error })
      : h('span', { class: 'zero', text: '—' })));
  row.addEventListener('click', (e) => {
    if (e.target.closest('a') || String(window.getSelection())) return;
    location.hash = href;
  });
  return row;
}

/**
 * A task due (or running) but still unfinished an hour after it was created may be
 * stuck: say so under its state, as the reference system's checks do.
 */
function stuckNote(t) {
  const now = serverNow();
  const due = t.state === 'running' || (t.state === 'pending' && t.next_attempt <= now);
  if (!due || now - t.created_at < 3_600_000) return null;
  return h('span', { class: 'sub stuck', title: 'still unfinished more than an hour after it was created', text: 'may be stuck' });
}

function scheduleForm() {
  const d = tasksMemory.draft || { type: '', data: '{}', priority: 'normal', notBefore: '' };
  tasksMemory.draft = d;
  const datalist = typeDatalist('schedule-types');
  const type = h('input', { id: 'schedule-type', required: true, value: d.type, placeholder: 'module:type', list: 'schedule-types', spellcheck: 'false', testid: 'schedule-type' });
  const data = h('textarea', { id: 'schedule-data', rows: 5, spellcheck: 'false', testid: 'schedule-data' });
  data.value = d.data;
  const priority = h('select', { id: 'schedule-priority', testid: 'schedule-priority' },
    [['normal', 'normal (0)'], ['background', 'background (100)'], ['interactive', 'interactive (−100)'], ['update', 'update (−200)'], ['updateinteractive', 'updateinteractive (−300)']]
      .map(([v, label]) => h('option', { value: v, text: label, selected: v === d.priority })));
  const notBefore = h('input', { id: 'schedule-not-before', type: 'datetime-local', value: d.notBefore, testid: 'schedule-not-before' });
  const submit = h('button', { type: 'submit', class: 'btn btn-primary', text: 'Schedule', testid: 'schedule-submit' });
  const out = h('div', { testid: 'schedule-message', 'aria-live': 'polite' });
  const dataError = h('span', { class: 'field-error', hidden: true });

  const save = () => Object.assign(d, { type: type.value, data: data.value, priority: priority.value, notBefore: notBefore.value });
  const form = h('form', { testid: 'schedule-form', id: 'schedule-form', novalidate: true },
    h('div', { class: 'form-grid' },
      h('div', { class: 'field span-2' }, h('label', { for: 'schedule-type', text: 'Task type' }), type),
      field('Priority', priority, 'schedule-priority'),
      field('Not before', notBefore, 'schedule-not-before', 'empty: run as soon as possible'),
      h('div', { class: 'field span-4' }, h('label', { for: 'schedule-data', text: 'Data (JSON)' }), data, dataError),
      h('div', { class: 'form-actions span-4' }, submit, out)),
    datalist);
  form.addEventListener('input', save);
  form.addEventListener('change', save);
  form.addEventListener('submit', (e) => {
    e.preventDefault();
    const body = { type: type.value.trim(), priority: priority.value };
    type.setAttribute('aria-invalid', String(!body.type));
    if (!body.type) {
      out.replaceChildren(message('error', 'Give the task type, as module:type.'));
      return;
    }
    let problem = null;
    try {
      body.data = data.value.trim() ? JSON.parse(data.value) : {};
      if (body.data === null || typeof body.data !== 'object' || Array.isArray(body.data)) {
        problem = 'The data must be a JSON object, such as {"ping": 42}.';
      }
    } catch (err) {
      problem = `Not valid JSON: ${err.message}`;
    }
    data.setAttribute('aria-invalid', String(problem != null));
    dataError.hidden = problem == null;
    dataError.textContent = problem || '';
    if (problem) return;
    const nb = localInputToMs(notBefore.value);
    if (Number.isNaN(nb)) {
      out.replaceChildren(message('error', 'The not-before time is not a valid date.'));
      return;
    }
    if (nb != null) body.not_before = nb;
    runAction(submit, out, async () => {
      try {
        const r = await api('/api/tasks', { method: 'POST', body });
        return ['Scheduled task ', h('a', { href: `#/tasks/${r.id}`, text: `#${r.id}`, testid: 'scheduled-link' }), '.', ...warningsOf(r)];
      } catch (err) {
        if (err instanceof ApiError && err.field) {
          const el = { type, data, not_before: notBefore, priority }[err.field];
          if (el) el.setAttribute('aria-invalid', 'true');
        }
        throw err;
      }
    });
  });

  const close = h('button', { type: 'button', class: 'btn btn-ghost btn-small', text: 'Close' });
  const section = card(h('div', null, h('h2', { text: 'Schedule a managed task' }), h('span', { class: 'muted', text: 'POST /api/tasks — the task runs on a node that has its module' })), close,
    h('div', { class: 'card-body' }, form));
  section.dataset.testid = 'schedule-card';
  close.addEventListener('click', () => {
    section.hidden = true;
    tasksMemory.scheduleOpen = false;
    const toggle = $('[data-testid="schedule-toggle"]');
    if (toggle) toggle.setAttribute('aria-expanded', 'false');
  });
  return { card: section, datalist, focus: () => type.focus() };
}

// ---------------------------------------------------------------------------
// Task view

function taskPage(root, id) {
  const title = h('h1', { testid: 'task-title', text: `Task #${id}` });
  const stateHolder = h('span');
  const subtitle = h('p', { class: 'subtitle mono' });
  const back = h('a', { class: 'crumb', href: tasksMemory.query ? `#/tasks?${tasksMemory.query}` : '#/tasks', text: '← Managed tasks', testid: 'back-to-tasks' });

  const out = h('div', { class: 'action-message', testid: 'action-message', 'aria-live': 'polite' });
  const btn = (label, testid, cls = '') => h('button', { type: 'button', class: `btn ${cls}`, text: label, testid });
  const retry = btn('Retry now', 'action-retry', 'btn-primary');
  const at = h('input', { type: 'datetime-local', id: 'reschedule-at', testid: 'reschedule-at', 'aria-label': 'Run at' });
  const reschedule = btn('Reschedule', 'action-reschedule');
  const duplicate = btn('Duplicate', 'action-duplicate');
  const cancel = btn('Cancel', 'action-cancel', 'btn-danger');
  const del = btn('Delete', 'action-delete', 'btn-danger');
  const actions = h('section', { class: 'card', testid: 'task-actions' }, h('div', { class: 'card-body' },
    h('div', { class: 'actions-bar' }, retry, h('span', { class: 'reschedule' }, at, reschedule), duplicate, h('span', { class: 'sep' }), cancel, del),
    out));

  const body = h('div', { class: 'page', testid: 'task-body' });
  root.append(
    h('header', { class: 'page-head' }, h('div', null, back, h('div', { class: 'title-line' }, title, stateHolder), subtitle)),
    actions,
    body,
  );

  let task = null;
  let lastSig = '';
  let deleted = false;
  const post = (action, payload) => api(`/api/tasks/${id}/${action}`, { method: 'POST', body: payload || {} });

  retry.addEventListener('click', () => runAction(retry, out, async () => {
    const r = await post('retry');
    return `Task #${id} will run ${r.next_attempt && r.next_attempt > serverNow() + 1000 ? `at ${shortTime(r.next_attempt)} (its not-before time)` : 'now'}.`;
  }));
  reschedule.addEventListener('click', () => {
    const ms = localInputToMs(at.value);
    if (ms == null || Number.isNaN(ms)) {
      at.setAttribute('aria-invalid', 'true');
      out.replaceChildren(message('error', 'Choose the date and time to run it at first.'));
      at.focus();
      return;
    }
    at.removeAttribute('aria-invalid');
    runAction(reschedule, out, async () => {
      const r = await post('reschedule', { at: ms });
      return `Task #${id} will run at ${shortTime(r.next_attempt ?? ms)} (${relative(r.next_attempt ?? ms)}).`;
    });
  });
  duplicate.addEventListener('click', () => runAction(duplicate, out, async () => {
    const r = await post('duplicate');
    return ['Scheduled a copy as ', h('a', { href: `#/tasks/${r.id}`, text: `task #${r.id}`, testid: 'duplicate-link' }), '.', ...warningsOf(r)];
  }));
  cancel.addEventListener('click', async () => {
    const running = task && task.state === 'running';
    if (!await confirmAction(`Cancel task #${id}?`, running
      ? 'It is running: its runner is stopped and its work is rolled back. It will not be retried.'
      : 'It will not run again unless you retry it.', 'Cancel task')) return;
    runAction(cancel, out, async () => {
      const r = await post('cancel');
      return `Task #${id} cancelled${r.was ? ` (it was ${r.was})` : ''}.`;
    });
  });
  del.addEventListener('click', async () => {
    if (!await confirmAction(`Delete task #${id}?`, 'The task and its data, result and history are removed from the database. This cannot be undone.', 'Delete task')) return;
    const ok = await runAction(del, out, async () => {
      await post('delete');
      deleted = true;
      return null;
    });
    if (ok) {
      toast('ok', `Task #${id} deleted.`);
      location.hash = back.getAttribute('href');
    }
  });

  function updateButtons() {
    const st = task ? task.state : null;
    const can = {
      retry: ['pending', 'failed', 'cancelled'].includes(st),
      reschedule: ['pending', 'failed', 'cancelled'].includes(st),
      cancel: ['pending', 'running'].includes(st),
      delete: st != null && st !== 'running',
      // A copy is a new row made from a finished task (the API refuses unfinished ones).
      duplicate: ['completed', 'failed', 'cancelled'].includes(st),
    };
    const why = st ? `not possible while the task is ${st}` : 'the task is not loaded';
    for (const [el, ok] of [[retry, can.retry], [reschedule, can.reschedule], [cancel, can.cancel], [del, can.delete], [duplicate, can.duplicate]]) {
      if (el.classList.contains('busy')) continue;
      el.disabled = !ok;
      el.title = ok ? '' : why;
    }
    at.disabled = !can.reschedule;
  }
  updateButtons();

  return {
    title: `Task #${id}`,
    nav: 'tasks',
    async refresh(alive) {
      if (deleted) return;
      let t;
      // The runs apart: a history that cannot be read (say, a corrupt row) leaves the
      // task's own view whole and says so in its card.
      const runs = api(`/api/tasks/${id}/runs`).then((r) => r.runs || [], (e) => {
        if (e instanceof SignedOut) throw e;
        return { error: e instanceof ApiError ? e.message : String(e) };
      });
      try {
        t = await api(`/api/tasks/${id}`);
      } catch (e) {
        if (e instanceof ApiError && e.status === 404) {
          if (!alive()) return;
          task = null;
          lastSig = '';
          stateHolder.replaceChildren(stateBadge('gone', { large: true, testid: 'task-state' }));
          body.replaceChildren(h('section', { class: 'card', testid: 'task-missing' }, emptyState('This task does not exist', e.message)));
          updateButtons();
          return;
        }
        throw e;
      }
      if (!alive()) return;
      const history = await runs;
      if (!alive()) return;
      task = t;
      updateButtons();
      // The lease's renewal alone is no reason to draw the page again (it would fold
      // an unfolded log).
      const sig = JSON.stringify([{ ...t, lease_until: null }, history]);
      if (sig === lastSig) return;
      lastSig = sig;
      stateHolder.replaceChildren(stateBadge(displayState(t), { large: true, testid: 'task-state' }));
      subtitle.textContent = t.task_type;
      if (!at.value && t.next_attempt) at.value = msToLocalInput(Math.max(t.next_attempt, serverNow() + 3_600_000));
      renderTask(body, t, history);
    },
  };
}

/**
 * How far the task's latest run said it had got (`setProgress`), as a bar: live while
 * the task runs (the page refreshes), the last report once it has ended.
 */
function progressCard(t) {
  const p = t.progress;
  const pct = Math.round(p.fraction * 1000) / 10;
  const meter = h('div', { class: 'meter meter-large', role: 'progressbar', 'aria-valuemin': '0', 'aria-valuemax': '100', 'aria-valuenow': String(pct) }, h('span'));
  meter.firstChild.style.width = `${pct}%`;
  const when = t.state === 'running' ? 'reported' : 'last reported';
  return card('Progress', h('span', { class: 'muted', text: t.state === 'running' ? 'live' : 'as the run left it' }),
    h('div', { class: 'card-body', testid: 'task-progress', dataset: { fraction: String(p.fraction) } },
      meter,
      h('div', { class: 'progress-text' },
        h('strong', { text: `${pct}%`, testid: 'progress-percent' }),
        p.message ? h('span', { text: p.message, testid: 'progress-message' }) : null,
        h('span', { class: 'muted', text: when }), relSpan(p.at))));
}

/** Unfolded run logs (task id and lease token), kept open across refreshes. */
const openRunLogs = new Set();

/** The badge class of a run's outcome. */
const RUN_OUTCOME_CLASS = { completed: 'completed', failed: 'failed', cancelled: 'cancelled', retry: 'failed', lost: 'failed', restarted: 'pending', snoozed: 'pending' };

/**
 * The task's timeline: each recorded run (start, duration, node, outcome, error, and
 * its log to unfold), and the task's last run from its own row when it completed
 * without logging (such runs are not recorded).
 */
function runsCard(t, runs) {
  if (!Array.isArray(runs)) {
    return card('Runs', null, h('div', { class: 'card-body' }, message('error', `The runs could not be read: ${runs.error}`)));
  }
  const rows = runs.slice();
  const last = rows[rows.length - 1];
  if (t.state === 'completed' && t.started_at != null && !(last && last.lease_token === t.lease_token)) {
    rows.push({ lease_token: t.lease_token, node: null, started_at: t.started_at, finished_at: t.finished_at, outcome: 'completed', error: null, log: [], quiet: true });
  }
  const runRow = (r) => {
    const took = r.finished_at != null && r.started_at != null && r.finished_at >= r.started_at ? duration(r.finished_at - r.started_at) : '—';
    const log = r.log || [];
    const key = `${t.id}:${r.lease_token}`;
    const detail = log.length
      ? h('details', { class: 'run-log', testid: 'run-log', open: openRunLogs.has(key), ontoggle: (e) => {
        if (e.target.open) openRunLogs.add(key); else openRunLogs.delete(key);
      } },
        h('summary', { text: `${log.length} log ${log.length === 1 ? 'line' : 'lines'}` }),
        h('pre', { class: 'code', text: log.map((l) => `[${l.level}] ${l.message}`).join('\n') }))
      : h('span', { class: 'muted', text: r.quiet ? 'logged nothing' : 'no log' });
    return h('tr', { testid: 'run-row', dataset: { outcome: r.outcome, token: String(r.lease_token) } },
      h('td', { class: 'mono', text: String(r.lease_token) }),
      h('td', { title: fullTime(r.started_at), text: fullFmt.format(new Date(r.started_at)) }),
      h('td', { class: 'num', text: took }),
      h('td', { class: 'mono', text: r.node || '—' }),
      h('td', null, h('span', { class: `badge badge-${RUN_OUTCOME_CLASS[r.outcome] || 'pending'}`, text: r.outcome })),
      h('td', null, r.error ? h('div', { class: 'error-text', text: r.error, testid: 'run-error' }) : null, detail));
  };
  // A task keeps its newest 10 recorded runs (KEPT_RUNS_PER_TASK).
  const note = runs.length >= 10 ? 'the newest recorded runs' : `${rows.length} ${rows.length === 1 ? 'run' : 'runs'}`;
  return card('Runs', h('span', { class: 'muted', text: note }),
    h('div', { class: 'card-body flush table-wrap' }, rows.length
      ? h('table', { testid: 'task-runs' },
        h('thead', null, h('tr', null, h('th', { text: 'Lease' }), h('th', { text: 'Started' }), h('th', { class: 'num', text: 'Took' }),
          h('th', { text: 'Node' }), h('th', { text: 'Outcome' }), h('th', { text: 'Error and log' }))),
        h('tbody', null, rows.map(runRow)))
      : h('div', { class: 'empty', testid: 'task-runs' }, 'No runs yet.')));
}

function renderTask(body, t, runs) {
  const prop = (label, ...value) => [h('dt', { text: label }), h('dd', null, ...value)];
  const time = (ms, testid) => (ms == null ? h('span', { class: 'muted', text: '—', testid }) : [
    h('span', { title: fullTime(ms), testid, dataset: { ms: String(ms) }, text: fullFmt.format(new Date(ms)) }), relSpan(ms)]);
  const plain = (v, testid) => (v == null || v === '' ? h('span', { class: 'muted', text: '—', testid }) : h('span', { text: String(v), testid }));

  const details = card('Details', null, h('div', { class: 'card-body' }, h('dl', { class: 'props', testid: 'task-details' },
    prop('ID', plain(t.id, 'field-id')),
    prop('Type', h('span', { class: 'mono', text: t.task_type, testid: 'field-type' })),
    prop('State', stateBadge(t.state, { testid: 'field-state' })),
    prop('Cluster', plain(t.cluster, 'field-cluster')),
    t.held_by ? prop('Held', h('a', { href: '#/nodes', class: 'warn-text', testid: 'field-held-by',
      text: `${t.held_by.kind === 'cluster' ? 'cluster' : 'type'} ${t.held_by.name} is paused: the task starts once it is resumed` })) : null,
    prop('Priority', plain(priorityText(t.priority), 'field-priority')),
    prop('Timeout', plain(t.timeout_ms ? duration(t.timeout_ms) : 'none', 'field-timeout')),
    prop('Failures', h('span', { class: t.failures ? 'count-failed' : '', text: String(t.failures ?? 0), testid: 'field-failures' }), h('span', { class: 'sub', text: 'consecutive' })),
    prop('Iterations', plain(t.iterations ?? 0, 'field-iterations'), h('span', { class: 'sub', text: 'runs so far' })),
    prop('Lease owner', plain(t.lease_owner, 'field-lease-owner')),
    prop('Lease until', time(t.lease_until, 'field-lease-until')),
    prop('Lease token', plain(t.lease_token, 'field-lease-token')),
    t.unique ? prop('Unique key', h('span', { class: 'mono', text: t.unique.key, testid: 'field-unique-key' }),
      h('span', { class: 'sub', text: `while ${t.unique.states.join(', ')}${t.unique.period_start != null ? `, in the period from ${fullFmt.format(new Date(t.unique.period_start))}` : ''}` })) : null,
  )));

  const times = card('Times', h('span', { class: 'muted', text: 'local time' }), h('div', { class: 'card-body' }, h('dl', { class: 'props', testid: 'task-times' },
    prop('Created', time(t.created_at, 'field-created')),
    prop('Not before', time(t.not_before, 'field-not-before')),
    prop('Next attempt', time(t.next_attempt, 'field-next-attempt')),
    prop('Started', time(t.started_at, 'field-started')),
    prop('Finished', time(t.finished_at, 'field-finished')),
    prop('Took', plain(t.started_at && t.finished_at && t.finished_at >= t.started_at ? duration(t.finished_at - t.started_at) : null, 'field-took')),
  )));

  const parts = [h('div', { class: 'grid-2' }, details, times), runsCard(t, runs)];
  if (t.progress) parts.unshift(progressCard(t));

  if (t.last_error || t.last_stack) {
    parts.push(card(h('h2', { text: t.state === 'completed' ? 'Last error (before it completed)' : 'Last error' }), null, h('div', { class: 'card-body' },
      t.last_error ? h('div', { class: 'error-box', text: t.last_error, testid: 'task-error' }) : null,
      t.last_stack ? [h('h3', { class: 'stack-label', text: 'Stack trace' }), h('pre', { class: 'code', text: t.last_stack, testid: 'task-stack' })] : null)));
  }

  const jsonCard = (label, value, testid) => {
    const copy = h('button', { type: 'button', class: 'btn btn-ghost btn-small', text: 'Copy' });
    copy.addEventListener('click', async () => {
      try {
        await navigator.clipboard.writeText(JSON.stringify(value, null, 2));
        copy.textContent = 'Copied';
      } catch {
        copy.textContent = 'Copy failed';
      }
      setTimeout(() => { copy.textContent = 'Copy'; }, 1500);
    });
    return card(label, value == null ? h('span', { class: 'muted', text: 'none' }) : copy,
      h('div', { class: 'card-body' }, value == null ? h('span', { class: 'muted', text: 'null', testid }) : jsonBlock(value, testid)));
  };
  parts.push(h('div', { class: 'grid-2' }, jsonCard('Data', t.data, 'task-data'), jsonCard('Result', t.result, 'task-result')));

  const meta = t.metadata || [];
  const metaCard = card('Metadata', h('span', { class: 'muted', text: `${meta.length} ${meta.length === 1 ? 'entry' : 'entries'}` }),
    h('div', { class: 'card-body flush' }, meta.length
      ? h('table', { class: 'kv', testid: 'task-metadata' }, h('thead', null, h('tr', null, h('th', { text: 'Key' }), h('th', { text: 'Value' }))),
        h('tbody', null, meta.map(([k, v]) => h('tr', null, h('td', { text: k }), h('td', { text: v })))))
      : h('div', { class: 'empty', testid: 'task-metadata' }, 'No metadata.')));
  parts.push(h('div', { class: 'grid-2' }, jsonCard('Aux data', t.aux_data, 'task-aux-data'), metaCard));

  body.replaceChildren(...parts);
}

// ---------------------------------------------------------------------------
// Scheduled tasks page

const expandedOutputs = new Set();

function scheduledPage(root) {
  const out = h('div', { testid: 'scheduled-message', 'aria-live': 'polite' });
  const table = h('table', { testid: 'scheduled-table' },
    h('thead', null, h('tr', null,
      h('th', { text: 'Tag' }), h('th', { text: 'Schedule' }), h('th', { text: 'Next run' }), h('th', { text: 'Last start' }),
      h('th', { text: 'Last finish' }), h('th', { text: 'Outcome' }), h('th', { text: 'Status' }), h('th', { class: 'num', text: 'Actions' }))));
  const empty = h('div', { hidden: true }, emptyState('No scheduled tasks', 'Scheduled tasks come from <task> entries in the module definitions.'));
  root.append(
    pageHead('Scheduled tasks', 'Tasks that run by their cron mask, or when run by hand.'),
    out,
    h('section', { class: 'card' }, h('div', { class: 'card-body flush table-wrap' }, table, empty)),
  );

  const act = (button, tag, action) => runAction(button, out, async () => {
    const r = await api(`/api/scheduled/${encodeURIComponent(tag)}/${action}`, { method: 'POST' });
    if (action === 'run') return `${tag} will run shortly.`;
    return `${tag} is ${r.enabled ? 'enabled: it runs by its schedule' : 'disabled: it runs only when run by hand'}.`;
  });

  function group(sc) {
    const tb = h('tbody', { testid: 'scheduled-row', dataset: { tag: sc.tag } });
    const running = sc.running
      ? h('span', { class: 'badge badge-running', testid: 'scheduled-status', title: sc.run_owner ? `on ${sc.run_owner}` : '' }, 'running')
      : sc.run_requested
        ? h('span', { class: 'badge badge-requested', testid: 'scheduled-status' }, 'requested')
        : h('span', { class: `badge ${sc.enabled ? 'badge-enabled' : 'badge-disabled'}`, testid: 'scheduled-status' }, sc.enabled ? 'enabled' : 'disabled');
    const outcome = sc.last_outcome
      ? h('span', { class: `badge badge-${['completed', 'failed', 'timeout', 'cancelled'].includes(sc.last_outcome) ? sc.last_outcome : 'none'}`, testid: 'last-outcome', dataset: { outcome: sc.last_outcome } }, sc.last_outcome)
      : h('span', { class: 'muted', text: 'never ran', testid: 'last-outcome' });

    const runNow = h('button', { type: 'button', class: 'btn btn-small btn-primary', text: 'Run now', testid: 'run-now', disabled: sc.run_requested });
    runNow.addEventListener('click', () => act(runNow, sc.tag, 'run'));
    const toggle = h('button', { type: 'button', class: 'btn btn-small', text: sc.enabled ? 'Disable' : 'Enable', testid: 'toggle-enabled', 'aria-pressed': String(sc.enabled) });
    toggle.addEventListener('click', () => act(toggle, sc.tag, sc.enabled ? 'disable' : 'enable'));
    const hasOutput = sc.last_output != null && sc.last_output !== '';
    const outputToggle = h('button', { type: 'button', class: 'btn btn-small btn-ghost', testid: 'output-toggle', disabled: !hasOutput, 'aria-expanded': String(expandedOutputs.has(sc.tag)) });
    const outputRow = h('tr', { class: 'output-row', hidden: !(hasOutput && expandedOutputs.has(sc.tag)) },
      h('td', { colspan: '8' }, h('div', { class: 'muted small', text: 'Output of the last run' }), h('pre', { class: 'code wrap', text: sc.last_output || '', testid: 'output' })));
    const setToggleText = () => { outputToggle.textContent = outputRow.hidden ? 'Output ▸' : 'Output ▾'; };
    setToggleText();
    outputToggle.addEventListener('click', () => {
      if (expandedOutputs.has(sc.tag)) expandedOutputs.delete(sc.tag);
      else expandedOutputs.add(sc.tag);
      outputRow.hidden = !expandedOutputs.has(sc.tag);
      outputToggle.setAttribute('aria-expanded', String(!outputRow.hidden));
      setToggleText();
    });

    let nextRun;
    if (!sc.enabled) nextRun = h('span', { class: 'muted nowrap', text: 'by hand only', title: 'disabled: runs only when run by hand' });
    else if (!sc.mask) nextRun = h('span', { class: 'muted nowrap', text: 'by hand only', title: 'no cron mask: runs only when run by hand' });
    else nextRun = timeBlock(sc.next_run, { testid: 'next-run' });

    tb.append(h('tr', { class: sc.enabled ? '' : 'disabled' },
      h('td', { class: 'type' }, h('strong', { text: sc.tag }), sc.running && sc.run_owner ? h('span', { class: 'sub', text: `on ${sc.run_owner}` }) : null),
      h('td', { class: 'schedule-mask' }, sc.mask ? h('code', { text: sc.mask }) : h('span', { class: 'muted', text: 'no mask' }), h('span', { class: 'zone', text: sc.zone || 'UTC' })),
      h('td', null, nextRun),
      h('td', null, timeBlock(sc.last_start, { empty: 'never', testid: 'last-start' })),
      h('td', null, timeBlock(sc.last_finish, { empty: 'never', testid: 'last-finish' })),
      h('td', null, outcome),
      h('td', null, running),
      h('td', { class: 'actions' }, outputToggle, runNow, toggle)),
    outputRow);
    return tb;
  }

  return {
    title: 'Scheduled tasks',
    nav: 'scheduled',
    async refresh(alive) {
      const r = await api('/api/scheduled');
      if (!alive()) return;
      const list = r.scheduled || [];
      empty.hidden = list.length > 0;
      table.hidden = list.length === 0;
      // Each tag is its own <tbody> (its row plus its output row), kept across refreshes.
      syncTbodies(table, list, group);
    },
  };
}

/** syncKeyed for a table's <tbody> elements (the <thead> stays first). */
function syncTbodies(table, items, build) {
  // A table cannot hold a wrapper element: give syncKeyed a view of its tbodies.
  const view = {
    get children() { return Array.from(table.tBodies); },
    get firstChild() { return table.tBodies[0] || null; },
    insertBefore(el, ref) { table.insertBefore(el, ref); },
  };
  syncKeyed(view, items, (x) => x.tag, build);
}

// ---------------------------------------------------------------------------
// Nodes and runners page

function nodesPage(root) {
  const holder = h('div', { class: 'page', testid: 'nodes' });
  const runnersCard = h('div');
  const pauses = pausesCard();
  root.append(pageHead('Nodes & runners', 'Every warren serve process on this database, and what its runners are doing.'), pauses.el, holder, runnersCard);
  let lastSig = '';

  return {
    title: 'Nodes & runners',
    nav: 'nodes',
    async refresh(alive) {
      const [r, clusters] = await Promise.all([api('/api/nodes'), api('/api/clusters')]);
      if (!alive()) return;
      pauses.update(clusters);
      // running_ms changes every poll; the cards are cheap to rebuild.
      const sig = JSON.stringify(r);
      if (sig === lastSig) return;
      lastSig = sig;
      const runners = r.runners || [];
      const nodes = r.nodes || [];
      const names = new Set(nodes.map((n) => n.name));
      for (const ru of runners) {
        if (!names.has(ru.node)) {
          names.add(ru.node);
          nodes.push({ name: ru.node, started_at: null, heartbeat_at: null, info: null });
        }
      }
      if (!nodes.length) {
        holder.replaceChildren(h('section', { class: 'card' }, emptyState('No nodes', 'No warren serve process has registered with this database.')));
      } else {
        holder.replaceChildren(...nodes.map((n) => nodeCard(n, runners.filter((ru) => ru.node === n.name), n.name === r.node)));
      }
      runnersCard.replaceChildren(busyRunnersCard(runners));
    },
  };
}

/**
 * A task type's flow rules (concurrency and rate limit) and, under them, its busiest
 * keys: how many run (of the concurrency limit), how many wait because their key is
 * full, not yet due or out of rate, and when an empty rate bucket next lets one start.
 */
function concurrencyCell(t) {
  const rule = t.concurrency;
  const rate = t.rate_limit;
  if (!rule && !rate) return h('span', { class: 'muted', text: '—' });
  const field = (rule && rule.key) || (rate && rate.key);
  const per = field ? `per ${field}` : 'in all';
  const unit = { second: 's', minute: 'min', hour: 'h' };
  const keys = (t.keys || []).map((k) => {
    const waitMs = k.rate_wait_until != null ? Math.max(0, k.rate_wait_until - serverNow()) : null;
    return h('li', { testid: 'key-load', dataset: { key: k.key } },
      h('code', { text: k.key === '' ? (field ? '(none)' : 'all') : k.key }),
      rule ? ` ${fmtNum(k.running)}/${fmtNum(rule.limit)} running` : ` ${fmtNum(k.running)} running`,
      k.waiting ? h('span', { class: (rule && k.running >= rule.limit) || waitMs != null ? 'key-full' : 'muted', text: ` · ${fmtNum(k.waiting)} waiting` }) : '',
      waitMs != null ? h('span', { class: 'key-full', testid: 'rate-wait', text: ` · rate: next start in ${(waitMs / 1000).toFixed(1)} s` }) : '');
  });
  return h('div', null,
    rule ? h('span', { testid: 'concurrency-rule', text: `at most ${fmtNum(rule.limit)} running ${per}` }) : '',
    rule && rate ? h('br') : '',
    rate ? h('span', { testid: 'rate-rule', text: `at most ${fmtNum(rate.count)}/${unit[rate.period]} ${per}, bursts of ${fmtNum(rate.burst)}` }) : '',
    keys.length ? h('ul', { class: 'key-loads' }, ...keys) : '');
}

/**
 * Clusters and task types with their pause state, and a Pause / Resume button each: a
 * paused cluster or type starts no new tasks on any node (running ones finish).
 */
function pausesCard() {
  const out = h('div', { testid: 'pauses-message', 'aria-live': 'polite' });
  const clustersBody = h('tbody');
  const typesBody = h('tbody');
  const act = (button, kind, name, paused) => runAction(button, out, async () => {
    const r = await api(`/api/${kind === 'cluster' ? 'clusters' : 'types'}/${encodeURIComponent(name)}/${paused ? 'resume' : 'pause'}`, { method: 'POST' });
    const what = `${kind === 'cluster' ? 'Cluster' : 'Type'} ${name}`;
    if (!r.changed) return `${what} was ${r.paused ? 'paused' : 'running'} already.`;
    return r.paused ? `${what} is paused: running tasks finish, no new ones start.` : `${what} is resumed.`;
  });
  const stateCell = (since) => since != null
    ? h('span', { class: 'badge badge-paused', testid: 'pause-state', title: `paused ${fullTime(since)}` }, 'paused')
    : h('span', { class: 'badge badge-enabled', testid: 'pause-state' }, 'running');
  const button = (kind, name, since) => {
    const paused = since != null;
    const b = h('button', { type: 'button', class: `btn btn-small${paused ? ' btn-primary' : ''}`, text: paused ? 'Resume' : 'Pause', testid: 'pause-toggle', 'aria-pressed': String(paused) });
    b.addEventListener('click', () => act(b, kind, name, paused));
    return b;
  };
  const el = card('Clusters & task types', h('span', { class: 'muted', text: 'pause during an incident; scheduling still works' }),
    out,
    h('div', { class: 'card-body flush table-wrap' },
      h('table', { testid: 'clusters-table' },
        h('thead', null, h('tr', null, h('th', { text: 'Cluster' }), h('th', { text: 'State' }), h('th', { class: 'num', text: 'Live nodes' }), h('th', { class: 'num', text: 'Actions' }))),
        clustersBody),
      h('table', { testid: 'types-pause-table' },
        h('thead', null, h('tr', null, h('th', { text: 'Task type' }), h('th', { text: 'Cluster' }), h('th', { text: 'State' }), h('th', { text: 'Limits' }), h('th', { class: 'num', text: 'Actions' }))),
        typesBody)));
  let lastSig = '';
  return {
    el,
    update(r) {
      const sig = JSON.stringify(r);
      if (sig === lastSig) return;
      lastSig = sig;
      const clusters = r.clusters || [];
      const types = r.types || [];
      clustersBody.replaceChildren(...clusters.map((c) => h('tr', { testid: 'cluster-row', dataset: { cluster: c.name } },
        h('td', { class: 'type' }, h('strong', { text: c.name })),
        h('td', null, stateCell(c.paused_since)),
        h('td', { class: 'num', text: fmtNum(c.live_nodes) }),
        h('td', { class: 'actions' }, button('cluster', c.name, c.paused_since)))));
      const where = (t) => (t.kind === 'task' ? t.cluster : t.kind === 'scheduled' ? 'scheduled tag' : 'not registered');
      typesBody.replaceChildren(...types.map((t) => h('tr', { testid: 'type-pause-row', dataset: { type: t.name } },
        h('td', { class: 'type', text: t.name }),
        h('td', { class: t.kind === 'task' ? '' : 'muted', testid: 'type-cluster', dataset: { cluster: t.cluster || '' }, text: where(t) }),
        h('td', null, t.paused_since == null && t.cluster_paused
          ? h('span', { class: 'badge badge-paused', testid: 'pause-state', title: 'its cluster is paused' }, 'held by cluster')
          : stateCell(t.paused_since)),
        h('td', { testid: 'type-concurrency' }, concurrencyCell(t)),
        h('td', { class: 'actions' }, button('type', t.name, t.paused_since)))));
    },
  };
}

function nodeCard(node, runners, isThis) {
  const info = node.info && typeof node.info === 'object' ? node.info : {};
  let heartbeat = null;
  if (node.heartbeat_at != null) {
    const age = serverNow() - node.heartbeat_at;
    const cls = age < 15_000 ? 'fresh' : age < 45_000 ? 'late' : 'stale';
    heartbeat = h('span', { class: `heartbeat heartbeat-${cls}`, title: fullTime(node.heartbeat_at), testid: 'heartbeat' }, 'heartbeat ', relSpan(node.heartbeat_at, ''));
  }
  const meta = h('div', { class: 'node-meta' });
  const metaItem = (label, value) => meta.append(h('span', null, h('b', { text: label }), value));
  if (node.started_at != null) metaItem('up', h('span', { title: fullTime(node.started_at), text: duration(serverNow() - node.started_at) }));
  if (info.version != null) metaItem('version', String(info.version));
  if (info.pid != null) metaItem('pid', String(info.pid));
  if (Array.isArray(info.modules)) metaItem('modules', info.modules.length ? info.modules.join(', ') : 'none');
  for (const [k, v] of Object.entries(info)) {
    if (['version', 'pid', 'modules', 'clusters'].includes(k)) continue;
    metaItem(k, typeof v === 'string' ? v : JSON.stringify(v));
  }

  const clusters = new Map();
  for (const ru of runners) {
    if (!clusters.has(ru.cluster)) clusters.set(ru.cluster, []);
    clusters.get(ru.cluster).push(ru);
  }
  const clusterEls = [...clusters.entries()].sort(([a], [b]) => (a === 'default' ? -1 : b === 'default' ? 1 : a.localeCompare(b))).map(([name, list]) => {
    list.sort((a, b) => a.index - b.index);
    const busy = list.filter(runnerBusy).length;
    return h('div', { class: 'cluster', testid: 'cluster', dataset: { cluster: name } },
      h('div', { class: 'cluster-head' }, h('h3', { text: `cluster ${name}` }), h('span', { class: 'muted', text: `${busy} of ${list.length} busy` })),
      h('div', { class: 'slots' }, list.map(runnerSlot)));
  });

  return h('section', { class: 'card', testid: 'node-card', dataset: { node: node.name } },
    h('div', { class: 'card-head' },
      h('div', { class: 'node-head' }, h('span', { class: 'node-name', text: node.name }), isThis ? h('span', { class: 'pill', text: 'this node' }) : null),
      heartbeat),
    h('div', { class: 'card-body' }, meta,
      clusterEls.length ? clusterEls : h('p', { class: 'muted', text: 'No runners reported by this node.' })));
}

/** A runner is busy with a managed task (task_id), or with an ephemeral or scheduled one (type only). */
const runnerBusy = (ru) => ru.task_id != null || ru.task_type != null;

/** A task transaction open this long (ms) is warned about (as the API's long_transactions). */
const LONG_TRANSACTION_MS = 60_000;
const longTransaction = (ru) => ru.transaction_ms != null && ru.transaction_ms > LONG_TRANSACTION_MS;

function runnerSlot(ru) {
  const busy = runnerBusy(ru);
  const long = busy && ((ru.running_ms != null && ru.running_ms > 600_000) || longTransaction(ru));
  const what = ru.task_id != null
    ? h('a', { href: `#/tasks/${ru.task_id}`, text: `#${ru.task_id}` })
    : h('span', { class: 'muted', text: 'not queued' });
  return h('div', { class: `slot${busy ? ' slot-busy' : ''}${long ? ' slot-long' : ''}`, testid: 'runner-slot', dataset: { busy: String(busy) } },
    h('div', { class: 'slot-top' }, h('span', { text: `runner ${ru.index}` }), busy ? h('span', { class: 'badge badge-running' }, 'busy') : h('span', { class: 'badge badge-idle' }, 'idle')),
    busy
      ? [h('span', { class: 'slot-type', title: ru.task_type || '', text: ru.task_type || 'task' }),
        h('span', { class: 'slot-for' }, what, ` · running ${duration(ru.running_ms)}`),
        longTransaction(ru) ? h('span', { class: 'slot-warning', testid: 'slot-long-transaction', text: `transaction open ${duration(ru.transaction_ms)}` }) : null]
      : h('span', { class: 'slot-idle-text', text: 'waiting for work' }));
}

function busyRunnersCard(runners) {
  const busy = runners.filter(runnerBusy).sort((a, b) => (b.running_ms || 0) - (a.running_ms || 0));
  return card('Running now', h('span', { class: 'muted', text: `${busy.length} of ${runners.length} runners busy, longest first` }),
    h('div', { class: 'card-body flush table-wrap' }, busy.length
      ? h('table', { testid: 'runners-table' },
        h('thead', null, h('tr', null, h('th', { text: 'Task' }), h('th', { text: 'Type' }), h('th', { text: 'Node' }), h('th', { text: 'Cluster / runner' }), h('th', { class: 'num', text: 'Running for' }), h('th', { class: 'num', text: 'Transaction open' }))),
        h('tbody', null, busy.map((ru) => h('tr', null,
          h('td', { class: 'id' }, ru.task_id != null ? h('a', { href: `#/tasks/${ru.task_id}`, text: `#${ru.task_id}` }) : h('span', { class: 'muted', text: '—' })),
          h('td', { class: 'type', text: ru.task_type || '—' }),
          h('td', { class: 'mono', text: ru.node }),
          h('td', { text: `${ru.cluster} · ${ru.index}` }),
          h('td', { class: 'num', text: duration(ru.running_ms) }),
          h('td', { class: `num${longTransaction(ru) ? ' warn-text' : ''}`, text: ru.transaction_ms != null ? duration(ru.transaction_ms) : '—' })))))
      : h('div', { class: 'empty', testid: 'runners-table' }, 'All runners are idle.')));
}

// ---------------------------------------------------------------------------
// Routing and the shell

function parseHash() {
  const raw = location.hash.replace(/^#/, '') || '/';
  const [path, qs] = raw.split('?');
  return { path: path || '/', query: new URLSearchParams(qs || '') };
}

function setNavHref(nav, href) {
  const a = document.querySelector(`.nav a[data-nav="${nav}"]`);
  if (a) a.setAttribute('href', href);
}

function notFoundPage(root, path) {
  root.append(pageHead('Not found'), h('section', { class: 'card' }, emptyState(`There is no page ${path}`, h('a', { href: '#/', text: 'Go to the overview' }))));
  return { title: 'Not found', nav: null, async refresh() {} };
}

function route() {
  if (!token) return;
  live.gen += 1;
  clearTimeout(live.timer);
  if (live.page && live.page.destroy) live.page.destroy();
  const { path, query } = parseHash();
  const root = $('#page');
  root.replaceChildren();
  showPageAlert(null);
  let m;
  let page;
  if (path === '/' || path === '') page = overviewPage(root);
  else if (path === '/tasks') page = tasksPage(root, query);
  else if ((m = /^\/tasks\/(\d+)$/.exec(path))) page = taskPage(root, m[1]);
  else if (path === '/scheduled') page = scheduledPage(root);
  else if (path === '/nodes') page = nodesPage(root);
  else page = notFoundPage(root, path);
  live.page = page;
  document.title = `${page.title} · Warren`;
  for (const a of document.querySelectorAll('.nav a')) {
    if (a.dataset.nav === page.nav) a.setAttribute('aria-current', 'page');
    else a.removeAttribute('aria-current');
  }
  window.scrollTo(0, 0);
  refreshNow();
}

function showServerInfo(o) {
  const dl = $('#server-info');
  const rows = [['node', o.node], ['version', o.version], ['database', o.backend]].filter(([, v]) => v);
  const sig = JSON.stringify(rows);
  if (dl.dataset.sig === sig) return;
  dl.dataset.sig = sig;
  dl.replaceChildren(...rows.flatMap(([k, v]) => [h('dt', { text: k }), h('dd', { text: String(v), title: String(v) })]));
}

function showSignin(messageText) {
  $('#shell').hidden = true;
  $('#signin').hidden = false;
  const msg = $('#signin-message');
  msg.hidden = !messageText;
  msg.textContent = messageText || '';
  const input = $('#signin-token');
  input.value = '';
  input.focus();
}

function showShell() {
  $('#signin').hidden = true;
  $('#shell').hidden = false;
  setLive('idle');
  api('/api/overview').then(showServerInfo).catch(() => {});
  route();
}

function signOut(messageText) {
  token = null;
  sessionStorage.removeItem(TOKEN_KEY);
  clearTimeout(live.timer);
  live.gen += 1;
  if (live.page && live.page.destroy) live.page.destroy();
  live.page = null;
  $('#page').replaceChildren();
  showSignin(messageText);
}

/** The theme chosen with the toggle: 'auto' (follow the system), 'light' or 'dark'. */
let themeChoice = 'auto';
const prefersDark = window.matchMedia('(prefers-color-scheme: dark)');

/** Sets <html data-theme> to the theme in effect: the choice, or the system's on auto. */
function applyTheme(choice) {
  themeChoice = choice === 'light' || choice === 'dark' ? choice : 'auto';
  const dark = themeChoice === 'dark' || (themeChoice === 'auto' && prefersDark.matches);
  document.documentElement.dataset.theme = dark ? 'dark' : 'light';
  $('#theme-toggle').textContent = `Theme: ${themeChoice}`;
}

function boot() {
  let storedTheme = null;
  try { storedTheme = localStorage.getItem(THEME_KEY); } catch { /* storage may be off */ }
  applyTheme(storedTheme);
  prefersDark.addEventListener('change', () => applyTheme(themeChoice));
  $('#theme-toggle').addEventListener('click', () => {
    const order = ['auto', 'light', 'dark'];
    const next = order[(order.indexOf(themeChoice) + 1) % order.length];
    try { localStorage.setItem(THEME_KEY, next); } catch { /* ignore */ }
    applyTheme(next);
  });

  $('#signout').addEventListener('click', () => signOut('Signed out. Paste a token to sign in again.'));
  $('#signin-form').addEventListener('submit', async (e) => {
    e.preventDefault();
    const value = $('#signin-token').value.trim();
    if (!value) return;
    const submit = $('#signin-submit');
    submit.disabled = true;
    token = value;
    try {
      await api('/api/overview');
      sessionStorage.setItem(TOKEN_KEY, value);
      showShell();
    } catch (err) {
      if (!(err instanceof SignedOut)) {
        token = null;
        showSignin(err instanceof ApiError ? err.message : String(err));
      }
    } finally {
      submit.disabled = false;
    }
  });

  window.addEventListener('hashchange', () => {
    if (tokenFromHash()) {
      token = sessionStorage.getItem(TOKEN_KEY);
      showShell();
      return;
    }
    route();
  });

  tokenFromHash();
  token = sessionStorage.getItem(TOKEN_KEY);
  if (token) showShell();
  else showSignin(null);
}

boot();

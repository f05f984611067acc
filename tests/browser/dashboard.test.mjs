// Drives the dashboard of a running `warren serve` in headless Chromium.
//
//   WARREN_URL=http://127.0.0.1:4900 WARREN_TOKEN=… node tests/browser/dashboard.test.mjs
//
// Expects (actors/tests/dashboard_browser.rs prepares exactly this):
// - a failed managed task that completes when retried; WARREN_FAILED_TYPE (a type
//   mask, default: any type) narrows which failed task to pick;
// - a scheduled task whose tag is WARREN_SCHEDULED_TAG (default: the first listed);
// - with WARREN_UNIQUE_KEY, the failed task was scheduled with that unique key, which
//   its view must show;
// - with WARREN_LONG_TRANSACTION=1, a runner (of another node) whose task transaction
//   has been open for more than a minute, which the dashboard must warn of;
// - with WARREN_PAUSE_TYPE, a registered task type that the test pauses and resumes
//   (with its cluster) on the Nodes & runners page; it leaves the cluster paused when
//   WARREN_LEAVE_PAUSED=1, for the caller to check;
// - with WARREN_KEYED_TYPE, a task type with `concurrency="1" concurrencykey="tenant"`
//   and three tasks waiting: two of tenant a, one of tenant b;
// - with WARREN_BULK_DATA (a `PATH=VALUE` data search), cancelled tasks of
//   WARREN_BULK_COUNT (default 3) that match it, which the test retries in bulk from the
//   filtered task list; other cancelled tasks that do not match must stay cancelled;
// - with WARREN_RATED_TYPE, a task type with `ratelimit="1/h" ratelimitkey="tenant"`
//   and two tasks of tenant c scheduled due now: one runs, the other waits for the rate.
// Screenshots of every page go to WARREN_SCREENSHOTS (default: <repo>/target/screenshots).
// Exits 0 when every step passed, 1 with the failing step's name and error otherwise.

import { chromium } from 'playwright-core';
import { mkdirSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const baseUrl = (process.env.WARREN_URL || '').replace(/\/+$/, '');
const token = process.env.WARREN_TOKEN || '';
const failedType = process.env.WARREN_FAILED_TYPE || '';
const wantedTag = process.env.WARREN_SCHEDULED_TAG || '';
const longTransaction = process.env.WARREN_LONG_TRANSACTION === '1';
const uniqueKey = process.env.WARREN_UNIQUE_KEY || '';
const pauseType = process.env.WARREN_PAUSE_TYPE || '';
const leavePaused = process.env.WARREN_LEAVE_PAUSED === '1';
const keyedType = process.env.WARREN_KEYED_TYPE || '';
const ratedType = process.env.WARREN_RATED_TYPE || '';
const bulkData = process.env.WARREN_BULK_DATA || '';
const bulkCount = Number(process.env.WARREN_BULK_COUNT || '3');
// [[fraction, message] of the failed task's first run, the same of its retry], or [].
const flakyProgress = JSON.parse(process.env.WARREN_FLAKY_PROGRESS || '[]');
const shots = resolve(process.env.WARREN_SCREENSHOTS || join(here, '..', '..', 'target', 'screenshots'));
const executablePath = process.env.CHROMIUM || '/usr/bin/chromium';
const STEP_MS = 20_000;
const TASK_MS = 60_000;

if (!baseUrl || !token) {
  console.error('dashboard test: set WARREN_URL (e.g. http://127.0.0.1:4900) and WARREN_TOKEN');
  process.exit(2);
}
mkdirSync(shots, { recursive: true });

let passed = 0;
const problems = []; // console errors, page errors, CSP violations, failed requests
let browser;
let page;

async function step(name, fn) {
  const started = Date.now();
  process.stdout.write(`• ${name} … `);
  try {
    const result = await fn();
    passed += 1;
    console.log(`ok (${Date.now() - started} ms)`);
    return result;
  } catch (e) {
    console.log('FAILED');
    const err = new Error(`step "${name}" failed: ${e && e.message ? e.message : e}`);
    err.cause = e;
    throw err;
  }
}

function check(condition, message) {
  if (!condition) throw new Error(message);
}

/** Waits until the task view's progress bar shows `[fraction, message]`. */
async function expectProgress([fraction, message], whose) {
  const bar = page.locator(`[data-testid="task-progress"][data-fraction="${fraction}"]`);
  await bar.waitFor({ timeout: STEP_MS }).catch(() => {
    throw new Error(`the progress bar does not show ${whose}'s ${fraction} (${message})`);
  });
  const percent = (await bar.locator('[data-testid="progress-percent"]').textContent()).trim();
  check(percent === `${Math.round(fraction * 1000) / 10}%`, `the progress reads "${percent}" for ${fraction}`);
  const shown = (await bar.locator('[data-testid="progress-message"]').textContent()).trim();
  check(shown === message, `the progress message reads "${shown}", expected "${message}"`);
  const width = await bar.locator('.meter > span').evaluate((el) => el.style.width);
  check(width === `${Math.round(fraction * 1000) / 10}%`, `the bar is ${width} wide for ${fraction}`);
}

async function screenshot(name) {
  const path = join(shots, `${name}.png`);
  await page.screenshot({ path, fullPage: true });
  return path;
}

/** Watches a page for anything the browser reports as wrong. */
function watch(p, label) {
  p.on('pageerror', (e) => problems.push(`${label}: uncaught exception: ${e.message}`));
  p.on('console', (msg) => {
    if (msg.type() !== 'error') return;
    if (label === 'sign-in' && msg.text().includes('401')) return;
    problems.push(`${label}: console error: ${msg.text()}`);
  });
  p.on('response', (r) => {
    // 401 is expected once, for the deliberately wrong token of the sign-in step.
    if (r.status() >= 400 && !(r.status() === 401 && label === 'sign-in')) {
      problems.push(`${label}: HTTP ${r.status()} for ${r.request().method()} ${r.url()}`);
    }
  });
}

async function main() {
  browser = await chromium.launch({ executablePath, headless: true, args: ['--no-sandbox'] });
  const context = await browser.newContext({ viewport: { width: 1440, height: 900 }, colorScheme: 'light' });
  page = await context.newPage();
  page.setDefaultTimeout(STEP_MS);
  watch(page, 'dashboard');

  await step('open the dashboard with #token=…', async () => {
    await page.goto(`${baseUrl}/#token=${encodeURIComponent(token)}`);
    await page.locator('#shell').waitFor({ state: 'visible' });
    check(!page.url().includes('token='), `the token is still in the address bar: ${page.url()}`);
    const stored = await page.evaluate(() => sessionStorage.getItem('warren.token'));
    check(stored === token, 'the token was not kept in sessionStorage');
    await page.locator('#live-status[data-state="live"]').waitFor();
  });

  await step('overview: tiles and the throughput chart render', async () => {
    await page.locator('[data-testid="nav-overview"]').click();
    await page.locator('[data-testid="count-failed"]').filter({ hasNotText: '–' }).waitFor();
    const chart = page.locator('svg[data-testid="throughput-chart"]');
    await chart.waitFor();
    const buckets = await chart.locator('[data-testid="chart-bucket"]').count();
    check(buckets === 60, `the chart has ${buckets} minute buckets, expected 60`);
    const titles = await chart.locator('[data-testid="chart-bucket"] title').count();
    check(titles === 60, `only ${titles} buckets have a hover title`);
    const labels = await chart.locator('text.tick-label').count();
    check(labels >= 6, `the chart has only ${labels} axis labels`);
    const box = await chart.boundingBox();
    check(box && box.width > 300 && box.height > 200, `the chart is too small: ${JSON.stringify(box)}`);
    const completedTiles = await page.locator('[data-testid="count-completed"]').textContent();
    check(/^\d[\d,.\s]*$/.test(completedTiles.trim()), `the completed tile shows "${completedTiles}"`);
    await page.locator('[data-testid="types-table"] [data-testid="type-row"]').first().waitFor();
    await screenshot('overview');
  });

  const taskId = await step('managed tasks: filter state=failed and find the failed task', async () => {
    await page.locator('[data-testid="nav-tasks"]').click();
    await page.locator('[data-testid="tasks-table"]').waitFor();
    if (failedType) await page.locator('[data-testid="filter-type"]').fill(failedType);
    await page.locator('[data-testid="filter-state"]').selectOption('failed');
    // The filter is in the URL too, so a reload or Back keeps it.
    await page.waitForURL(/state=failed/);
    const rows = page.locator('[data-testid="task-row"]');
    await page.waitForFunction(() => {
      const all = [...document.querySelectorAll('[data-testid="task-row"]')];
      return all.length > 0 && all.every((r) => r.dataset.state === 'failed');
    }, null, { timeout: STEP_MS });
    const count = await rows.count();
    const row = rows.first();
    const id = await row.getAttribute('data-id');
    check(id && /^\d+$/.test(id), `the failed row has no task id (${id})`);
    await screenshot('tasks');
    console.log(`(${count} failed; picked #${id}) `);
    await row.locator('td.type').click();
    await page.waitForURL(new RegExp(`#/tasks/${id}$`));
    return id;
  });

  await step(`task view: #${taskId} shows its fields`, async () => {
    await page.locator('[data-testid="task-state"][data-state="failed"]').waitFor();
    await page.locator('[data-testid="field-type"]').waitFor();
    const error = page.locator('[data-testid="task-error"]');
    check(await error.count() === 1, 'the failed task shows no last error');
    check((await error.textContent()).trim().length > 0, 'the last error is empty');
    await page.locator('[data-testid="task-data"]').waitFor();
    const created = await page.locator('[data-testid="field-created"]').textContent();
    check(created.trim() && created.trim() !== '—', 'the creation time is missing');
    if (uniqueKey) {
      const key = page.locator('[data-testid="field-unique-key"]');
      check(await key.count() === 1, 'the task view shows no unique key');
      const shown = (await key.textContent()).trim();
      check(shown === uniqueKey, `the unique key shows "${shown}", expected "${uniqueKey}"`);
    }
    if (flakyProgress.length) {
      await expectProgress(flakyProgress[0], 'the failed run');
    }
    await screenshot('task-failed');
  });

  await step(`task view: Retry #${taskId} and wait until it completed`, async () => {
    await page.locator('[data-testid="action-retry"]').click();
    await page.locator('[data-testid="action-message"] .message-ok').waitFor();
    await page.locator('[data-testid="task-state"][data-state="completed"]').waitFor({ timeout: TASK_MS });
    const finished = await page.locator('[data-testid="field-finished"]').getAttribute('data-ms');
    check(finished && Number(finished) > 0, 'the completed task has no finish time');
    check(await page.locator('[data-testid="action-retry"]').isDisabled(), 'Retry stays enabled for a completed task');
    // The timeline: the failed first run (recorded, with its error), then the run the
    // retry made.
    await page.waitForFunction(() => {
      const rows = [...document.querySelectorAll('[data-testid="run-row"]')];
      return rows.length >= 2 && rows[0].dataset.outcome === 'failed' && rows[rows.length - 1].dataset.outcome === 'completed';
    }, null, { timeout: STEP_MS });
    const firstError = (await page.locator('[data-testid="run-row"]').first().locator('[data-testid="run-error"]').textContent()).trim();
    check(firstError.length > 0, 'the failed run shows no error');
    if (flakyProgress.length) {
      await expectProgress(flakyProgress[1], 'the retried run');
    }
    await screenshot('task');
  });

  await step('managed tasks: Back keeps the filter', async () => {
    await page.goBack();
    await page.waitForURL(/#\/tasks\?.*state=failed/);
    const value = await page.locator('[data-testid="filter-state"]').inputValue();
    check(value === 'failed', `the state filter is "${value}" after going back`);
    await page.waitForFunction((id) => !document.querySelector(`[data-testid="task-row"][data-id="${id}"]`), taskId, { timeout: STEP_MS });
  });

  if (bulkData) {
    await step(`managed tasks: retry every cancelled task with ${bulkData} in bulk`, async () => {
      await page.locator('[data-testid="filter-clear"]').click();
      // Without a filter, bulk actions are off.
      check(await page.locator('[data-testid="bulk-retry"]').isDisabled(), 'bulk retry is enabled with no filter');
      await page.locator('[data-testid="filter-state"]').selectOption('cancelled');
      await page.locator('[data-testid="filter-data"]').fill(bulkData);
      await page.locator('[data-testid="filter-data"]').press('Enter');
      await page.waitForURL(/data=/);
      await page.waitForFunction((n) => {
        const all = [...document.querySelectorAll('[data-testid="task-row"]')];
        return all.length === n && all.every((r) => r.dataset.state === 'cancelled');
      }, bulkCount, { timeout: STEP_MS });
      await page.locator('[data-testid="bulk-retry"]:not([disabled])').click();
      const dialog = page.locator('[data-testid="confirm-dialog"]');
      await dialog.waitFor({ state: 'visible' });
      const title = (await page.locator('#confirm-title').textContent()).trim();
      check(title === `Retry ${bulkCount} tasks?`, `the confirmation asks "${title}"`);
      await screenshot('tasks-bulk-confirm');
      await page.locator('[data-testid="confirm-yes"]').click();
      const done = page.locator('[data-testid="bulk-out"] .message-ok');
      await done.waitFor();
      const said = (await done.textContent()).trim();
      check(said.startsWith(`Retried ${bulkCount} of ${bulkCount} matching tasks.`), `the bulk retry says "${said}"`);
      // The list (still filtered on cancelled) empties.
      await page.locator('[data-testid="tasks-empty"]').waitFor({ state: 'visible' });
      await screenshot('tasks-bulk-retried');
      await page.locator('[data-testid="filter-clear"]').click();
    });
  }

  await step('scheduled tasks: Run now and wait for the run to finish', async () => {
    await page.locator('[data-testid="nav-scheduled"]').click();
    await page.locator('[data-testid="scheduled-table"]').waitFor();
    const group = wantedTag
      ? page.locator(`[data-testid="scheduled-row"][data-tag="${wantedTag}"]`)
      : page.locator('[data-testid="scheduled-row"]').first();
    await group.waitFor();
    const tag = await group.getAttribute('data-tag');
    const finishOf = async () => Number(await group.locator('[data-testid="last-finish"]').getAttribute('data-ms')) || 0;
    const before = await finishOf();
    const clickedAt = Date.now();
    await group.locator('[data-testid="run-now"]').click();
    await page.locator('[data-testid="scheduled-message"] .message-ok').waitFor();
    await page.waitForFunction(({ tag, before }) => {
      const g = document.querySelector(`[data-testid="scheduled-row"][data-tag="${tag}"]`);
      const el = g && g.querySelector('[data-testid="last-finish"]');
      return el && Number(el.dataset.ms || 0) > before;
    }, { tag, before }, { timeout: TASK_MS });
    const after = await finishOf();
    check(after > before, `last finish did not move (${before} → ${after})`);
    const outcome = await group.locator('[data-testid="last-outcome"]').getAttribute('data-outcome');
    check(outcome, `${tag} has no outcome after its run`);
    console.log(`(${tag}: ${outcome}, ${Math.round((Date.now() - clickedAt) / 100) / 10} s) `);
    const toggle = group.locator('[data-testid="output-toggle"]');
    if (await toggle.isEnabled()) {
      await toggle.click();
      await group.locator('[data-testid="output"]').waitFor();
    }
    await screenshot('scheduled');
  });

  await step('nodes & runners: this node and its runners', async () => {
    await page.locator('[data-testid="nav-nodes"]').click();
    const node = page.locator('[data-testid="node-card"]').first();
    await node.waitFor();
    await node.locator('[data-testid="heartbeat"]').waitFor();
    const slots = await page.locator('[data-testid="runner-slot"]').count();
    check(slots > 0, 'no runners are shown');
    if (longTransaction) {
      const warning = page.locator('[data-testid="slot-long-transaction"]').first();
      await warning.waitFor();
      const text = await warning.textContent();
      check(/transaction open \d+ min/.test(text), `the long transaction reads ${JSON.stringify(text)}`);
    }
    await screenshot('nodes');
  });

  if (keyedType) {
    await step('nodes & runners: a concurrency rule and what waits under each key', async () => {
      const row = page.locator(`[data-testid="type-pause-row"][data-type="${keyedType}"]`);
      await row.waitFor();
      const rule = (await row.locator('[data-testid="concurrency-rule"]').textContent()).trim();
      check(rule === 'at most 1 running per tenant', `the rule reads ${JSON.stringify(rule)}`);
      const load = async (key) => (await row.locator(`[data-testid="key-load"][data-key="${key}"]`).textContent()).trim();
      check(await load('a') === 'a 0/1 running · 2 waiting', `key a reads ${JSON.stringify(await load('a'))}`);
      check(await load('b') === 'b 0/1 running · 1 waiting', `key b reads ${JSON.stringify(await load('b'))}`);
      await row.scrollIntoViewIfNeeded();
      await screenshot('nodes-concurrency');
    });
  }

  if (ratedType) {
    await step('nodes & runners: a rate limit and a key waiting for it', async () => {
      const row = page.locator(`[data-testid="type-pause-row"][data-type="${ratedType}"]`);
      await row.waitFor();
      const rule = (await row.locator('[data-testid="rate-rule"]').textContent()).trim();
      check(rule === 'at most 1/h per tenant, bursts of 1', `the rule reads ${JSON.stringify(rule)}`);
      // The first task of tenant c started; the second waits about an hour for a token.
      const wait = row.locator('[data-testid="key-load"][data-key="c"] [data-testid="rate-wait"]');
      await wait.waitFor({ timeout: TASK_MS });
      const load = (await row.locator('[data-testid="key-load"][data-key="c"]').textContent()).trim();
      check(/^c 0 running · 1 waiting · rate: next start in 3[0-9]{3}\.[0-9] s$/.test(load), `key c reads ${JSON.stringify(load)}`);
      await row.scrollIntoViewIfNeeded();
      await screenshot('nodes-rate-limit');
    });
  }

  if (pauseType) {
    await step('nodes & runners: pause and resume a task type and its cluster', async () => {
      const typeRow = page.locator(`[data-testid="type-pause-row"][data-type="${pauseType}"]`);
      await typeRow.waitFor();
      const stateOf = async (row) => (await row.locator('[data-testid="pause-state"]').textContent()).trim();
      const waitState = async (selector, want) => page.waitForFunction(({ selector, want }) => {
        const el = document.querySelector(`${selector} [data-testid="pause-state"]`);
        return el && el.textContent.trim() === want;
      }, { selector, want }, { timeout: STEP_MS });
      const typeSel = `[data-testid="type-pause-row"][data-type="${pauseType}"]`;
      check(await stateOf(typeRow) === 'running', `${pauseType} is not shown running at first`);
      await typeRow.locator('[data-testid="pause-toggle"]').click();
      await page.locator('[data-testid="pauses-message"] .message-ok').waitFor();
      await waitState(typeSel, 'paused');
      const said = await page.locator('[data-testid="pauses-message"]').textContent();
      check(said.includes(`Type ${pauseType} is paused`), `the message reads ${JSON.stringify(said)}`);
      const cluster = await typeRow.locator('[data-testid="type-cluster"]').getAttribute('data-cluster');
      const clusterSel = `[data-testid="cluster-row"][data-cluster="${cluster}"]`;
      await page.locator(`${clusterSel} [data-testid="pause-toggle"]`).click();
      await waitState(clusterSel, 'paused');
      await screenshot('nodes-paused');
      await page.locator(`${typeSel} [data-testid="pause-toggle"]`).click();
      await waitState(typeSel, 'held by cluster');
      if (!leavePaused) {
        await page.locator(`${clusterSel} [data-testid="pause-toggle"]`).click();
        await waitState(clusterSel, 'running');
      }
    });
  }

  if (longTransaction) {
    await step('overview: a warning for the task transaction open longer than 60 s', async () => {
      await page.locator('[data-testid="nav-overview"]').click();
      const warning = page.locator('[data-testid="long-transactions"]');
      await warning.waitFor();
      check(/1 task transaction\(s\) open longer than 60 s/.test(await warning.textContent()), 'the warning names the count');
      await screenshot('overview-long-transaction');
    });
  }

  await step('overview in the dark theme', async () => {
    const dark = await browser.newContext({ viewport: { width: 1440, height: 900 }, colorScheme: 'dark' });
    const p = await dark.newPage();
    watch(p, 'dark');
    await p.goto(`${baseUrl}/#token=${encodeURIComponent(token)}`);
    await p.locator('svg[data-testid="throughput-chart"]').waitFor();
    await p.locator('[data-testid="count-failed"]').filter({ hasNotText: '–' }).waitFor();
    const bg = await p.evaluate(() => getComputedStyle(document.body).backgroundColor);
    check(bg !== 'rgb(245, 246, 250)', 'the dark theme did not apply');
    await p.screenshot({ path: join(shots, 'overview-dark.png'), fullPage: true });
    await dark.close();
  });

  await step('sign-in: no token shows the form; a wrong token is refused; the right one works', async () => {
    const fresh = await browser.newContext({ viewport: { width: 1280, height: 800 } });
    const p = await fresh.newPage();
    watch(p, 'sign-in');
    await p.goto(`${baseUrl}/`);
    await p.locator('[data-testid="signin-form"]').waitFor();
    await p.locator('[data-testid="signin-token"]').fill(`${token}-wrong`);
    await p.locator('[data-testid="signin-submit"]').click();
    await p.locator('[data-testid="signin-message"]').waitFor();
    await p.screenshot({ path: join(shots, 'signin.png') });
    await p.locator('[data-testid="signin-token"]').fill(token);
    await p.locator('[data-testid="signin-submit"]').click();
    await p.locator('#shell').waitFor({ state: 'visible' });
    await p.locator('[data-testid="signout"]').click();
    await p.locator('[data-testid="signin-form"]').waitFor();
    await fresh.close();
  });

  await step('the browser reported no errors', async () => {
    check(problems.length === 0, `\n  ${problems.join('\n  ')}`);
  });
}

try {
  await main();
  console.log(`dashboard browser test: ${passed} passed, 0 failed`);
  console.log(`screenshots: ${shots}`);
  await browser.close();
  process.exit(0);
} catch (e) {
  console.error(`\ndashboard browser test FAILED: ${e.message}`);
  if (e.cause && e.cause.stack) console.error(e.cause.stack.split('\n').slice(0, 6).join('\n'));
  if (problems.length) console.error(`browser problems seen:\n  ${problems.join('\n  ')}`);
  if (page) {
    try {
      console.error(`page: ${page.url()}`);
      await page.screenshot({ path: join(shots, 'failure.png'), fullPage: true });
      console.error(`screenshot of the failure: ${join(shots, 'failure.png')}`);
    } catch { /* the page may be gone */ }
  }
  console.log(`dashboard browser test: ${passed} passed, 1 failed`);
  if (browser) await browser.close().catch(() => {});
  process.exit(1);
}

// Fixture: exercises every host function through the kit and completes with what it saw.
// Data: {"sql_ok": "...", "sql_bad": "...", "query": "..."} — statements chosen by the
// test (defaults suit SQLite). Completes with
//   {"affected": n, "rows": [...], "badError": "execute failed: <host text>",
//    "scheduled": id, "uniqueFirst": id, "uniqueAgain": id, "badUnique": "<error text>",
//    "metaBefore": null|string, "metaAfter": "v", "now": ms}
import { defineTask } from 'warren';

export const runTask = defineTask((task, ctx) => {
  const d = task.data ?? {};
  const affected = ctx.execute(d.sql_ok ?? 'CREATE TABLE IF NOT EXISTS guest_host_calls (k TEXT)', []);
  let badError = null;
  try {
    ctx.execute(d.sql_bad ?? 'INSERT INTO no_such_table VALUES ($1)', [1]);
  } catch (e) {
    badError = e instanceof Error ? e.message : String(e);
  }
  const rows = ctx.query(d.query ?? 'SELECT 1 AS one, $1 AS two', ['two']);
  const scheduled = ctx.scheduleTask(d.schedule_type ?? 'guests:echo', { from: task.id }, { priority: 'background' });
  const echo = d.schedule_type ?? 'guests:echo';
  const uniqueFirst = ctx.scheduleTask(echo, { n: 1 }, { uniqueKey: 'guest-unique' });
  const uniqueAgain = ctx.scheduleTask(echo, { n: 2 }, { uniqueKey: 'guest-unique', uniqueStates: ['completed'] });
  let badUnique = null;
  try {
    ctx.scheduleTask(echo, {}, { uniqueKey: '' });
  } catch (e) {
    badUnique = e instanceof Error ? e.message : String(e);
  }
  const metaBefore = ctx.getMetadata('guest-key');
  ctx.setMetadata('guest-key', 'v');
  const metaAfter = ctx.getMetadata('GUEST-KEY');
  console.log('host_calls done');
  console.error('an error line', { id: task.id });
  ctx.resolveByCompletion({
    affected, rows, badError, scheduled, uniqueFirst, uniqueAgain, badUnique, metaBefore, metaAfter, now: ctx.nowMs(),
  });
});

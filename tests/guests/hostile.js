// Fixture for the hostile-task suite (tests/hostile_sql.rs): task code that tries to
// break the boundary. Data (every field optional):
//   steps:      [{sql, params?, query?: bool}] run in order; each error is caught and
//               recorded, so a refused statement does not stop the next
//   logLines, logBytes: log that many lines of that many bytes first
//   resultBytes: complete with a result string this long
//   spinBeforeMs, spinMs: keep the CPU busy that long before, and after, the steps
//   then:       "throw" to throw after the steps, else complete
// Completes with {results: [{ok: n} | {rows: [...]} | {error: "..."}]}.
import { defineTask } from 'warren';

export const runTask = defineTask((task, ctx) => {
  const d = task.data ?? {};
  if (d.logLines) {
    const line = 'y'.repeat(d.logBytes ?? 10);
    for (let i = 0; i < d.logLines; i++) console.log(line);
  }
  const spin = (ms) => {
    const until = Date.now() + ms;
    while (Date.now() < until) {
      // busy: only the host's deadlines end this
    }
  };
  spin(d.spinBeforeMs ?? 0);
  const results = [];
  for (const step of d.steps ?? []) {
    try {
      if (step.query) {
        results.push({ rows: ctx.query(step.sql, step.params ?? []) });
      } else {
        results.push({ ok: ctx.execute(step.sql, step.params ?? []) });
      }
    } catch (e) {
      results.push({ error: e instanceof Error ? e.message : String(e) });
    }
  }
  spin(d.spinMs ?? 0);
  if (d.then === 'throw') throw new Error('hostile: thrown after ' + JSON.stringify(results));
  if (d.resultBytes) {
    ctx.resolveByCompletion({ blob: 'x'.repeat(d.resultBytes) });
    return;
  }
  ctx.resolveByCompletion({ results });
});

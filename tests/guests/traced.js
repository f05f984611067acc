// Fixture for traces (actors/tests/traces.rs): every run queries the database; the first
// run fails ("first run fails", retried at once); a later one schedules a task of the
// type in data.child (when given) and completes with {"failures": N, "child": id|null}.
import { defineTask } from 'warren';

export const runTask = defineTask((task, ctx) => {
  ctx.query('SELECT 1 AS one', []);
  if (task.failures === 0) {
    ctx.resolveByTemporaryFailure('first run fails', { nextRetry: ctx.nowMs() });
    return;
  }
  const child = task.data.child ? ctx.scheduleTask(task.data.child, {}) : null;
  ctx.resolveByCompletion({ failures: task.failures, child });
});

// Fixture for the multi-node concurrency test: records when this task's run began and
// ended (the database's clock, in the task's own transaction) under its tenant, keeping
// the runner busy for about 30 ms in between.
import { defineTask } from 'warren';

export const runTask = defineTask((task, ctx) => {
  ctx.execute(
    'INSERT INTO spans (task_id, tenant, started) VALUES ($1, $2, clock_timestamp())',
    [task.id, task.data.tenant],
  );
  const until = Date.now() + 30;
  while (Date.now() < until) {
    // busy
  }
  ctx.execute('UPDATE spans SET ended = clock_timestamp() WHERE task_id = $1', [task.id]);
  ctx.resolveByCompletion({ done: task.id });
});

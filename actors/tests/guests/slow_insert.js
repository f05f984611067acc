// Fixture for the multi-node test: inserts one row for this task in the task's own
// transaction, keeps the runner busy for about 50 ms, then completes.
import { defineTask } from 'warren';

export const runTask = defineTask((task, ctx) => {
  ctx.execute('INSERT INTO effects (task_id) VALUES ($1)', [task.id]);
  const until = Date.now() + 50;
  while (Date.now() < until) {
    // busy: a killed node must be caught mid-run
  }
  ctx.resolveByCompletion({ done: task.id });
});

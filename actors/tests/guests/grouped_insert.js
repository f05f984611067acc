// Fixture for the test that kills a node while a run group is open: inserts one row
// for this task in the task's own transaction and completes; with `hold` in its data it
// first waits for advisory lock 42, which the test holds, so that the run stays open
// inside the group that the run before it completed into.
import { defineTask } from 'warren';

export const runTask = defineTask((task, ctx) => {
  ctx.execute('INSERT INTO effects (task_id) VALUES ($1)', [task.id]);
  if (task.data.hold) {
    ctx.query('SELECT pg_advisory_xact_lock(42) AS locked', []);
  }
  ctx.resolveByCompletion({ done: task.id });
});

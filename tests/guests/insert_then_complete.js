// Fixture: inserts a row in the task's transaction, then completes.
// Table: CREATE TABLE guest_effects (task_id BIGINT, note TEXT). Data: {"note": "..."}.
// Completes with {"inserted": <rows affected>}; the row must exist after the run.
import { defineTask } from 'warren';

export const runTask = defineTask((task, ctx) => {
  const inserted = ctx.execute('INSERT INTO guest_effects (task_id, note) VALUES ($1, $2)', [
    task.id,
    task.data.note ?? 'complete',
  ]);
  ctx.resolveByCompletion({ inserted });
});

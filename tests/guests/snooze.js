// Fixture: records a row in the task's transaction, then snoozes until data.until.
// Table: CREATE TABLE guest_effects (task_id BIGINT, note TEXT). Data: {"until": ms,
// "note": "..."}. The row must exist after the run, and the failure count stay as it was.
import { defineTask } from 'warren';

export const runTask = defineTask((task, ctx) => {
  ctx.execute('INSERT INTO guest_effects (task_id, note) VALUES ($1, $2)', [
    task.id,
    task.data.note ?? 'snoozed',
  ]);
  ctx.resolveBySnooze(task.data.until);
});

// Fixture: inserts a row in the task's transaction, then throws. The kit turns the
// exception into a temporary failure with error "insert_then_throw: deliberate failure"
// and a JS stack, so the host must roll the insert back.
// Table: CREATE TABLE guest_effects (task_id BIGINT, note TEXT).
import { defineTask } from 'warren';

export const runTask = defineTask((task, ctx) => {
  ctx.execute('INSERT INTO guest_effects (task_id, note) VALUES ($1, $2)', [task.id, 'throw']);
  throw new Error('insert_then_throw: deliberate failure');
});

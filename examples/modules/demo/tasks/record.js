// demo:record — a managed task that writes to the database.
//
// The INSERT runs on the task's own transaction: it is committed together with the
// completion, or rolled back if the task fails, so a message is recorded exactly once.
//
// Schedule it with {"message": "hello"}. It creates its table, demo_log, on first use
// (in the same transaction).
import { defineTask } from 'warren';

export const runTask = defineTask((task, ctx) => {
  const message = task.data.message;
  if (typeof message !== 'string') {
    // Retrying cannot fix bad input: fail for good.
    ctx.resolveByPermanentFailure('data.message must be a string', { got: message ?? null });
    return;
  }
  ctx.execute('CREATE TABLE IF NOT EXISTS demo_log (message TEXT, at BIGINT)', []);
  // Placeholders are numbered, $1, $2 …, on SQLite and PostgreSQL alike.
  const rows = ctx.execute('INSERT INTO demo_log (message, at) VALUES ($1, $2)', [message, ctx.nowMs()]);
  console.info(`recorded ${JSON.stringify(message)} (${rows} row) for task ${task.id}`);
  ctx.resolveByCompletion({ recorded: message });
});

// Fixture: logs a line and prints one on every run; its first run fails temporarily
// ("first run fails", retried at once), a later one completes with {"failures": N}.
import { defineTask } from 'warren';

export const runTask = defineTask((task, ctx) => {
  console.log(`run after ${task.failures} failure(s)`);
  if (task.failures === 0) {
    ctx.resolveByTemporaryFailure('first run fails', { nextRetry: ctx.nowMs() });
  } else {
    ctx.resolveByCompletion({ failures: task.failures });
  }
});

// Fixture: restarts itself until data.left reaches 0, then completes with the number of
// iterations. Data {"left": 2}: restart (left 1), restart (left 0), complete.
import { defineTask } from 'warren';

export const runTask = defineTask((task, ctx) => {
  const left = task.data.left ?? 0;
  if (left > 0) {
    ctx.resolveByRestart(ctx.nowMs(), { newData: { left: left - 1 } });
  } else {
    ctx.resolveByCompletion({ iteration: task.iteration });
  }
});

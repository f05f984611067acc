// demo:ping — a managed task: {"ping": 42} completes with {"pong": 42}.
import { defineTask } from 'warren';

export const runTask = defineTask((task, ctx) => {
  ctx.resolveByCompletion({ pong: task.data.ping });
});

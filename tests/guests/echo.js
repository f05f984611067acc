// Fixture: completes with task.data (aux data merged in when both are objects), so
// tests can send odd JSON through the whole pipeline: unicode, big numbers, nesting,
// non-object data. Data that is not JSON at all ends as a permanent failure
// "task data is not valid JSON: …" (the kit's rule: retrying cannot repair it).
import { defineTask } from 'warren';

export const runTask = defineTask((task, ctx) => {
  ctx.resolveByCompletion(task.data);
});

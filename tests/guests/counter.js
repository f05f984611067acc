// Fixture: a global counter. Completes with {"count": N}, N = runs served by this
// instance (1 on a fresh instance), so tests can see when an instance is reused or new.
import { defineTask } from 'warren';

let count = 0;

export const runTask = defineTask((task, ctx) => {
  count += 1;
  ctx.resolveByCompletion({ count });
});

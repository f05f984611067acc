// Fixture: selects a resolution twice. The second call throws "a resolution was
// already selected", which ends the run as a temporary failure with that error.
import { defineTask } from 'warren';

export const runTask = defineTask((task, ctx) => {
  ctx.resolveByCompletion({ first: true });
  ctx.resolveByCompletion({ second: true });
});

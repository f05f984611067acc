// Fixture: keeps the `ctx` of its first run and resolves later runs through that kept
// one. Completes with {"same": S, "resolvedBefore": B}: S whether this run's ctx is the
// kept one, B what the kept ctx said of `resolved` before this run resolved.
import { defineTask } from 'warren';

let kept = null;

export const runTask = defineTask((task, ctx) => {
  if (kept === null) kept = ctx;
  const resolvedBefore = kept.resolved;
  kept.resolveByCompletion({ same: kept === ctx, resolvedBefore });
});

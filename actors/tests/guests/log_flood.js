// Fixture for actors/tests/hostile_node.rs: floods the host with log lines.
// Data: {"lines": N, "bytes": B} logs N lines of B bytes each, then completes with
// {"logged": N}.
import { defineTask } from 'warren';

export const runTask = defineTask((task, ctx) => {
  const lines = task.data.lines ?? 1000;
  const line = 'z'.repeat(task.data.bytes ?? 1 << 20);
  for (let i = 0; i < lines; i++) console.log(line);
  ctx.resolveByCompletion({ logged: lines });
});

// demo:heartbeat — a scheduled task run every minute (runat="* * * * *").
// Globals survive between runs while Warren reuses the instance.
import { defineTask } from 'warren';

let beats = 0;

export const runTask = defineTask((task, ctx) => {
  beats += 1;
  console.log(`heartbeat at ${ctx.now().toISOString()} (${beats} since this instance started)`);
  ctx.resolveByCompletion({ beats });
});

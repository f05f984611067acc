// demo:mondays — a scheduled task run on Mondays at 15:00 Amsterdam time
// (runat="0 15 * * 1" runtz="Europe/Amsterdam"). Its <arg> texts arrive as
// task.data.args.
import { defineTask } from 'warren';

export const runTask = defineTask((task, ctx) => {
  const args = Array.isArray(task.data?.args) ? task.data.args : [];
  const full = args.includes('--full');
  console.info(`monday report (${full ? 'full' : 'short'}) at ${ctx.now().toISOString()}`);
  ctx.resolveByCompletion({ report: full ? 'full' : 'short', args });
});

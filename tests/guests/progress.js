// Fixture: reports progress through the kit. Data:
//   {"steps": N, "insert"?: true, "until"?: ms, "bad"?: x}
// With "insert", first inserts a row into guest_effects (so the run holds its
// transaction, on SQLite the write lock). Then reports step i of N as i/N for i < N;
// with "until", spins until the host clock reaches that instant (a test moves its clock
// on when it has seen the progress); with "bad", reports that fraction and records the
// error; tries a fraction that is not a number; reports 1 and completes with
//   {"badError": text|null, "typeError": text}
import { defineTask } from 'warren';

export const runTask = defineTask((task, ctx) => {
  const d = task.data ?? {};
  if (d.insert) {
    ctx.execute('INSERT INTO guest_effects (task_id, note) VALUES ($1, $2)', [task.id, 'progress']);
  }
  const steps = d.steps ?? 1;
  for (let i = 0; i < steps; i++) {
    ctx.setProgress(i / steps, `step ${i} of ${steps}`);
  }
  if (d.until !== undefined) {
    while (ctx.nowMs() < d.until) {
      // the test's clock decides when this run goes on
    }
  }
  let badError = null;
  if (d.bad !== undefined) {
    try {
      ctx.setProgress(d.bad);
    } catch (e) {
      badError = e.message;
    }
  }
  let typeError = null;
  try {
    ctx.setProgress('most of it');
  } catch (e) {
    typeError = e.message;
  }
  ctx.setProgress(1);
  ctx.resolveByCompletion({ badError, typeError });
});

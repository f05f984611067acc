// Fixture: never returns (no host calls inside the loop). Only epoch interruption
// (a timeout or a kill) ends it; the instance must then be discarded.
import { defineTask } from 'warren';

export const runTask = defineTask((task, ctx) => {
  let n = 0;
  for (;;) {
    n = (n + 1) | 0;
  }
});

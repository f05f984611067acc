// Fixture: allocates until the instance runs out of memory (the store's memory limit,
// or wasm32's 4 GiB). QuickJS reports out-of-memory as an exception if it can, which
// the kit turns into a temporary failure; when the allocator cannot even do that the
// run ends in a trap. Either way it must not take the host down.
import { defineTask } from 'warren';

const hoard = [];

export const runTask = defineTask((task, ctx) => {
  for (;;) {
    hoard.push(new Array(1 << 16).fill(hoard.length));
  }
});

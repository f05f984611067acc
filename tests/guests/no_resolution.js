// Fixture: returns without selecting a resolution: a temporary failure
// "no resolution selected".
import { defineTask } from 'warren';

export const runTask = defineTask((task, ctx) => {
  console.log('returning without a resolution');
});

// demo:compile — an ephemeral task: the caller waits for its result.
// Data {"numbers": [3, 1, 2]} gives {"count": 3, "sum": 6, "min": 1, "max": 3, "mean": 2,
// "sorted": [1, 2, 3]}.
import { defineTask } from 'warren';

export const runTask = defineTask((task, ctx) => {
  const numbers = task.data.numbers;
  if (!Array.isArray(numbers) || !numbers.every((n) => typeof n === 'number')) {
    ctx.resolveByPermanentFailure('data.numbers must be an array of numbers');
    return;
  }
  const sorted = [...numbers].sort((a, b) => a - b);
  const sum = sorted.reduce((a, b) => a + b, 0);
  ctx.resolveByCompletion({
    count: sorted.length,
    sum,
    min: sorted.length ? sorted[0] : null,
    max: sorted.length ? sorted[sorted.length - 1] : null,
    mean: sorted.length ? sum / sorted.length : null,
    sorted,
  });
});

import { defineTask } from 'warren';
import { z } from 'zod';
import { greeting, type Signup } from '../lib/greeting';

const SignupData = z.object({
  name: z.string().min(1),
  email: z.string().email(),
});

export const runTask = defineTask<Signup>((task, ctx) => {
  const parsed = SignupData.safeParse(task.data);
  if (!parsed.success) {
    // Data that does not validate will not validate on a retry either.
    const problems = parsed.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`);
    ctx.resolveByPermanentFailure(`invalid sign-up: ${problems.join('; ')}`);
    return;
  }
  if (parsed.data.name === 'throw') {
    throw new Error('asked to throw');
  }
  ctx.resolveByCompletion({ greeting: greeting(parsed.data) });
});

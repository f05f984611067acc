// Fixture without the kit, in TypeScript (so it is bundled and carries a source map):
// implements the raw world and throws, which reaches the host as a trap with the stack
// on the guest's stderr. The throw is on line 6.
export function runTask(t: { taskType: string }): never {
  const message: string = `raw_throw_ts: uncaught in ${t.taskType}`;
  throw new Error(message);
}

// Fixture without the kit: implements the raw world and throws. Under both compilers an
// uncaught exception reaches the host only as a trap (wasm `unreachable`); the message
// "raw_throw: uncaught" and the stack are written to the guest's stderr.
export function runTask(t) {
  throw new Error('raw_throw: uncaught');
}

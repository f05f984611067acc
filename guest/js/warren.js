// Warren task kit for JavaScript task code.
//
// A task file imports this module as 'warren' and exports `runTask`:
//
//   import { defineTask } from 'warren';
//   export const runTask = defineTask((task, ctx) => {
//     ctx.resolveByCompletion({ pong: task.data.ping });
//   });
//
// It turns the raw `warren:task` world (JSON strings, WIT variants) into the API of
// the reference system: exactly one `resolveBy…` call per run, exceptions become
// retryable failures carrying the JS stack, and `console` writes to the task log.
// See README.md beside this file; the types are in warren.d.ts.
//
// Works on both compilers Warren supports: componentize-qjs (QuickJS, the default)
// and componentize-js (StarlingMonkey). Their differences that matter here: QuickJS
// hands u64 values over as Numbers and only accepts Numbers back, StarlingMonkey hands
// over BigInts (and accepts both) — so every u64 leaving this kit is a Number.
//
// Module top-level code (this file's included) runs once, at BUILD time, inside the
// compiler, and the resulting heap is snapshotted into the component. Host functions do
// not exist at that point, so nothing here calls the host outside of a run.

import * as host from 'warren:task/host@0.2.1';

export { host };

/** Log levels of the host's `log` function. */
export const LogLevel = Object.freeze({ error: 0, warn: 1, info: 2, debug: 3, trace: 4 });

// True while `run-task` is executing in this instance. Outside a run (i.e. at build
// time, while the module's top level is evaluated) host calls are impossible.
let inRun = false;
// Whether this instance has served a run yet (false in the build-time snapshot).
let instanceStarted = false;
// Console output produced at build time, emitted at the first run of each instance.
const earlyLog = [];
const EARLY_LOG_MAX = 100;

// ---------------------------------------------------------------------------
// JSON helpers

// BigInts (StarlingMonkey's u64s, or the author's own) become Numbers when exact,
// else decimal strings, instead of making JSON.stringify throw.
function bigintReplacer(_key, value) {
  if (typeof value === 'bigint') {
    return value >= BigInt(Number.MIN_SAFE_INTEGER) && value <= BigInt(Number.MAX_SAFE_INTEGER)
      ? Number(value)
      : value.toString();
  }
  return value;
}

/** JSON text of any value; `undefined` (and other unencodable values) become `null`. */
function toJson(value) {
  const text = JSON.stringify(value, bigintReplacer);
  return text === undefined ? 'null' : text;
}

function isPlainObject(value) {
  return value !== null && typeof value === 'object' && !Array.isArray(value);
}

function toNumber(value) {
  return typeof value === 'bigint' ? Number(value) : value;
}

/** Milliseconds since the epoch from a Date or a number of ms, for a u64 field. */
function toEpochMs(when, what) {
  let ms;
  if (when instanceof Date) ms = when.getTime();
  else if (typeof when === 'number') ms = when;
  else if (typeof when === 'bigint') ms = Number(when);
  else throw new TypeError(`${what} must be a Date or milliseconds since the epoch, not ${typeof when}`);
  if (!Number.isFinite(ms)) throw new TypeError(`${what} is not a valid time`);
  return Math.max(0, Math.floor(ms)); // u64: a time before 1970 means "now"
}

// ---------------------------------------------------------------------------
// Errors from the host

// An import returning `result<T, string>` gives T, or throws on `err`. QuickJS throws an
// Error whose message (and `payload`) is the host's text; StarlingMonkey (jco style)
// throws an error with the text in `payload`. Both become a plain Error with that text.
function callHost(what, fn) {
  try {
    return fn();
  } catch (e) {
    const text = e && e.payload !== undefined ? String(e.payload) : e instanceof Error ? e.message : String(e);
    const err = new Error(`${what}: ${text}`);
    err.hostMessage = text;
    throw err;
  }
}

// A log level for the host's u8: a number (clamped to 0–255) or a LogLevel name.
function logLevel(level) {
  if (typeof level === 'string' && Object.hasOwn(LogLevel, level)) return LogLevel[level];
  const n = Math.trunc(Number(level));
  return Number.isFinite(n) ? Math.min(255, Math.max(0, n)) : LogLevel.info;
}

// Strings the host needs; anything else would make the call trap instead of throw.
function requireString(value, what) {
  if (typeof value !== 'string') throw new TypeError(`${what} must be a string, not ${typeof value}`);
  return value;
}

function hostLog(level, message) {
  if (inRun) {
    host.log(level, message);
  } else if (earlyLog.length < EARLY_LOG_MAX) {
    earlyLog.push([level, message]);
  }
}

// ---------------------------------------------------------------------------
// console (QuickJS has none; StarlingMonkey's is replaced so both log the same way)

function formatArg(arg) {
  if (typeof arg === 'string') return arg;
  if (arg instanceof Error) return arg.stack ? `${errorText(arg)}\n${arg.stack}` : errorText(arg);
  if (typeof arg === 'bigint') return `${arg}n`;
  if (arg === undefined || typeof arg === 'function' || typeof arg === 'symbol') return String(arg);
  try {
    return toJson(arg);
  } catch {
    return String(arg); // cyclic structures and the like
  }
}

function formatArgs(args) {
  return args.map(formatArg).join(' ');
}

export const console = Object.freeze({
  error: (...args) => hostLog(LogLevel.error, formatArgs(args)),
  warn: (...args) => hostLog(LogLevel.warn, formatArgs(args)),
  log: (...args) => hostLog(LogLevel.info, formatArgs(args)),
  info: (...args) => hostLog(LogLevel.info, formatArgs(args)),
  debug: (...args) => hostLog(LogLevel.debug, formatArgs(args)),
  trace: (...args) => hostLog(LogLevel.trace, formatArgs(args)),
});

globalThis.console = console;

// ---------------------------------------------------------------------------
// Math.random under QuickJS
//
// componentize-qjs seeds QuickJS's generator at build time, so every fresh instance of
// a component would replay the same "random" sequence. Under QuickJS the kit replaces
// Math.random with a small generator (sfc32) seeded at each instance's first run from
// the high-resolution clock and the wall clock. Not for cryptography (neither is
// Math.random). StarlingMonkey seeds itself properly and is left alone.

const isQuickJs = typeof globalThis.__cqjs === 'object';
const rng = new Uint32Array(4);

function sfc32() {
  const t = (((rng[0] + rng[1]) >>> 0) + rng[3]) >>> 0;
  rng[3] = (rng[3] + 1) >>> 0;
  rng[0] = rng[1] ^ (rng[1] >>> 9);
  rng[1] = (rng[2] + (rng[2] << 3)) >>> 0;
  rng[2] = ((rng[2] << 21) | (rng[2] >>> 11)) >>> 0;
  rng[2] = (rng[2] + t) >>> 0;
  return t;
}

function seedRandom(taskId) {
  const hi = performance.now() * 1e6; // sub-microsecond part of the monotonic clock
  const wall = Date.now();
  rng[0] = hi >>> 0;
  rng[1] = (hi / 4294967296) >>> 0;
  rng[2] = wall >>> 0;
  rng[3] = ((wall / 4294967296) >>> 0) ^ (taskId >>> 0);
  for (let i = 0; i < 16; i++) sfc32();
}

if (isQuickJs) {
  Math.random = function random() {
    // 53 random bits, like the built-in
    return (sfc32() * 2097152 + (sfc32() >>> 11)) / 9007199254740992;
  };
}

// ---------------------------------------------------------------------------
// Runs

/** The text stored as a failure's error for a thrown value. */
function errorText(e) {
  if (e instanceof Error) {
    if (!e.message) return e.name || 'Error';
    return e.name && e.name !== 'Error' ? `${e.name}: ${e.message}` : e.message;
  }
  try {
    return typeof e === 'string' ? e : `uncaught ${toJson(e)}`;
  } catch {
    return `uncaught ${String(e)}`;
  }
}

// Frames of the kit itself (QuickJS: `at f (/node_modules/warren/index.js:1:2)`;
// StarlingMonkey: `f@warren.js:1:2`) and of StarlingMonkey's binding glue.
const KIT_FRAME = /\/node_modules\/warren\/|@warren\.js:\d|\/sources\/initializer\.js:\d/;

// The stack of an Error, without the kit's own frames.
function stackOf(e) {
  if (!(e instanceof Error) || typeof e.stack !== 'string') return null;
  const stack = e.stack
    .split('\n')
    .filter((line) => !KIT_FRAME.test(line))
    .join('\n');
  return stack.trim() === '' ? null : stack;
}

function temporaryFailure(error, stack, nextRetryMs) {
  return {
    tag: 'temporary-failure',
    val: { error, stack: stack ?? null, nextRetryMs: nextRetryMs ?? null },
  };
}

function parseJson(text, what) {
  try {
    return JSON.parse(text);
  } catch (e) {
    throw new WarrenDataError(`${what} is not valid JSON: ${e.message}`);
  }
}

class WarrenDataError extends Error {}

/** The task as the author sees it. */
function makeTask(raw) {
  const data = parseJson(raw.data, 'task data');
  const auxData = raw.auxData === undefined || raw.auxData === null ? null : parseJson(raw.auxData, 'task aux data');
  const merged = isPlainObject(data) && isPlainObject(auxData) ? { ...data, ...auxData } : data;
  return Object.freeze({
    id: toNumber(raw.id),
    type: raw.taskType,
    data: merged,
    rawData: data,
    auxData,
    failures: raw.failures,
    iteration: raw.iteration,
  });
}

// The run in progress (`{ resolution }`), or null between runs.
let currentRun = null;

function select(resolution) {
  if (currentRun === null) throw new Error('ctx was used outside a run');
  if (currentRun.resolution !== null) throw new Error('a resolution was already selected');
  currentRun.resolution = resolution;
}

// The `ctx` every run of this instance is given. It acts on the run in progress: made
// once instead of per run, as making its sixteen functions and freezing them was half
// of the kit's own work per run (measured under QuickJS).
const context = Object.freeze({
  resolveByCompletion(result) {
    select({ tag: 'completion', val: toJson(result) });
  },
  resolveByPermanentFailure(error, result) {
    select({
      tag: 'permanent-failure',
      val: [errorText(error), result === undefined ? null : toJson(result)],
    });
  },
  resolveByCancellation(error) {
    select({ tag: 'cancellation', val: errorText(error) });
  },
  resolveByTemporaryFailure(error, options = {}) {
    const next = options.nextRetry;
    select(temporaryFailure(errorText(error), stackOf(error), next == null ? null : toEpochMs(next, 'nextRetry')));
  },
  resolveByRestart(when, options = {}) {
    const newAuxData = options.newAuxData !== undefined ? options.newAuxData : options.auxData;
    select({
      tag: 'restart',
      val: {
        atMs: toEpochMs(when, 'restart time'),
        newData: options.newData === undefined ? null : toJson(options.newData),
        newAuxData: newAuxData === undefined ? null : toJson(newAuxData),
      },
    });
  },
  resolveBySnooze(when) {
    select({ tag: 'snooze', val: toEpochMs(when, 'snooze time') });
  },
  get resolved() {
    return currentRun !== null && currentRun.resolution !== null;
  },
  execute(sql, params = []) {
    requireString(sql, 'sql');
    return toNumber(callHost('execute failed', () => host.execute(sql, toJson(params))));
  },
  query(sql, params = []) {
    requireString(sql, 'sql');
    return JSON.parse(callHost('query failed', () => host.query(sql, toJson(params))));
  },
  scheduleTask(taskType, data = {}, options = {}) {
    requireString(taskType, 'task type');
    const opts = { ...options };
    if (opts.notBefore !== undefined) opts.notBefore = toEpochMs(opts.notBefore, 'notBefore');
    return toNumber(callHost('scheduleTask failed', () => host.scheduleTask(taskType, toJson(data), toJson(opts))));
  },
  getMetadata(key) {
    return host.getMetadata(requireString(key, 'metadata key')) ?? null;
  },
  setMetadata(key, value) {
    requireString(key, 'metadata key');
    callHost('setMetadata failed', () => host.setMetadata(key, String(value)));
  },
  setProgress(fraction, message) {
    const f = toNumber(fraction);
    if (typeof f !== 'number') throw new TypeError(`progress must be a number from 0 to 1, not ${typeof fraction}`);
    const text = message === undefined || message === null ? null : String(message);
    callHost('setProgress failed', () => host.setProgress(f, text));
  },
  now() {
    return new Date(toNumber(host.nowMs()));
  },
  nowMs() {
    return toNumber(host.nowMs());
  },
  log(level, ...args) {
    hostLog(logLevel(level), formatArgs(args));
  },
});

function isAsyncFunction(fn) {
  return Object.prototype.toString.call(fn) === '[object AsyncFunction]';
}

function isThenable(value) {
  return value !== null && (typeof value === 'object' || typeof value === 'function') && typeof value.then === 'function';
}

const SYNC_ONLY =
  'task functions must be synchronous: Warren runs JavaScript without an event loop, so a promise never settles';

/**
 * Wraps a task function into the `runTask` export of the `warren:task` world.
 * `fn(task, ctx)` must call exactly one of the `ctx.resolveBy…` functions.
 */
export function defineTask(fn) {
  if (typeof fn !== 'function') throw new TypeError('defineTask needs a function (task, ctx) => { … }');
  if (isAsyncFunction(fn)) throw new TypeError(`defineTask: ${SYNC_ONLY}; remove 'async'`);

  return function runTask(raw) {
    inRun = true;
    try {
      if (!instanceStarted) {
        instanceStarted = true;
        if (isQuickJs) seedRandom(toNumber(raw.id));
        for (const [level, message] of earlyLog.splice(0)) host.log(level, message);
      }
      const run = { resolution: null };
      let task;
      try {
        task = makeTask(raw);
      } catch (e) {
        if (e instanceof WarrenDataError) {
          // Retrying cannot repair the data: fail for good.
          return { tag: 'permanent-failure', val: [e.message, null] };
        }
        throw e;
      }
      let returned;
      currentRun = run;
      try {
        returned = fn(task, context);
      } catch (e) {
        // A throw that reached the host would be an opaque trap: keep the message and stack.
        return temporaryFailure(errorText(e), stackOf(e), null);
      }
      if (isThenable(returned)) return temporaryFailure(`${SYNC_ONLY} (the task function returned a promise)`, null, null);
      return run.resolution ?? temporaryFailure('no resolution selected', null, null);
    } catch (e) {
      return temporaryFailure(`internal error in the warren kit: ${errorText(e)}`, stackOf(e), null);
    } finally {
      inRun = false;
      currentRun = null;
    }
  };
}

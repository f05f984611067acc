// Types of the Warren task kit (warren.js) and of the raw `warren:task` world it wraps.
//
// In a task file:   import { defineTask } from 'warren';
// For your editor, map the module name to this file, e.g. in jsconfig.json/tsconfig.json:
//   { "compilerOptions": { "checkJs": true, "paths": { "warren": ["<path to>/guest/js/warren.d.ts"] } } }

/** Any value JSON can represent (what task data, aux data and results are). */
export type Json = null | boolean | number | string | Json[] | { [key: string]: Json };

/** A point in time: a Date, or milliseconds since the Unix epoch (UTC). */
export type When = Date | number;

/** One run of a task, as the task function sees it. */
export interface Task<Data = any, AuxData = any> {
  /** Queue id (exact below 2^53; see README "Numbers"). */
  readonly id: number;
  /** Full type name, `module:type` (a scheduled task: `module:tag`). */
  readonly type: string;
  /**
   * The task's data, parsed, with the aux data's fields merged over it when both are
   * plain objects (aux fields win). A scheduled task gets `{ args: string[] }`.
   */
  readonly data: Data;
  /** The task's data as scheduled, without aux data merged in. */
  readonly rawData: Data;
  /** The task's aux data, parsed; `null` when it has none. */
  readonly auxData: AuxData | null;
  /** Consecutive failures before this run (0 on the first run; a restart resets it). */
  readonly failures: number;
  /** Runs before this one, counting failures and restarts. */
  readonly iteration: number;
}

export interface TemporaryFailureOptions {
  /** Retry no earlier than this; default: the retry rule's back-off. */
  nextRetry?: When;
}

export interface RestartOptions<Data = any, AuxData = any> {
  /** Replace the task's data for the next run. */
  newData?: Data;
  /** Replace the task's aux data for the next run. */
  newAuxData?: AuxData;
  /** Alias of `newAuxData`. */
  auxData?: AuxData;
}

export type PriorityName = 'background' | 'normal' | 'interactive' | 'update' | 'updateinteractive';

export interface ScheduleOptions {
  /** Do not run before this time. */
  notBefore?: When;
  /** Run time limit in milliseconds (0 = none). */
  timeout?: number;
  /** Aux data of the new task. */
  auxData?: Json;
  /** A name or a number; lower runs first. */
  priority?: PriorityName | number;
  /** Metadata of the new task (string values). */
  metadata?: Record<string, string>;
  /** The cluster whose runners take it (default: its type's). */
  cluster?: string;
  /**
   * A unique key: while a task of the same type holds this key (it is pending or
   * running, or in a finished state it was scheduled to keep the key in),
   * `scheduleTask` returns that task's id and schedules nothing.
   */
  uniqueKey?: string;
  /** Finished states in which this task keeps holding its key (pending and running always do). */
  uniqueStates?: Array<'pending' | 'running' | 'completed' | 'failed' | 'cancelled'>;
  /** The key holds within periods of this many ms (from the Unix epoch). */
  uniquePeriod?: number;
  /** Start after this many ms; a pending duplicate takes the new data and starts this long from now. */
  debounce?: number;
  /** A debounced task starts at most this many ms after it was first scheduled (default ten times `debounce`). */
  debounceMax?: number;
}

/** What a task function can do. Every method is synchronous. */
export interface TaskContext {
  /** Done: `result` (any JSON value; `undefined` = null) is stored as the task's result. */
  resolveByCompletion(result?: unknown): void;
  /** Failed for good (never retried); `result` is stored beside the error. */
  resolveByPermanentFailure(error: string | Error, result?: unknown): void;
  /** Given up on purpose; like a permanent failure, but the task is marked cancelled. */
  resolveByCancellation(error: string | Error): void;
  /** Failed for now: the run's database work is rolled back, and the task is retried. */
  resolveByTemporaryFailure(error: string | Error, options?: TemporaryFailureOptions): void;
  /** Run again (as a fresh run: failures reset) no earlier than `when`. */
  resolveByRestart(when: When, options?: RestartOptions): void;
  /**
   * Not now: run again no earlier than `when`, keeping the failure count as it is (a
   * restart resets it, a temporary failure adds one). The run's database work commits.
   */
  resolveBySnooze(when: When): void;
  /** Whether a resolution has been selected in this run. */
  readonly resolved: boolean;

  /**
   * Runs a statement in the task's transaction; returns the number of rows affected.
   * Parameters are bound, never spliced. Throws an Error ("execute failed: …") on failure.
   */
  execute(sql: string, params?: unknown[]): number;
  /** Runs a query in the task's transaction; returns its rows as objects keyed by column. */
  query<Row = Record<string, Json>>(sql: string, params?: unknown[]): Row[];
  /** Schedules a managed task in this run's transaction; returns its id. */
  scheduleTask(taskType: string, data?: unknown, options?: ScheduleOptions): number;
  /** A metadata value of this task (keys are case-insensitive); `null` when unset. */
  getMetadata(key: string): string | null;
  /** Sets a metadata value of this task (in its transaction). */
  setMetadata(key: string, value: string): void;
  /**
   * Reports how far the run has got: `fraction` from 0 to 1 and, optionally, what it is
   * doing (at most 1024 bytes). Shown while the task runs (by its node's API and dashboard;
   * on PostgreSQL everywhere) and kept after it ends, whatever its outcome (it is not part
   * of the task's transaction). Only the latest report counts, so calling it often is
   * cheap. Throws on a fraction outside 0–1 or a longer message.
   */
  setProgress(fraction: number, message?: string | null): void;
  /** The host's clock (which tests may control). */
  now(): Date;
  /** The host's clock in milliseconds since the epoch. */
  nowMs(): number;
  /** Writes a line to the task log at a level: 0–4 or a name of LogLevel ('info', …). */
  log(level: number | keyof typeof LogLevel, ...args: unknown[]): void;
}

/** A task function. It must be synchronous and select exactly one resolution. */
export type TaskFunction<Data = any, AuxData = any> = (task: Task<Data, AuxData>, ctx: TaskContext) => void;

/** The raw export the world expects (what `defineTask` returns). */
export type RunTask = (t: RawTask) => RawResolution;

/**
 * Wraps a task function into the `runTask` export:
 *   export const runTask = defineTask((task, ctx) => { … });
 * Throws (failing the build) when given an `async` function.
 */
export function defineTask<Data = any, AuxData = any>(fn: TaskFunction<Data, AuxData>): RunTask;

/** Levels of the host's log. */
export declare const LogLevel: {
  readonly error: 0;
  readonly warn: 1;
  readonly info: 2;
  readonly debug: 3;
  readonly trace: 4;
};

/** The console the kit installs as `globalThis.console` (writes to the task log). */
export declare const console: {
  error(...args: unknown[]): void;
  warn(...args: unknown[]): void;
  log(...args: unknown[]): void;
  info(...args: unknown[]): void;
  debug(...args: unknown[]): void;
  trace(...args: unknown[]): void;
};

// ---------------------------------------------------------------------------
// The raw world (`warren:task@0.2.1`), as componentize-qjs maps it to JavaScript:
// records are objects with camelCase fields, variants `{ tag, val }`, option<T> is
// `T | null` (`undefined` accepted), tuples are arrays, u64 is a Number (QuickJS;
// StarlingMonkey passes BigInts in and accepts either back), and an import returning
// result<T, string> returns T or throws an Error carrying the string.

export interface RawTask {
  id: number | bigint;
  taskType: string;
  data: string;
  auxData: string | null | undefined;
  failures: number;
  iteration: number;
}

export interface RawFailure {
  error: string;
  stack?: string | null;
  nextRetryMs?: number | null;
}

export interface RawRestart {
  atMs: number;
  newData?: string | null;
  newAuxData?: string | null;
}

export type RawResolution =
  | { tag: 'completion'; val: string }
  | { tag: 'permanent-failure'; val: [string, string | null] }
  | { tag: 'cancellation'; val: string }
  | { tag: 'temporary-failure'; val: RawFailure }
  | { tag: 'restart'; val: RawRestart }
  | { tag: 'snooze'; val: number };

/** `warren:task/host@0.2.1`; also importable directly from that module name. */
export declare const host: {
  execute(sql: string, paramsJson: string): number;
  query(sql: string, paramsJson: string): string;
  scheduleTask(taskType: string, dataJson: string, optionsJson: string): number;
  getMetadata(key: string): string | null;
  setMetadata(key: string, value: string): void;
  setProgress(fraction: number, message: string | null): void;
  log(level: number, message: string): void;
  nowMs(): number;
};

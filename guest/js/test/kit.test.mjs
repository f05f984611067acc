// Tests of the JavaScript kit: compiles the demo module's tasks and tests/guests with
// build.mjs, runs the components under jco's JavaScript host (jco transpile) with a fake
// Warren host, and checks what they return.
//
//   npm test --prefix guest/js                       (QuickJS)
//   WARREN_TEST_ENGINES=quickjs,starlingmonkey npm test --prefix guest/js
//
// Needs `npm ci` here (with the dev dependencies: jco).
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { describe, it, before } from 'node:test';
import { fileURLToPath } from 'node:url';
import v8 from 'node:v8';

// The QuickJS runtime uses extended constant expressions; Node 20 needs them switched on.
v8.setFlagsFromString('--experimental-wasm-extended-const');

const HERE = path.dirname(fileURLToPath(import.meta.url));
const KIT = path.dirname(HERE);
const REPO = path.resolve(KIT, '..', '..');
const OUT = path.join(HERE, '.out'); // under the kit, so the transpiled code finds preview2-shim
const JCO = path.join(KIT, 'node_modules', '@bytecodealliance', 'jco', 'dist', 'jco.js');
const ENGINES = (process.env.WARREN_TEST_ENGINES ?? 'quickjs').split(',').filter(Boolean);

function hostError(text) {
  // jco's convention: an Error with the err payload makes the import return err(payload)
  const e = new Error(text);
  Object.defineProperty(e, 'payload', { value: text });
  return e;
}

class FakeHost {
  constructor() {
    this.calls = [];
    this.logs = [];
    this.meta = new Map();
  }
  execute(sql, params) {
    this.calls.push(['execute', sql, JSON.parse(params)]);
    if (sql.includes('no_such_table')) throw hostError('no such table: no_such_table');
    return 1n;
  }
  query(sql, params) {
    this.calls.push(['query', sql, JSON.parse(params)]);
    return JSON.stringify([{ one: 1, two: JSON.parse(params)[0] ?? null }]);
  }
  scheduleTask(type, data, options) {
    this.calls.push(['schedule', type, JSON.parse(data), JSON.parse(options)]);
    return 77n;
  }
  getMetadata(key) {
    return this.meta.get(key.toLowerCase());
  }
  setMetadata(key, value) {
    this.meta.set(key.toLowerCase(), value);
  }
  log(level, message) {
    this.logs.push([level, message]);
  }
  setProgress(fraction, message) {
    this.calls.push(['progress', fraction, message ?? null]);
    if (!(fraction >= 0 && fraction <= 1)) throw hostError(`progress must be a fraction from 0 to 1, not ${fraction}`);
  }
  nowMs() {
    return 1700000000000n;
  }
}

const task = (data, extra = {}) => ({
  id: 12n,
  taskType: 'test:task',
  data: typeof data === 'string' ? data : JSON.stringify(data),
  auxData: undefined,
  failures: 0,
  iteration: 0,
  ...extra,
});

// Results as plain JSON (u64 BigInts as Numbers; absent options dropped).
const plain = (r) => JSON.parse(JSON.stringify(r, (_k, v) => (typeof v === 'bigint' ? Number(v) : v)));

const SOURCES = {
  ping: ['examples/modules/demo/tasks/ping.js', 'examples/modules/demo'],
  record: ['examples/modules/demo/tasks/record.js', 'examples/modules/demo'],
  compile: ['examples/modules/demo/tasks/compile.js', 'examples/modules/demo'],
  heartbeat: ['examples/modules/demo/tasks/heartbeat.js', 'examples/modules/demo'],
  mondays: ['examples/modules/demo/tasks/mondays.js', 'examples/modules/demo'],
  counter: ['tests/guests/counter.js'],
  kept_context: ['tests/guests/kept_context.js'],
  echo: ['tests/guests/echo.js'],
  host_calls: ['tests/guests/host_calls.js'],
  insert_then_complete: ['tests/guests/insert_then_complete.js'],
  insert_then_throw: ['tests/guests/insert_then_throw.js'],
  two_resolutions: ['tests/guests/two_resolutions.js'],
  no_resolution: ['tests/guests/no_resolution.js'],
  restart: ['tests/guests/restart.js'],
  snooze: ['tests/guests/snooze.js'],
  progress: ['tests/guests/progress.js'],
  raw_throw: ['tests/guests/raw_throw.js'],
};

for (const engine of ENGINES) {
  describe(`kit under ${engine}`, () => {
    const dir = path.join(OUT, engine);
    let fresh = 0;
    let host;

    before(() => {
      fs.rmSync(dir, { recursive: true, force: true });
      fs.mkdirSync(dir, { recursive: true });
    });

    // A fresh instance of the named guest: compiled once, transpiled per call.
    async function instance(name) {
      const wasm = path.join(dir, `${name}.wasm`);
      if (!fs.existsSync(wasm)) {
        const [js, root] = SOURCES[name];
        const args = [path.join(KIT, 'build.mjs'), '--engine', engine, '--js', path.join(REPO, js), '--out', wasm];
        if (root) args.push('--root', path.join(REPO, root));
        execFileSync(process.execPath, args, { stdio: ['ignore', 'ignore', 'inherit'] });
      }
      const js = path.join(dir, `${name}-${fresh++}`);
      execFileSync(
        process.execPath,
        [JCO, 'transpile', wasm, '-o', js, '--name', 'guest', '--quiet',
          '--map', `warren:task/host@0.2.1=${path.join(HERE, 'host.mjs')}`,
          '--map', `warren:task/types@0.2.1=${path.join(HERE, 'types.mjs')}`],
        { stdio: ['ignore', 'ignore', 'inherit'] },
      );
      host = new FakeHost();
      globalThis.warrenTestHost = host;
      const { runTask } = await import(path.join(js, 'guest.js'));
      return (t) => plain(runTask(t));
    }

    it('ping completes with pong', async () => {
      const run = await instance('ping');
      assert.deepEqual(run(task({ ping: 42 })), { tag: 'completion', val: '{"pong":42}' });
    });

    it('compile computes, and fails for good on bad input', async () => {
      const run = await instance('compile');
      const r = run(task({ numbers: [3, 1, 2] }));
      assert.equal(r.tag, 'completion');
      assert.deepEqual(JSON.parse(r.val), { count: 3, sum: 6, min: 1, max: 3, mean: 2, sorted: [1, 2, 3] });
      assert.deepEqual(run(task({ numbers: 'x' })), {
        tag: 'permanent-failure',
        val: ['data.numbers must be an array of numbers', null],
      });
    });

    it('record inserts with bound parameters and logs', async () => {
      const run = await instance('record');
      assert.deepEqual(run(task({ message: 'hi' })), { tag: 'completion', val: '{"recorded":"hi"}' });
      assert.deepEqual(host.calls, [
        ['execute', 'CREATE TABLE IF NOT EXISTS demo_log (message TEXT, at BIGINT)', []],
        ['execute', 'INSERT INTO demo_log (message, at) VALUES ($1, $2)', ['hi', 1700000000000]],
      ]);
      assert.deepEqual(host.logs, [[2, 'recorded "hi" (1 row) for task 12']]);
    });

    it('scheduled tasks read their args and the host clock', async () => {
      let run = await instance('heartbeat');
      assert.deepEqual(run(task({ args: [] })), { tag: 'completion', val: '{"beats":1}' });
      assert.match(host.logs[0][1], /^heartbeat at 2023-11-14T22:13:20\.000Z/);
      run = await instance('mondays');
      assert.deepEqual(run(task({ args: ['--full'] })), {
        tag: 'completion',
        val: '{"report":"full","args":["--full"]}',
      });
    });

    it('globals persist within an instance only', async () => {
      let run = await instance('counter');
      assert.equal(run(task({})).val, '{"count":1}');
      assert.equal(run(task({})).val, '{"count":2}');
      run = await instance('counter');
      assert.equal(run(task({})).val, '{"count":1}');
    });

    it('one ctx serves every run of an instance and acts on the run in progress', async () => {
      const run = await instance('kept_context');
      const expected = { tag: 'completion', val: '{"same":true,"resolvedBefore":false}' };
      // The second and third runs resolve through the ctx kept from the first: each
      // selects its own run's resolution, not the first run's (already selected).
      assert.deepEqual(run(task({})), expected);
      assert.deepEqual(run(task({})), expected);
      assert.deepEqual(run(task({})), expected);
    });

    it('an exception becomes a temporary failure with message and stack', async () => {
      const run = await instance('insert_then_throw');
      const r = run(task({}));
      assert.equal(r.tag, 'temporary-failure');
      assert.equal(r.val.error, 'insert_then_throw: deliberate failure');
      assert.match(r.val.stack, /guests\/insert_then_throw\.js:9:/);
      assert.doesNotMatch(r.val.stack, /warren/);
      assert.equal(r.val.nextRetryMs, undefined);
    });

    it('insert_then_complete completes with the row count', async () => {
      const run = await instance('insert_then_complete');
      assert.deepEqual(run(task({ note: 'n' })), { tag: 'completion', val: '{"inserted":1}' });
      assert.deepEqual(host.calls[0][2], [12, 'n']);
    });

    it('a second resolution is an error', async () => {
      const run = await instance('two_resolutions');
      const r = run(task({}));
      assert.equal(r.tag, 'temporary-failure');
      assert.equal(r.val.error, 'a resolution was already selected');
      assert.match(r.val.stack, /guests\/two_resolutions\.js:7:/);
    });

    it('no resolution is a temporary failure', async () => {
      const run = await instance('no_resolution');
      assert.deepEqual(run(task({})), { tag: 'temporary-failure', val: { error: 'no resolution selected' } });
      assert.deepEqual(host.logs, [[2, 'returning without a resolution']]);
    });

    it('data: aux merged over it, odd JSON kept, bad JSON fails for good', async () => {
      const run = await instance('echo');
      assert.equal(run(task({ a: 1, b: 2 }, { auxData: '{"b":3,"c":4}' })).val, '{"a":1,"b":3,"c":4}');
      assert.equal(run(task('[1,2]', { auxData: '{"b":3}' })).val, '[1,2]');
      assert.equal(run(task('null')).val, 'null');
      assert.equal(run(task('"\\u00e9\\ud83d\\ude00"')).val, '"é😀"');
      assert.equal(run(task('12345678901234567890')).val, '12345678901234567000');
      const bad = run(task('{bad'));
      assert.equal(bad.tag, 'permanent-failure');
      assert.match(bad.val[0], /^task data is not valid JSON: /);
      assert.equal(run(task('{}', { auxData: 'nope' })).tag, 'permanent-failure');
    });

    it('restart carries new data and the host time', async () => {
      const run = await instance('restart');
      assert.deepEqual(run(task({ left: 2 })), {
        tag: 'restart',
        val: { atMs: 1700000000000, newData: '{"left":1}' },
      });
      assert.deepEqual(run(task({ left: 0 }, { iteration: 2 })), { tag: 'completion', val: '{"iteration":2}' });
    });

    it('snooze carries its time', async () => {
      const run = await instance('snooze');
      assert.deepEqual(run(task({ until: 1700000060000 })), { tag: 'snooze', val: 1700000060000 });
      const bad = run(task({ until: 'later' }));
      assert.equal(bad.tag, 'temporary-failure');
      assert.match(bad.val.error, /snooze time must be a Date or milliseconds/);
    });

    it('host functions: results, errors, options, metadata, console', async () => {
      const run = await instance('host_calls');
      const r = run(task({}));
      assert.equal(r.tag, 'completion', JSON.stringify(r));
      assert.deepEqual(JSON.parse(r.val), {
        affected: 1,
        rows: [{ one: 1, two: 'two' }],
        badError: 'execute failed: no such table: no_such_table',
        scheduled: 77,
        // This stand-in host schedules anything; Warren's own test checks the key's effect.
        uniqueFirst: 77,
        uniqueAgain: 77,
        badUnique: null,
        metaBefore: null,
        metaAfter: 'v',
        now: 1700000000000,
      });
      assert.deepEqual(host.calls[3], ['schedule', 'guests:echo', { from: 12 }, { priority: 'background' }]);
      assert.deepEqual(host.calls[5], [
        'schedule', 'guests:echo', { n: 2 }, { uniqueKey: 'guest-unique', uniqueStates: ['completed'] },
      ]);
      assert.deepEqual(host.logs, [[2, 'host_calls done'], [0, 'an error line {"id":12}']]);
    });

    it('progress reaches the host; a bad one throws an Error with its text', async () => {
      const run = await instance('progress');
      const r = run(task({ steps: 2, bad: 1.5 }));
      assert.equal(r.tag, 'completion', JSON.stringify(r));
      assert.deepEqual(JSON.parse(r.val), {
        badError: 'setProgress failed: progress must be a fraction from 0 to 1, not 1.5',
        typeError: 'progress must be a number from 0 to 1, not string',
      });
      assert.deepEqual(host.calls, [
        ['progress', 0, 'step 0 of 2'],
        ['progress', 0.5, 'step 1 of 2'],
        ['progress', 1.5, null],
        ['progress', 1, null],
      ]);
    });

    it('without the kit an exception is a trap', async () => {
      const run = await instance('raw_throw');
      assert.throws(() => run(task({})), /unreachable/);
    });
  });
}

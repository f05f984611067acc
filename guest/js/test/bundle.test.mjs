// Tests of bundling (TypeScript and npm packages) in build.mjs, and of the kit's types:
// where a bundle error points, what a bundle may import, the source map appended to
// the component, and that the TypeScript example module type-checks against
// warren.d.ts while a wrong use of the kit does not.
//
//   npm test --prefix guest/js
//
// Needs `npm ci` here (with the dev dependencies: typescript) and the npm registry (or
// npm's cache) for the example module's packages.
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, it, before, after } from 'node:test';
import { fileURLToPath } from 'node:url';

const KIT = path.dirname(path.dirname(fileURLToPath(import.meta.url)));
const REPO = path.resolve(KIT, '..', '..');
const TSC = path.join(KIT, 'node_modules', 'typescript', 'bin', 'tsc');

let scratch;
before(() => {
  scratch = fs.mkdtempSync(path.join(os.tmpdir(), 'warren-bundle-test-'));
});
after(() => fs.rmSync(scratch, { recursive: true, force: true }));

// A module folder `name` under the scratch folder holding `files` ({path: text}).
function module(name, files) {
  const root = path.join(scratch, name);
  for (const [file, text] of Object.entries(files)) {
    fs.mkdirSync(path.dirname(path.join(root, file)), { recursive: true });
    fs.writeFileSync(path.join(root, file), text);
  }
  return root;
}

function build(root, entry) {
  const out = path.join(root, '..', `${path.basename(root)}.wasm`);
  const run = spawnSync(process.execPath, [path.join(KIT, 'build.mjs'), '--js', path.join(root, entry), '--root', root, '--out', out], {
    encoding: 'utf8',
  });
  return { status: run.status, stderr: run.stderr, out };
}

// The payload of the component's top-level custom section `name`, as text.
function customSection(file, name) {
  const bytes = fs.readFileSync(file);
  const leb = (at) => {
    let value = 0;
    let shift = 0;
    for (;;) {
      const b = bytes[at.i++];
      value += (b & 0x7f) * 2 ** shift;
      if ((b & 0x80) === 0) return value;
      shift += 7;
    }
  };
  const at = { i: 8 };
  while (at.i < bytes.length) {
    const id = bytes[at.i++];
    const size = leb(at);
    const end = at.i + size;
    if (id === 0) {
      const inner = { i: at.i };
      const len = leb(inner);
      if (bytes.subarray(inner.i, inner.i + len).toString() === name) {
        return bytes.subarray(inner.i + len, end).toString();
      }
    }
    at.i = end;
  }
  return null;
}

describe('bundling', () => {
  it('a TypeScript task is bundled with its imports and carries its source map', () => {
    const root = module('tsmod', {
      'tasks/t.ts': "import { defineTask } from 'warren';\nimport { twice } from '../lib/twice';\n\nexport const runTask = defineTask((task, ctx) => {\n  ctx.resolveByCompletion(twice(task.data.n as number));\n});\n",
      'lib/twice.ts': 'export function twice(n: number): number {\n  return n * 2;\n}\n',
    });
    const { status, stderr, out } = build(root, 'tasks/t.ts');
    assert.equal(status, 0, stderr);
    const map = JSON.parse(customSection(out, 'warren:source-map'));
    assert.equal(map.version, 3);
    assert.equal(map.file, '/tsmod/tasks/t.js');
    assert.deepEqual([...map.sources].sort(), ['/tsmod/lib/twice.ts', '/tsmod/tasks/t.ts']);
    assert.ok(map.mappings.length > 0);
  });

  it('a plain JavaScript module is compiled as it is, with no source map', () => {
    const root = module('jsmod', {
      'tasks/t.js': "import { defineTask } from 'warren';\nexport const runTask = defineTask((t, ctx) => ctx.resolveByCompletion(1));\n",
    });
    const { status, stderr, out } = build(root, 'tasks/t.js');
    assert.equal(status, 0, stderr);
    assert.equal(customSection(out, 'warren:source-map'), null);
  });

  it('a syntax error names the file, line and column', () => {
    const root = module('badsyntax', {
      'tasks/t.ts': "import { defineTask } from 'warren';\nconst x: number = ;\n",
    });
    const { status, stderr } = build(root, 'tasks/t.ts');
    assert.equal(status, 1);
    assert.match(stderr, new RegExp(`${root.replaceAll('/', '\\/')}/tasks/t\\.ts:2:19: `));
  });

  it('an import that leaves the module folder is refused', () => {
    module('secret', { 'data.ts': 'export const secret = 42;\n' });
    const root = module('escape', {
      'tasks/t.ts': "import { secret } from '../../secret/data';\nexport const runTask = () => secret;\n",
    });
    const { status, stderr } = build(root, 'tasks/t.ts');
    assert.equal(status, 1);
    assert.match(stderr, /secret\/data\.ts\) is outside the module folder/);
  });

  it('a glob of a dynamic import cannot reach past the module folder', () => {
    module('globbed', { 'secret.txt': 'the secret\n', 'secret.ts': 'export default 42;\n' });
    const root = module('glob', {
      'tasks/t.ts': "export const runTask = async (n: string) => (await import(`../../globbed/secr${n}`)).default;\n",
    });
    const { status, stderr, out } = build(root, 'tasks/t.ts');
    assert.equal(status, 1);
    assert.match(stderr, /is outside the module folder/);
    assert.equal(fs.existsSync(out), false);
  });

  it('only the kinds of files the cache key covers can be imported', () => {
    const root = module('text', {
      'notes.txt': 'hello\n',
      'tasks/t.ts': "import notes from '../notes.txt';\nexport const runTask = () => notes;\n",
    });
    const { status, stderr } = build(root, 'tasks/t.ts');
    assert.equal(status, 1);
    assert.match(stderr, /notes\.txt: only \.js, \.mjs, \.cjs, \.ts, \.mts, \.cts, \.json files can be imported/);
  });

  it('a source map comment does not make esbuild read a file outside the module', () => {
    module('maps', { 'evil.map': JSON.stringify({ version: 3, sources: ['/etc/shadow'], mappings: 'AAAA' }) });
    const root = module('mapped', {
      'tasks/t.js': "import { defineTask } from 'warren';\nexport const runTask = defineTask((t, ctx) => ctx.resolveByCompletion(1));\n//# sourceMappingURL=../../maps/evil.map\n",
      'package.json': '{"name": "mapped", "private": true}',
    });
    const { status, stderr, out } = build(root, 'tasks/t.js');
    assert.equal(status, 0, stderr);
    const map = JSON.parse(customSection(out, 'warren:source-map'));
    assert.deepEqual(map.sources, ['/mapped/tasks/t.js']);
  });

  it('a tsconfig.json that extends a file outside the module is refused', () => {
    module('shared', { 'tsconfig.base.json': '{}' });
    const root = module('extends', {
      'tsconfig.json': '{"extends": "../shared/tsconfig.base.json"}',
      'tasks/t.ts': "export const runTask = () => 1;\n",
    });
    const { status, stderr } = build(root, 'tasks/t.ts');
    assert.equal(status, 1);
    assert.match(stderr, /"extends" names \.\.\/shared\/tsconfig\.base\.json, which is not a file inside the module folder/);
  });

  it('a missing package is named', () => {
    const root = module('nopkg', {
      'package.json': '{"name": "nopkg", "private": true}',
      'tasks/t.js': "import leftPad from 'left-pad';\nexport const runTask = () => leftPad('x', 3);\n",
    });
    const { status, stderr } = build(root, 'tasks/t.js');
    assert.equal(status, 1);
    assert.match(stderr, /tasks\/t\.js:1:\d+: Could not resolve "left-pad"/);
  });
});

describe('types', () => {
  it('the TypeScript example module type-checks against warren.d.ts', () => {
    const example = path.join(REPO, 'examples', 'modules', 'typescript');
    const copy = path.join(scratch, 'example');
    fs.cpSync(example, copy, { recursive: true, filter: (src) => path.basename(src) !== 'node_modules' });
    execFileSync('npm', ['ci', '--ignore-scripts', '--no-audit', '--no-fund'], { cwd: copy, stdio: 'ignore' });
    const config = JSON.parse(fs.readFileSync(path.join(copy, 'tsconfig.json'), 'utf8'));
    // The example points at the kit by a path inside the repository; the copy at the kit.
    config.compilerOptions.paths.warren = [path.join(KIT, 'warren.d.ts')];
    fs.writeFileSync(path.join(copy, 'tsconfig.json'), JSON.stringify(config));
    const ok = spawnSync(process.execPath, [TSC, '-p', copy], { encoding: 'utf8' });
    assert.equal(ok.status, 0, ok.stdout + ok.stderr);

    // A wrong use of the kit is caught: a snooze needs a time, not text.
    fs.appendFileSync(
      path.join(copy, 'tasks', 'greet.ts'),
      "\nexport const wrong = defineTask((task, ctx) => ctx.resolveBySnooze('soon'));\n",
    );
    const bad = spawnSync(process.execPath, [TSC, '-p', copy], { encoding: 'utf8' });
    assert.notEqual(bad.status, 0);
    assert.match(bad.stdout, /greet\.ts\(\d+,\d+\): error TS2345/);
  });
});

#!/usr/bin/env node
// Compiles one JavaScript task file to a Warren task component.
//
//   node guest/js/build.mjs --js <task.js> --out <task.wasm>
//        [--root <dir>] [--wit <file or dir>] [--engine quickjs|starlingmonkey]
//
// --js      the task file (it exports `runTask`, usually through `defineTask` from 'warren')
// --out     the component to write (written to a temporary name, then renamed)
// --root    the folder the task may import from (relative imports must stay inside it);
//           default: the task file's folder. Warren passes the module folder.
// --wit     the world; default: ../../wit/warren-task.wit beside this file
// --engine  quickjs (default; componentize-qjs --sync) or starlingmonkey (componentize-js)
// --timeout-ms  stop the compiler after this long (default 120000): a module whose top
//           level never finishes would otherwise hang the build
//
// What it does: copies the root folder (its .js/.mjs/.cjs/.json files; links to folders
// are not followed, and a linked file must resolve inside the root) into a fresh
// staging folder, next to a `node_modules/warren/index.js` holding warren.js (so
// `import … from 'warren'` resolves), runs the compiler from this folder's node_modules,
// and removes the staging folder.
// The compiler's own messages go to stderr; the exit status is 0 on success, 1 when the
// compiler failed, 2 on bad arguments, 3 when the compiler is not installed. Needs
// Node.js 18 or later and `npm ci` here.

import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const KIT_DIR = path.dirname(fileURLToPath(import.meta.url));
const WORLD = 'task-world';

function usage(message) {
  process.stderr.write(`build.mjs: ${message}\n`);
  process.stderr.write(
    'usage: node build.mjs --js <task.js> --out <task.wasm> [--root <dir>] [--wit <path>]\n' +
      '                      [--engine quickjs|starlingmonkey] [--timeout-ms <ms>]\n',
  );
  process.exit(2);
}

function parseArgs(argv) {
  const opts = { engine: 'quickjs', 'timeout-ms': '120000' };
  const known = new Set(['--js', '--out', '--root', '--wit', '--engine', '--timeout-ms']);
  for (let i = 0; i < argv.length; i += 2) {
    const flag = argv[i];
    if (!known.has(flag)) usage(`unknown argument '${flag}'`);
    if (i + 1 >= argv.length) usage(`${flag} needs a value`);
    opts[flag.slice(2)] = argv[i + 1];
  }
  if (!opts.js) usage('--js is required');
  if (!opts.out) usage('--out is required');
  if (opts.engine !== 'quickjs' && opts.engine !== 'starlingmonkey') {
    usage(`--engine must be quickjs or starlingmonkey, not '${opts.engine}'`);
  }
  opts.timeoutMs = Number(opts['timeout-ms']);
  if (!Number.isInteger(opts.timeoutMs) || opts.timeoutMs <= 0) usage('--timeout-ms must be a positive integer');
  return opts;
}

const opts = parseArgs(process.argv.slice(2));

function realPath(file, what) {
  try {
    return fs.realpathSync(path.resolve(file));
  } catch (e) {
    return usage(`${what} ${file}: ${e.code === 'ENOENT' ? 'not found' : e.message}`);
  }
}

const entry = realPath(opts.js, '--js');
const root = realPath(opts.root ?? path.dirname(entry), '--root');
const wit = path.resolve(opts.wit ?? path.join(KIT_DIR, '..', '..', 'wit', 'warren-task.wit'));
const out = path.resolve(opts.out);

const relEntry = path.relative(root, entry);
if (relEntry.startsWith('..') || path.isAbsolute(relEntry)) usage(`${opts.js} is not inside the root ${root}`);
if (!fs.existsSync(wit)) usage(`no WIT at ${wit}`);

const tmp = fs.realpathSync(os.tmpdir());
if (tmp === root || tmp.startsWith(root + path.sep)) {
  usage(`the root ${root} contains the temporary folder ${tmp}; give a narrower --root`);
}

// The compiler for the engine: [script, args...], run with this Node.js.
function compilerCommand(stage, stagedRoot, stagedEntry, partial, kit) {
  if (opts.engine === 'quickjs') {
    const bin = path.join(KIT_DIR, 'node_modules', 'componentize-qjs', 'bin', 'componentize-qjs');
    return [bin, '--wit', wit, '--js', stagedEntry, '--module-root', stage, '--world', WORLD, '--sync', '-o', partial];
  }
  // StarlingMonkey resolves every specifier relative to the importing file, so the
  // staged files get their `'warren'` imports rewritten to a relative path.
  fs.writeFileSync(path.join(stage, 'warren.js'), kit);
  rewriteWarrenImports(stagedRoot, path.join(stage, 'warren.js'));
  const bin = path.join(KIT_DIR, 'node_modules', '@bytecodealliance', 'componentize-js', 'src', 'cli.js');
  return [bin, stagedEntry, '--wit', wit, '--world-name', WORLD, '-d', 'http', 'fetch-event', '-o', partial];
}

// Runs the compiler in its own process group, so a timeout or a signal to this script
// also ends the processes it starts (StarlingMonkey's runs wizer as a child).
function runCompiler(cmd, cwd) {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, cmd, { cwd, detached: true, stdio: ['ignore', 'pipe', 'pipe'] });
    const chunks = [];
    child.stdout.on('data', (c) => chunks.push(c));
    child.stderr.on('data', (c) => chunks.push(c));
    const killGroup = () => {
      try {
        process.kill(-child.pid, 'SIGKILL');
      } catch {
        // already gone
      }
    };
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      killGroup();
    }, opts.timeoutMs);
    const onSignal = (signal) => {
      killGroup();
      cleanup();
      process.exit(signal === 'SIGINT' ? 130 : 143);
    };
    for (const sig of ['SIGTERM', 'SIGINT', 'SIGHUP']) process.on(sig, onSignal);
    child.on('error', (error) => {
      clearTimeout(timer);
      resolve({ code: null, error, timedOut, text: Buffer.concat(chunks).toString() });
    });
    child.on('close', (code) => {
      clearTimeout(timer);
      killGroup(); // leftovers of a compiler that exited early
      resolve({ code, error: null, timedOut, text: Buffer.concat(chunks).toString() });
    });
  });
}

// The staging folder: <stage>/node_modules/warren/index.js and <stage>/<root's name>/…
// The folder name shows up in JS stack traces (/<name>/tasks/x.js:3:9).
const stage = fs.mkdtempSync(path.join(tmp, 'warren-js-'));
const partial = `${out}.partial-${process.pid}`;
function cleanup() {
  fs.rmSync(stage, { recursive: true, force: true });
  fs.rmSync(partial, { force: true });
}

async function main() {
  const stagedRoot = path.join(stage, path.basename(root) || 'task');
  const stagedEntry = path.join(stagedRoot, relEntry);
  const outside = [];
  fs.cpSync(root, stagedRoot, {
    recursive: true,
    dereference: true, // the compilers refuse files whose real path leaves the root
    filter: (src) => {
      if (src === root) return true;
      if (['.git', '.hg', '.svn'].includes(path.basename(src))) return false;
      const source = /\.(m?js|cjs|json)$/.test(src);
      const own = fs.lstatSync(src, { throwIfNoEntry: false });
      if (own?.isSymbolicLink()) {
        // A link to a folder is never followed (links to `.` would make the copy
        // endless); a linked file is copied only when it resolves inside the root.
        const stat = fs.statSync(src, { throwIfNoEntry: false });
        if (stat === undefined || stat.isDirectory() || !source) return false;
        const real = fs.realpathSync(src);
        if (real.startsWith(root + path.sep)) return true;
        outside.push(`${path.relative(root, src)} (to ${real})`);
        return false;
      }
      // folders, and the files an import can name; not data, images or compiled code
      return own !== undefined && (own.isDirectory() || source);
    },
  });
  if (outside.length > 0) {
    for (const link of outside) {
      process.stderr.write(`build.mjs: ${link}: a symbolic link leading outside the root ${root}\n`);
    }
    return 1;
  }
  const kit = fs.readFileSync(path.join(KIT_DIR, 'warren.js'), 'utf8');
  fs.mkdirSync(path.join(stage, 'node_modules', 'warren'), { recursive: true });
  fs.writeFileSync(path.join(stage, 'node_modules', 'warren', 'index.js'), kit);
  fs.writeFileSync(
    path.join(stage, 'node_modules', 'warren', 'package.json'),
    JSON.stringify({ name: 'warren', type: 'module', main: 'index.js' }),
  );

  const cmd = compilerCommand(stage, stagedRoot, stagedEntry, partial, kit);
  if (!fs.existsSync(cmd[0])) {
    process.stderr.write(
      `build.mjs: the ${opts.engine} compiler is not installed (no ${cmd[0]}); run: npm ci --prefix ${KIT_DIR}` +
        (opts.engine === 'starlingmonkey' ? ' (without --omit=dev)\n' : '\n'),
    );
    return 3;
  }
  fs.mkdirSync(path.dirname(out), { recursive: true });
  const run = await runCompiler(cmd, stage);
  if (run.code === 0 && !run.timedOut && fs.existsSync(partial)) {
    fs.renameSync(partial, out);
    return 0;
  }
  // The compilers chat on stdout; show it only when something went wrong.
  process.stderr.write(run.text.replaceAll(stage, '<stage>'));
  if (run.timedOut) {
    process.stderr.write(
      `build.mjs: the compiler did not finish within ${opts.timeoutMs} ms (does the module's top level loop forever?)\n`,
    );
  } else if (run.error) {
    process.stderr.write(`build.mjs: ${run.error.message}\n`);
  }
  return 1;
}

let status = 1;
try {
  status = await main();
} finally {
  cleanup();
}
process.exit(status);

function rewriteWarrenImports(dir, kitFile) {
  for (const entry of fs.readdirSync(dir, { withFileTypes: true })) {
    const file = path.join(dir, entry.name);
    if (entry.isDirectory()) {
      if (entry.name !== 'node_modules') rewriteWarrenImports(file, kitFile);
    } else if (/\.(m?js)$/.test(entry.name)) {
      const source = fs.readFileSync(file, 'utf8');
      let rel = path.relative(path.dirname(file), kitFile).split(path.sep).join('/');
      if (!rel.startsWith('.')) rel = `./${rel}`;
      const rewritten = source.replace(/(\bfrom\s*|\bimport\s*)(['"])warren\2/g, `$1$2${rel}$2`);
      if (rewritten !== source) fs.writeFileSync(file, rewritten);
    }
  }
}

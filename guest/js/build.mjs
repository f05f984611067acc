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
//
// TypeScript and npm packages: when the task file is TypeScript (.ts, .mts, .cts) or the
// root has a package.json, the task is first bundled with esbuild (its imports, npm
// packages from the root's node_modules included; every file must resolve inside the
// root; 'warren' stays an import) into one file in the staging folder, and that file is
// compiled. The bundle's source map, with sources named `/<root's name>/<path>` as
// stacks name files, is appended to the component as the custom section
// `warren:source-map`, from which Warren maps failure stacks back to the author's lines.
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

// The files a bundle may take, by extension, with esbuild's loader for each; Warren's
// compile cache key hashes the same kinds (src/wasm/js.rs, is_source).
const LOADERS = { '.js': 'js', '.mjs': 'js', '.cjs': 'js', '.ts': 'ts', '.mts': 'ts', '.cts': 'ts', '.json': 'json' };

// The module's own tsconfig.json (esbuild would otherwise use one from a folder above
// the module, which the compile cache's key does not cover), refused when it extends a
// file outside the module folder; `null` (after saying why) when it does.
function tsconfigOption() {
  const own = path.join(root, 'tsconfig.json');
  if (!fs.existsSync(own)) return { tsconfigRaw: '{}' };
  const text = fs.readFileSync(own, 'utf8');
  for (const match of text.matchAll(/"extends"\s*:\s*(\[[^\]]*\]|"[^"]*")/g)) {
    for (const name of match[1].matchAll(/"([^"]*)"/g)) {
      const target = path.resolve(root, name[1]);
      if (!name[1].startsWith('.') || !fs.existsSync(target) || !isInsideRoot(fs.realpathSync(target))) {
        process.stderr.write(`build.mjs: ${own}: "extends" names ${name[1]}, which is not a file inside the module folder\n`);
        return null;
      }
    }
  }
  return { tsconfig: own };
}

function isInsideRoot(file) {
  return file === root || file.startsWith(root + path.sep);
}

// Whether the task is bundled with esbuild first (see the head of this file).
function wantsBundle() {
  return /\.[mc]?ts$/.test(entry) || fs.existsSync(path.join(root, 'package.json'));
}

// Bundles the task into `bundleFile` with esbuild; returns the source map (JSON text) or
// null after printing why it failed. Sources are renamed `/<rootName>/<path in root>`.
async function bundle(bundleFile, rootName) {
  let esbuild;
  try {
    esbuild = await import(path.join(KIT_DIR, 'node_modules', 'esbuild', 'lib', 'main.js'));
  } catch (e) {
    process.stderr.write(`build.mjs: esbuild is not installed (${e.message}); run: npm ci --prefix ${KIT_DIR}\n`);
    return null;
  }
  // Every file the bundle takes is checked where it is loaded, so no way of naming it
  // (a resolved import, a glob of a dynamic import, a link) can reach past the module
  // folder, and only the kinds of files Warren hashes into the compile cache's key are
  // read. Source map comments are dropped: esbuild would read the map they name.
  const inside = {
    name: 'warren-inside-root',
    setup(build) {
      build.onResolve({ filter: /^warren$/ }, () => ({ path: 'warren', external: true }));
      build.onLoad({ filter: /.*/ }, (args) => {
        if (args.namespace !== 'file') {
          return { errors: [{ text: `${args.path}: only files of the module folder can be imported` }] };
        }
        let real;
        try {
          real = fs.realpathSync(args.path);
        } catch (e) {
          return { errors: [{ text: `${args.path}: ${e.message}` }] };
        }
        if (!isInsideRoot(real)) {
          return { errors: [{ text: `${args.path} (${real}) is outside the module folder ${root}` }] };
        }
        const loader = LOADERS[path.extname(real)];
        if (loader === undefined) {
          return {
            errors: [{ text: `${args.path}: only ${Object.keys(LOADERS).join(', ')} files can be imported by task code` }],
          };
        }
        const text = fs.readFileSync(real, 'utf8').replace(/^[ \t]*\/\/[#@][ \t]*sourceMappingURL=.*$/gm, '');
        return { contents: text, loader, resolveDir: path.dirname(args.path) };
      });
    },
  };
  const tsconfig = tsconfigOption();
  if (tsconfig === null) return null;
  let result;
  try {
    result = await esbuild.build({
      ...tsconfig,
      entryPoints: [entry],
      absWorkingDir: root,
      bundle: true,
      format: 'esm',
      platform: 'neutral',
      target: 'es2022',
      mainFields: ['module', 'main'],
      conditions: ['import', 'default'],
      outfile: bundleFile,
      sourcemap: 'external',
      sourcesContent: false,
      plugins: [inside],
      logLevel: 'silent',
      write: true,
    });
  } catch (e) {
    const messages = (e.errors ?? []).map((m) => {
      const where = m.location ? `${path.join(root, m.location.file)}:${m.location.line}:${m.location.column + 1}: ` : '';
      return `${where}${m.text}`;
    });
    process.stderr.write(`${messages.length > 0 ? messages.join('\n') : e.message}\n`);
    return null;
  }
  for (const w of result.warnings) process.stderr.write(`warning: ${w.text}\n`);
  const map = JSON.parse(fs.readFileSync(`${bundleFile}.map`, 'utf8'));
  const mapDir = path.dirname(bundleFile);
  map.sources = map.sources.map((s) => {
    const file = path.resolve(mapDir, s);
    const rel = path.relative(root, file).split(path.sep).join('/');
    // Every loaded file was checked to be inside the root; a source outside it would
    // be a bug here, not a name to show.
    if (rel.startsWith('..')) throw new Error(`source map names ${s}, outside the module folder`);
    return `/${rootName}/${rel}`;
  });
  delete map.sourceRoot;
  // The generated file as stacks name it: its path under the staging folder.
  map.file = `/${path.relative(stage, bundleFile).split(path.sep).join('/')}`;
  fs.rmSync(`${bundleFile}.map`);
  return JSON.stringify(map);
}

// Appends a custom section `name` holding `text` to the component in `file`.
function appendCustomSection(file, name, text) {
  const leb = (n) => {
    const bytes = [];
    do {
      let b = n & 0x7f;
      n = Math.floor(n / 128);
      if (n > 0) b |= 0x80;
      bytes.push(b);
    } while (n > 0);
    return Buffer.from(bytes);
  };
  const nameBytes = Buffer.from(name, 'utf8');
  const body = Buffer.concat([leb(nameBytes.length), nameBytes, Buffer.from(text, 'utf8')]);
  fs.appendFileSync(file, Buffer.concat([Buffer.from([0]), leb(body.length), body]));
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
  const rootName = path.basename(root) || 'task';
  const stagedRoot = path.join(stage, rootName);
  let stagedEntry = path.join(stagedRoot, relEntry);
  let sourceMap = null;
  if (wantsBundle()) {
    stagedEntry = stagedEntry.replace(/\.[mc]?[jt]s$/, '') + '.js';
    fs.mkdirSync(path.dirname(stagedEntry), { recursive: true });
    sourceMap = await bundle(stagedEntry, rootName);
    if (sourceMap === null) return 1;
  } else if (!copyRoot(stagedRoot)) {
    return 1;
  }
  return compile(stagedRoot, stagedEntry, sourceMap);
}

// Copies the root's sources to the staging folder; false (after saying why) when a link
// leads outside the root.
function copyRoot(stagedRoot) {
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
  for (const link of outside) {
    process.stderr.write(`build.mjs: ${link}: a symbolic link leading outside the root ${root}\n`);
  }
  return outside.length === 0;
}

// Compiles the staged entry to the component at `out`, with the source map (if any)
// appended as a custom section.
async function compile(stagedRoot, stagedEntry, sourceMap) {
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
    if (sourceMap !== null) appendCustomSection(partial, 'warren:source-map', sourceMap);
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

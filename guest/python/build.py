#!/usr/bin/env python3
"""Compiles one Python task file to a Warren task component with componentize-py.

    python3 guest/python/build.py --py <task.py> --out <task.wasm>
        [--root <dir>] [--wit <file or dir>] [--timeout-s <s>]

--py         the task file (it defines its task function with @define_task from warren)
--out        the component to write (written under a temporary name, then renamed)
--root       the module folder: the task is imported from it as a module of its
             package path (tasks/greet.py is `tasks.greet`), and may import the
             folder's other modules the same way; default: the task file's folder
--wit        the world; default: ../../wit/warren-task.wit beside this file
--timeout-s  stop the compiler after this long (default 300): a module whose top level
             never finishes would otherwise hang the build

What it does: copies the module folder's .py files (no links leading outside it, no
dot-folders, no __pycache__) into a fresh staging folder, next to a folder holding a
copy of the kit (warren.py) and an entry module that imports the kit's world export and
the task module, and runs `componentize-py componentize` on those two folders only.
componentize-py imports the entry at build time and snapshots the interpreter, so the
module's top level runs here, not per run; it sees nothing but the copies (its folders
are writable, so the toolkit and the module folder are never handed to it). The entry
refuses a task module that is not the module folder's own file (a name the standard
library or the kit takes) or that defines no task function. componentize-py must be
importable (Warren installs it with pip into `deps/` beside this file and puts that on
PYTHONPATH). Exit status: 0 on success, 1 when the compiler failed, 2 on bad arguments.
"""

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile

KIT_DIR = os.path.dirname(os.path.abspath(__file__))


# The entry module componentize-py imports at build time: the kit's world export, the
# traceback layout, then the task module, checked to be the module folder's own file.
ENTRY = """import sys

import warren
from warren import WitWorld  # noqa: F401  (the world's export)

warren._set_layout("/0/", "/1/", {shown!r})
import {name}  # noqa: E402,F401  (defines the task function)

_file = getattr(sys.modules[{name!r}], "__file__", None) or ""
if not _file.startswith("/1/"):
    raise ImportError(
        "the task module {name} is not the module folder's file but " + repr(_file)
        + ": rename it (the standard library or the kit has a module of that name)"
    )
if warren._task_function is None:
    raise ImportError("the task module {name} defines no task function: decorate it with @define_task")
"""


def fail(message, status=2):
    print(f"build.py: {message}", file=sys.stderr)
    sys.exit(status)


def module_name(root, entry):
    rel = os.path.relpath(entry, root)
    if rel.startswith(os.pardir + os.sep) or os.path.isabs(rel):
        fail(f"{entry} is not inside the root {root}")
    parts = rel[: -len(".py")].split(os.sep)
    for part in parts:
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", part):
            fail(f"{rel}: '{part}' cannot be part of a Python module name (letters, digits and '_')")
    return ".".join(parts)


def module_files(root):
    """The .py files of the module folder, as paths relative to it: what the build
    copies, and what Warren hashes into the compile cache's key (src/wasm/python.rs)."""
    found = []
    for folder, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if not d.startswith(".") and d not in ("__pycache__", "node_modules"))
        for name in sorted(files):
            if not name.endswith(".py"):
                continue
            path = os.path.join(folder, name)
            if not os.path.exists(path):
                continue  # a dangling link: nothing to read (Warren's key skips it too)
            real = os.path.realpath(path)
            if real != root and not real.startswith(root + os.sep):
                fail(f"{os.path.relpath(path, root)} is a symbolic link leading outside the module folder (to {real})", 1)
            found.append(os.path.relpath(path, root))
    return found


def main():
    parser = argparse.ArgumentParser(description="Compile a Python task to a Warren component")
    parser.add_argument("--py", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--root")
    parser.add_argument("--wit", default=os.path.join(KIT_DIR, "..", "..", "wit", "warren-task.wit"))
    parser.add_argument("--timeout-s", type=float, default=300.0)
    args = parser.parse_args()
    entry = os.path.realpath(args.py)
    if not entry.endswith(".py") or not os.path.isfile(entry):
        fail(f"--py {args.py}: not a .py file")
    root = os.path.realpath(args.root or os.path.dirname(entry))
    name = module_name(root, entry)
    if not os.path.exists(args.wit):
        fail(f"no WIT at {args.wit}")
    out = os.path.abspath(args.out)
    partial = f"{out}.partial-{os.getpid()}"
    with tempfile.TemporaryDirectory(prefix="warren-py-") as stage:
        kit = os.path.join(stage, "kit")
        module = os.path.join(stage, "module")
        os.makedirs(kit)
        for rel in module_files(root):
            os.makedirs(os.path.join(module, os.path.dirname(rel)), exist_ok=True)
            shutil.copyfile(os.path.join(root, rel), os.path.join(module, rel))
        shutil.copyfile(os.path.join(KIT_DIR, "warren.py"), os.path.join(kit, "warren.py"))
        # componentize-py shows the folders of the module path as /0/, /1/ in
        # tracebacks, in the order of the -p options below.
        shown = "/" + (os.path.basename(root) or "task") + "/"
        with open(os.path.join(kit, "warren_entry.py"), "w") as f:
            f.write(ENTRY.format(shown=shown, name=name))
        command = [
            sys.executable, "-c", "import componentize_py; componentize_py.script()",
            "-d", args.wit, "-w", "task-world", "componentize",
            "-p", kit, "-p", module,
            "warren_entry", "-o", partial,
        ]  # fmt: skip
        try:
            run = subprocess.run(command, capture_output=True, text=True, timeout=args.timeout_s)
        except subprocess.TimeoutExpired:
            fail(f"the compiler did not finish within {args.timeout_s} s (does the module's top level loop forever?)", 1)
        if run.returncode != 0 or not os.path.exists(partial):
            text = (run.stdout + run.stderr).replace(stage, "<stage>")
            sys.stderr.write(text)
            if os.path.exists(partial):
                os.remove(partial)
            return 1
        os.makedirs(os.path.dirname(out), exist_ok=True)
        os.replace(partial, out)
    return 0


if __name__ == "__main__":
    sys.exit(main())

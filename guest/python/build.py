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

What it does: writes an entry module into a fresh staging folder that imports the kit's
world export (warren.py, beside this file) and the task module, and runs
`componentize-py componentize` on it with the staging folder, this folder and the
module folder on the module path. componentize-py imports the entry at build time and
snapshots the interpreter, so the task module's top level runs here, not per run.
componentize-py must be importable (Warren installs it with pip into `deps/` beside
this file and puts that on PYTHONPATH). Exit status: 0 on success, 1 when the compiler
failed, 2 on bad arguments.
"""

import argparse
import os
import re
import subprocess
import sys
import tempfile

KIT_DIR = os.path.dirname(os.path.abspath(__file__))


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
        # componentize-py shows the folders of the module path as /0/, /1/, /2/ in
        # tracebacks, in the order of the -p options below.
        shown = "/" + (os.path.basename(root) or "task") + "/"
        with open(os.path.join(stage, "warren_entry.py"), "w") as f:
            f.write("import warren\n")
            f.write("from warren import WitWorld  # noqa: F401  (the world's export)\n\n")
            f.write(f"warren._set_layout('/1/', '/2/', {shown!r})\n")
            f.write(f"import {name}  # noqa: E402,F401  (defines the task function)\n")
        command = [
            sys.executable, "-c", "import componentize_py; componentize_py.script()",
            "-d", args.wit, "-w", "task-world", "componentize",
            "-p", stage, "-p", KIT_DIR, "-p", root,
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

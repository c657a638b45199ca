"""Check mutmut's mutants against a fixed list of test files, quickly (issue 18; README "Mutation testing").

Run from inside mutmut's own tree (mutants/, made by benchmarks/mutants_generate.py). The parent imports the
heavy dependencies and collects the tests once; each mutant runs in a forked child: MUTANT_UNDER_TEST=NAME,
`pytest -x -q -p no:cacheprovider TESTS`. Exit codes go into mutmut's own `.meta` files, so `mutmut results`
and `mutmut show NAME` report them afterwards (run those from the repository root). A mutant these tests kill
is killed by the suite; one they miss may still be killed by another test file: the score from this loop is a
lower bound. Unlike `mutmut run` there is no stats pass over the whole fast tier (minutes on 2 cores before
the first mutant), and a survivor costs the listed files, not every test that reaches its function.

usage (from the mutants/ folder that benchmarks/mutants_generate.py made):
  ../.venv/bin/python ../benchmarks/mutants_check.py 'senet_zoo.converters.convert.*' \
      --tests tests/test_convert_errors.py tests/test_caffe_layers.py [--timeout 300] [--redo] [--only NAME ...]
Prints one line a mutant and a summary; a survivors list goes to mutloop-survivors-<module>.txt.
"""
from __future__ import annotations

import argparse
import fnmatch
import json
import os
import shlex
import signal
import sys
import time
from pathlib import Path


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("pattern", help="mutant name pattern, e.g. 'senet_zoo.converters.convert.*'")
    ap.add_argument("--tests", nargs="+", required=True)
    ap.add_argument("--timeout", type=float, default=300.0)
    ap.add_argument("--redo", action="store_true", help="also rerun mutants that already have a result")
    ap.add_argument("--redo-survivors", action="store_true", help="rerun only those recorded as survived (0)")
    ap.add_argument("--only", nargs="*", default=None, help="exact mutant names")
    ap.add_argument("--pytest-args", default="", help="extra pytest arguments, shell-quoted: '-m \"not slow\"'")
    a = ap.parse_args()
    if not Path("mutmut-stats.json").exists() and not Path("senet_zoo").is_dir():
        sys.exit("run this from mutmut's mutants/ folder")
    sys.path.insert(0, os.getcwd())
    os.environ.pop("MUTANT_UNDER_TEST", None)

    metas = sorted(Path("senet_zoo").rglob("*.py.meta"))
    todo: list[tuple[Path, str]] = []
    for meta in metas:
        data = json.loads(meta.read_text())
        for name, code in data["exit_code_by_key"].items():
            if a.only is not None:
                if name in a.only:
                    todo.append((meta, name))
                continue
            if not fnmatch.fnmatchcase(name, a.pattern):
                continue
            if a.redo or code is None or (a.redo_survivors and code == 0):
                todo.append((meta, name))
    if not todo:
        print("nothing to do")
        return 0

    # imported once in the parent so that each forked child starts warm
    import numpy  # noqa: F401
    import pytest
    import torch  # noqa: F401
    try:
        import cv2  # noqa: F401
        import PIL.Image  # noqa: F401
        import pyarrow  # noqa: F401
        import safetensors.torch  # noqa: F401
    except ImportError:
        pass

    # one collection in the parent imports conftest and the test modules; pytest finds them in sys.modules in
    # each child (same files), so a mutant costs its tests, not the imports
    devnull = os.open(os.devnull, os.O_WRONLY)
    saved = os.dup(1), os.dup(2)
    os.dup2(devnull, 1)
    os.dup2(devnull, 2)
    try:
        pytest.main(["--collect-only", "-q", "-p", "no:cacheprovider", "-o", "addopts=", *shlex.split(a.pytest_args),
                     *a.tests])
    finally:
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)

    results: dict[Path, dict[str, int]] = {}
    counts = {"killed": 0, "survived": 0, "timeout": 0, "other": 0}
    survivors = []
    t0 = time.time()
    base = ["-x", "-q", "-p", "no:cacheprovider", "--no-header", "-o", "addopts=",
            *shlex.split(a.pytest_args), *a.tests]
    for i, (meta, name) in enumerate(todo, 1):
        start = time.time()
        pid = os.fork()
        if pid == 0:
            os.environ["MUTANT_UNDER_TEST"] = name
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, 1)
            os.dup2(devnull, 2)
            try:
                code = int(pytest.main(list(base)))
            except BaseException:
                code = 3
            os._exit(code)
        deadline = start + a.timeout
        status = None
        while True:
            done, st = os.waitpid(pid, os.WNOHANG)
            if done:
                status = os.waitstatus_to_exitcode(st)
                break
            if time.time() > deadline:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
                status = 36
                break
            time.sleep(0.02)
        kind = {1: "killed", 3: "killed", 0: "survived", 36: "timeout"}.get(status, "other")
        counts[kind] += 1
        if kind == "survived":
            survivors.append(name)
        results.setdefault(meta, {})[name] = status
        print(f"[{i}/{len(todo)}] {kind:8s} {status:>3} {time.time() - start:6.1f}s {name}", flush=True)
        if i % 20 == 0 or i == len(todo):
            _write(results)
    _write(results)
    module = a.pattern.rstrip(".*") if a.only is None else "only"
    Path(f"mutloop-survivors-{module}.txt").write_text("".join(n + "\n" for n in survivors))
    print(f"done: {len(todo)} mutants in {time.time() - t0:.0f}s: {counts}")
    return 0


def _write(results: dict[Path, dict[str, int]]) -> None:
    for meta, codes in results.items():
        data = json.loads(meta.read_text())
        data["exit_code_by_key"].update(codes)
        tmp = meta.with_suffix(".tmp")
        tmp.write_text(json.dumps(data, indent=4))
        tmp.replace(meta)


if __name__ == "__main__":
    sys.exit(main())

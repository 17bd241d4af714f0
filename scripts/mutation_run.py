"""Run pytest-gremlins' mutants of one module with one fork per mutant (driven by scripts/mutation.sh).

pytest-gremlins instruments a module once ("mutation switching": every mutant is compiled in, and the
module global `__gremlin_active__` picks one). Its own runner starts a fresh interpreter per mutant;
with torch to import that costs 5-50 s per mutant on a busy 2-core machine, i.e. hours per module.
Here the interpreter imports the heavy libraries once and forks per mutant; the child imports the
project afresh through the tool's import hook (cheap once torch is loaded), so code that runs at
import time (decorators, class bodies, registries) sees the active mutant too, and runs only the tests
that executed the mutated line in a baseline run (or every listed test for lines run at import).
The tool's fork/inprocess executors are disabled upstream (pytest-gremlins issue 532) because they
keep modules across mutants; this driver never does.

Output: the tool's JSON report layout (summary + results) so scripts/mutation_report.py reads both.
"""
from __future__ import annotations

import argparse
import ast
import json
import os
import signal
import sys
import time
from pathlib import Path

LINES_KEY = "<import>"  # lines executed while importing / collecting, before any test runs


class _LineRecorder:
    """Pytest plugin for the baseline child: which tests execute which lines of the target module."""

    def __init__(self, code_name: str) -> None:
        self.code_name = code_name
        self.current = LINES_KEY
        self.lines: dict[int, set[str]] = {}
        self.failed: list[str] = []
        self.durations: dict[str, float] = {}

    def _local(self, frame, event, arg):
        if event == "line":
            self.lines.setdefault(frame.f_lineno, set()).add(self.current)
        return self._local

    def _global(self, frame, event, arg):
        if frame.f_code.co_filename == self.code_name:
            self.lines.setdefault(frame.f_lineno, set()).add(self.current)
            return self._local
        return None

    def start(self) -> None:
        sys.settrace(self._global)

    def pytest_runtest_setup(self, item):
        self.current = item.nodeid

    def pytest_runtest_teardown(self, item):
        self.current = LINES_KEY

    def pytest_runtest_logreport(self, report):
        self.durations[report.nodeid] = self.durations.get(report.nodeid, 0.0) + report.duration
        if report.failed:
            self.failed.append(report.nodeid)


def _pytest_args(tests: list[str]) -> list[str]:
    return ["-q", "-x", "-p", "no:cacheprovider", "-p", "no:randomly", "-o", "addopts=--strict-markers",
            "-m", "not slow", "--timeout=0", *tests]


def _child(gremlin_id: str | None, tests: list[str], recorder: _LineRecorder | None, result_file: Path | None):
    """In a forked child: run pytest with the gremlin active; exit with pytest's status."""
    import pytest

    if gremlin_id:
        os.environ["ACTIVE_GREMLIN"] = gremlin_id
    else:
        os.environ.pop("ACTIVE_GREMLIN", None)
    devnull = os.open(os.devnull, os.O_WRONLY)
    if os.environ.get("MUTATION_VERBOSE") != "1":
        os.dup2(devnull, 1)
        os.dup2(devnull, 2)
    plugins = []
    if recorder is not None:
        recorder.start()
        plugins.append(recorder)
    try:
        rc = int(pytest.main(_pytest_args(tests), plugins=plugins))
    except BaseException:  # noqa: BLE001 - any crash of the child is a failing run
        rc = 3
    if recorder is not None:
        sys.settrace(None)
        result_file.write_text(json.dumps({"lines": {str(k): sorted(v) for k, v in recorder.lines.items()},
                                           "failed": recorder.failed, "durations": recorder.durations}))
    os._exit(rc)


def _run(gremlin_id, tests, timeout, recorder=None, result_file=None) -> tuple[str, float]:
    t0 = time.monotonic()
    pid = os.fork()
    if pid == 0:
        _child(gremlin_id, tests, recorder, result_file)
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            rc = os.waitstatus_to_exitcode(status)
            return ("survived" if rc == 0 else "zapped" if rc in (1, 2, 3) else
                    "survived" if rc == 5 else f"error rc={rc}"), time.monotonic() - t0
        if time.monotonic() - t0 > timeout:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            return "timeout", time.monotonic() - t0
        time.sleep(0.02)


def _import_from_snapshot(root: Path) -> None:
    """Import every `forkrl.<role>...` module from the snapshot under `root`, not from the editable
    install (which points at the live checkout, where others may be editing): the same folder mapping
    as pyproject's package-dir (forkrl.<role> -> <role>/), as a finder ahead of the installed one."""
    import importlib.abc
    import importlib.util
    from importlib.machinery import PathFinder

    class Finder(importlib.abc.MetaPathFinder):
        def find_spec(self, fullname, path=None, target=None):
            parts = fullname.split(".")
            if parts[0] != "forkrl" or len(parts) < 2 or not (root / parts[1]).is_dir():
                return None
            if len(parts) == 2:
                return importlib.util.spec_from_file_location(
                    fullname, root / parts[1] / "__init__.py", submodule_search_locations=[str(root / parts[1])])
            return PathFinder.find_spec(fullname, [str(root.joinpath(*parts[1:-1]))])

    sys.meta_path.insert(0, Finder())


def _install_hook(modname: str, module_path: Path, tree: ast.Module) -> None:
    """Import `modname` from the instrumented tree, compiled under its real path (the tool's own import
    hook compiles under the module name, so tracebacks and `inspect.getsource` would not find the file)."""
    import importlib.abc
    from importlib.machinery import ModuleSpec

    code = compile(tree, str(module_path), "exec")

    class Loader(importlib.abc.Loader):
        def create_module(self, spec):
            return None

        def exec_module(self, module):
            module.__dict__["__gremlin_active__"] = os.environ.get("ACTIVE_GREMLIN")
            exec(code, module.__dict__)  # noqa: S102 - the instrumented project module

    class Finder(importlib.abc.MetaPathFinder):
        def find_spec(self, fullname, path=None, target=None):
            if fullname != modname:
                return None
            spec = ModuleSpec(fullname, Loader(), origin=str(module_path))
            spec.has_location = True
            return spec

    sys.meta_path.insert(0, Finder())


def _warm_up(root: Path, tests: list[str]) -> None:
    """Import pytest's plugins and the tests' third-party imports once, here, by collecting the tests in a
    child-free dry run; then forget every project module (and the tests) so that each mutant's child
    imports them afresh, through the import hook, with its gremlin active."""
    import pytest

    pid = os.fork()  # collect in a child first: a crash in collection must not take the driver down
    if pid == 0:
        os.dup2(os.open(os.devnull, os.O_WRONLY), 1)
        os.dup2(os.open(os.devnull, os.O_WRONLY), 2)
        os._exit(int(pytest.main(["--collect-only", *_pytest_args(tests)])))
    if os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) not in (0, 5):
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    saved = os.dup(1), os.dup(2)
    os.dup2(devnull, 1)
    os.dup2(devnull, 2)
    try:
        pytest.main(["--collect-only", *_pytest_args(tests)])
    finally:
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
    for name, mod in list(sys.modules.items()):
        f = getattr(mod, "__file__", None) or ""
        if name == "conftest" or f.startswith(str(root)) or name in ("tiny_model",):
            del sys.modules[name]
    os.environ.pop("ACTIVE_GREMLIN", None)


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--module", required=True, help="e.g. learner/losses.py (relative to the cwd)")
    ap.add_argument("--tests", nargs="+", required=True)
    ap.add_argument("--timeout", type=float, default=120.0, help="seconds per mutant before 'timeout'")
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args(argv)

    root = Path.cwd()
    from pytest_gremlins.instrumentation.transformer import transform_source

    module_path = (root / args.module).resolve()
    modname = "forkrl." + args.module[:-3].replace("/", ".")  # role folders install as forkrl.<role>
    gremlins, tree = transform_source(module_path.read_text(), str(module_path))
    _import_from_snapshot(root)
    _install_hook(modname, module_path, ast.fix_missing_locations(tree))  # ahead of the snapshot finder
    _warm_up(root, args.tests)

    baseline = args.out.with_suffix(".lines.json")
    status, secs = _run(None, args.tests, args.timeout * 5, _LineRecorder(str(module_path)), baseline)
    info = json.loads(baseline.read_text()) if baseline.exists() else {"lines": {}, "failed": []}
    if status != "survived":
        print(f"baseline run of {args.tests} failed ({status}): {info['failed'][:5]}", file=sys.stderr)
        return 2
    lines = {int(k): v for k, v in info["lines"].items()}
    durations = info.get("durations", {})
    print(f"{args.module}: {len(gremlins)} mutants; baseline {secs:.1f}s", flush=True)

    results = []
    for i, g in enumerate(gremlins, 1):
        covering = lines.get(g.line_number, [])
        if g.pardoned:
            status, secs, selected = "pardoned", 0.0, []
        elif not covering:
            status, secs, selected = "survived", 0.0, []  # no listed test executes this line
        else:
            # fastest tests first: with -x a killed mutant stops at its first failing test
            selected = args.tests if LINES_KEY in covering else sorted(covering, key=lambda t: (durations.get(t, 0), t))
            status, secs = _run(g.gremlin_id, selected, args.timeout)
        results.append({"gremlin_id": g.gremlin_id, "file_path": str(module_path), "line_number": g.line_number,
                        "status": status, "operator": g.operator_name, "description": g.description,
                        "execution_time_ms": secs * 1000, "selected_tests": selected})
        print(f"  {i}/{len(gremlins)} line {g.line_number} {g.description}: {status} ({secs:.1f}s)", flush=True)

    count = {s: sum(r["status"] == s for r in results) for s in ("zapped", "survived", "timeout", "pardoned")}
    errors = len(results) - sum(count.values())
    tested = len(results) - count["pardoned"]
    summary = {"total": len(results), **count, "error": errors,
               "percentage": 100.0 * (count["zapped"] + count["timeout"]) / tested if tested else 100.0}
    args.out.write_text(json.dumps({"summary": summary, "results": results}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

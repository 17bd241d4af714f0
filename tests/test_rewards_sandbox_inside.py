"""The trust boundary in the tree: the files that run INSIDE the sandbox import only the standard library
(bwrap copies the runner in alone, and -S hides site-packages) and nothing of forkrl; no other module
of the package is run inside."""

import ast
import sys
from pathlib import Path

import pytest

import forkrl.rewards as rewards_pkg

REWARDS = Path(rewards_pkg.__file__).parent
INSIDE = sorted(REWARDS.glob("inside_sandbox_*.py"))


def _imports(path: Path) -> tuple[set[str], int]:
    """(top-level module names imported anywhere in the file, number of relative imports)."""
    names, relative = set(), 0
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                relative += 1
            else:
                names.add(node.module.split(".")[0])
    return names, relative


def test_the_inside_files_are_the_runner_and_the_harness():
    assert [p.name for p in INSIDE] == ["inside_sandbox_harness.py", "inside_sandbox_runner.py"]


@pytest.mark.parametrize("path", INSIDE, ids=lambda p: p.name)
def test_inside_files_import_only_the_standard_library(path):
    names, relative = _imports(path)
    assert relative == 0
    assert sorted(n for n in names if n not in sys.stdlib_module_names) == []


def test_the_checker_sees_a_non_stdlib_import(tmp_path):
    """The check above can fail: a file importing forkrl or pydantic is caught."""
    bad = tmp_path / "inside_sandbox_bad.py"
    bad.write_text("import os\nfrom pydantic import BaseModel\nfrom . import sandbox\nimport forkrl.rewards\n")
    names, relative = _imports(bad)
    assert (sorted(n for n in names if n not in sys.stdlib_module_names), relative) == (["forkrl", "pydantic"], 1)


def test_the_sandbox_runs_only_the_inside_files():
    """What enters the sandbox is read from these two files by path, nothing imported from elsewhere."""
    from forkrl.rewards import code_verifier, sandbox_process

    assert sandbox_process.RUNNER == REWARDS / "inside_sandbox_runner.py"
    assert code_verifier._HARNESS == REWARDS / "inside_sandbox_harness.py"

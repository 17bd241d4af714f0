"""forkrl installs under one import name, so a user's own modules named like its roles shadow
nothing: a job whose working directory holds `rewards.py`, `common/`, `learner.py` and `actors.py`
(the natural names for a user's reward file and helpers) runs, first on the path of the driver and
of every Ray worker (what `ray job submit --working-dir .` does), with its `user_fn` taken from the
user's `rewards.py`."""
import json
import os
import pkgutil
import subprocess
import sys
from pathlib import Path

import forkrl.actors
import forkrl.common
import forkrl.learner
import forkrl.orchestrator
import forkrl.rewards  # noqa: F401  (the role packages, read from sys.modules below)
import pytest
import yaml
from tiny_model import tiny_job

ROLES = ("orchestrator", "actors", "learner", "rewards", "common")
SHADOW = "raise ImportError('the user module {name} was imported by forkrl')\n"
USER_REWARD = '''
"""The user's own reward file, named like forkrl's verifier package."""
def digit_share(sample) -> float:
    text = sample.response
    return sum(c.isdigit() for c in text) / max(1, len(text))
'''


def _user_dir(tmp_path: Path) -> Path:
    wd = tmp_path / "job"
    (wd / "common").mkdir(parents=True)
    (wd / "common" / "__init__.py").write_text(SHADOW.format(name="common/"))
    (wd / "learner.py").write_text(SHADOW.format(name="learner.py"))
    (wd / "actors.py").write_text(SHADOW.format(name="actors.py"))
    (wd / "orchestrator.py").write_text(SHADOW.format(name="orchestrator.py"))
    (wd / "rewards.py").write_text(USER_REWARD)
    return wd


def _env(wd: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["PYTHONPATH"] = str(wd)  # first on the path of the driver and of the Ray workers it starts
    return env


def test_every_module_imports_beside_a_users_shadowing_modules(tmp_path):
    wd = _user_dir(tmp_path)
    names = []
    for role in ROLES:
        pkg = sys.modules[f"forkrl.{role}"]
        names += [m.name for m in pkgutil.walk_packages(pkg.__path__, prefix=f"forkrl.{role}.")]
    code = ("import importlib, sys\n"
            f"for n in {names!r}:\n    importlib.import_module(n)\n"
            "import rewards\nassert rewards.__file__.endswith('job/rewards.py'), rewards.__file__\n"
            "try:\n    import common\nexcept ImportError as e:\n    assert 'user module' in str(e)\n"
            "else:\n    raise AssertionError('the user common/ was not first on the path')\n"
            "print('ok', len(sys.modules))")
    proc = subprocess.run([sys.executable, "-c", code], cwd=wd, env=_env(wd), capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.startswith("ok")
    assert len(names) > 40  # every role's modules were tried, not an empty walk


@pytest.mark.slow
def test_a_job_runs_with_the_users_rewards_py_first_on_every_path(tmp_path, tiny_model_dir):
    wd = _user_dir(tmp_path)
    recipe = tiny_job(tiny_model_dir,
                      reward={"num_workers": 1, "type": "function", "function": "rewards:digit_share"},
                      logging={"output_dir": str(tmp_path / "runs"), "progress": False})
    (wd / "job.yaml").write_text(yaml.safe_dump(recipe))
    run_dir = tmp_path / "run"
    proc = subprocess.run([sys.executable, "-m", "forkrl.orchestrator.cli", "train", "job.yaml", "--run-dir",
                           str(run_dir)], cwd=wd, env=_env(wd), capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-4000:]
    rows = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    steps = sorted(r["step"] for r in rows if "reward/mean" in r)
    assert steps == [1, 2]
    assert "imported by forkrl" not in proc.stderr


def test_pyproject_lists_every_package_folder_of_the_roles():
    # the package list is explicit (package-dir mapping): a sub-package missing from it is missing
    # from a wheel or Docker install while the editable install here still finds it
    import tomllib

    root = Path(__file__).resolve().parents[1]
    setuptools = tomllib.loads((root / "pyproject.toml").read_text())["tool"]["setuptools"]
    folders = {f"forkrl.{init.parent.relative_to(root).as_posix().replace('/', '.')}"
               for role in ROLES for init in (root / role).rglob("__init__.py")}
    assert sorted(setuptools["packages"]) == sorted(folders)
    assert {setuptools["package-dir"][f"forkrl.{role}"] for role in ROLES} == set(ROLES)

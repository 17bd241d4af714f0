"""One install source for clusters: pyproject.toml, the Dockerfile and both cluster YAMLs agree on the
Ray version, the image names and the extra, and the worker types carry the custom resources the GPU
recipe pins its bundles to. (Nothing here can build or pull the image: these are static checks.)"""
import json
import re
import tomllib
from pathlib import Path

import yaml

from forkrl.orchestrator.config import load_config

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
DOCKERFILE = (ROOT / "Dockerfile").read_text()
RAY_UP = yaml.safe_load((ROOT / "cluster_configs" / "ray-cluster.yaml").read_text())
RAYJOB = yaml.safe_load((ROOT / "cluster_configs" / "kuberay-rayjob.yaml").read_text())


def _ray_pin() -> str:
    pins = [re.fullmatch(r"ray\[[a-z,]+\]==([\d.]+)", d) for d in PYPROJECT["project"]["dependencies"]]
    return next(m.group(1) for m in pins if m)


def _base_image() -> str:
    return re.search(r"^FROM (\S+)$", DOCKERFILE, re.M).group(1)


def _forkrl_image() -> str:
    title = re.search(r'org\.opencontainers\.image\.title="([^"]+)"', DOCKERFILE).group(1)
    version = re.search(r'org\.opencontainers\.image\.version="([^"]+)"', DOCKERFILE).group(1)
    return f"{title}:{version}"


def _rayjob_pods() -> list[dict]:
    spec = RAYJOB["spec"]["rayClusterSpec"]
    return [spec["headGroupSpec"], *spec["workerGroupSpecs"]]


def test_ray_version_agrees_everywhere():
    ray = _ray_pin()
    assert _base_image() == f"rayproject/ray:{ray}-py311-gpu"  # Ray's official GPU image, Python 3.11
    assert RAY_UP["docker"]["image"] == _base_image()
    assert RAYJOB["spec"]["rayClusterSpec"]["rayVersion"] == ray


def test_both_configs_install_the_project_with_the_gpu_extra():
    assert "gpu" in PYPROJECT["project"]["optional-dependencies"]
    assert re.search(r'^RUN pip install [^\n]*-e "\.\[gpu\]"', DOCKERFILE, re.M)
    assert _forkrl_image() == f"forkrl:{PYPROJECT['project']['version']}"
    assert {c["image"] for pod in _rayjob_pods() for c in pod["template"]["spec"]["containers"]} == {_forkrl_image()}
    # `ray up`: the repo is mounted on every node and installed from its pyproject; nothing else.
    assert RAY_UP["file_mounts"]["~/forkrl"] == "."
    assert RAY_UP["setup_commands"] == ['pip install -e "$HOME/forkrl[gpu]"']


def test_worker_types_carry_the_resources_the_gpu_recipe_pins_to():
    cfg = load_config(ROOT / "recipes" / "gpu_cluster.yaml")
    types = RAY_UP["available_node_types"]
    assert set(cfg.rollout.bundle_resources) <= set(types["rollout_gpu"]["resources"])
    assert set(cfg.learner.bundle_resources) <= set(types["learner_gpu"]["resources"])
    groups = {g["groupName"]: json.loads(json.loads(g["rayStartParams"]["resources"]))
              for g in RAYJOB["spec"]["rayClusterSpec"]["workerGroupSpecs"]}
    assert set(cfg.rollout.bundle_resources) <= set(groups["rollout"])
    assert set(cfg.learner.bundle_resources) <= set(groups["learner"])
    assert RAYJOB["spec"]["entrypoint"].startswith("forkrl train /home/ray/forkrl/recipes/gpu_cluster.yaml")
    assert "WORKDIR /home/ray/forkrl" in DOCKERFILE


def test_ray_up_cluster_starts_every_node_with_token_auth_and_the_token():
    assert RAY_UP["file_mounts"]["~/.ray/auth_token"] == "~/.ray/auth_token"
    starts = RAY_UP["head_start_ray_commands"] + RAY_UP["worker_start_ray_commands"]
    assert all(c.startswith("RAY_AUTH_MODE=token ray start") for c in starts if "ray start" in c)


def test_the_image_copies_every_package_the_project_installs():
    # a package pyproject installs but the Dockerfile does not copy is missing from the image's
    # editable install (the shared `common/` package was nearly left out that way)
    # the folders behind forkrl.<role> (pyproject's package-dir mapping), top-level folders only
    folders = set(PYPROJECT["tool"]["setuptools"]["package-dir"].values())
    packages = [f for f in folders if "/" not in f]
    copied = re.findall(r"^COPY \S+ (\w+) \./\1$", DOCKERFILE, re.M)
    assert sorted(packages) == sorted(p for p in copied if p != "recipes"), (packages, copied)

"""The job config: every recipe and cluster YAML in the repo loads; bad input fails naming the field."""
from pathlib import Path

import pytest
import yaml

from orchestrator.cli import main
from orchestrator.config import ConfigError, JobConfig, dump_config, load_config

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("recipe", sorted((ROOT / "recipes").glob("*.yaml")), ids=lambda p: p.name)
def test_every_recipe_validates(recipe):
    cfg = load_config(recipe)
    assert isinstance(cfg, JobConfig)
    assert load_config(None, []).model_dump() != {} and JobConfig.model_validate(yaml.safe_load(dump_config(cfg))) == cfg


@pytest.mark.parametrize("path", sorted((ROOT / "cluster_configs").glob("*.yaml")), ids=lambda p: p.name)
def test_cluster_configs_parse_and_run_a_recipe(path):
    doc = yaml.safe_load(path.read_text())
    if doc.get("kind") == "RayJob":
        entry = doc["spec"]["entrypoint"].split()
        assert entry[:2] == ["forkrl", "train"] and (ROOT / entry[2]).is_file()
        groups = {g["groupName"] for g in doc["spec"]["rayClusterSpec"]["workerGroupSpecs"]}
        assert {"rollout", "learner"} <= groups
    else:
        types = doc["available_node_types"]
        assert types["rollout_gpu"]["resources"].get("forkrl_rollout")
        assert types["learner_gpu"]["resources"].get("forkrl_learner")


def test_recipe_resources_match_cluster_worker_types():
    cfg = load_config(ROOT / "recipes" / "gpu_cluster.yaml")
    assert "forkrl_rollout" in cfg.rollout.bundle_resources
    assert "forkrl_learner" in cfg.learner.bundle_resources


def test_base_inheritance_overrides_only_what_differs():
    cfg = load_config(ROOT / "recipes" / "kl_cov.yaml")
    base = load_config(ROOT / "recipes" / "grpo.yaml")
    assert cfg.learner.loss.type == "kl_cov" and base.learner.loss.type == "ppo_clip"
    assert cfg.trainer == base.trainer and cfg.rollout == base.rollout


@pytest.mark.parametrize("override, field", [
    (["rollout.samples_per_prompt=1"], "rollout.samples_per_prompt"),
    (["rollout.nope=1"], "rollout.nope"),
    (["learner.lr=fast"], "learner.lr"),
    (["learner.loss.type=bogus"], "learner.loss"),
    (["learner.loss.type=sent"], "ref_model"),
    (["rollout.max_new_tokens=2000", "rollout.max_model_len=1024"], "rollout.max_new_tokens"),
    (["rollout.tensor_parallel_size=2"], "rollout.tensor_parallel_size"),
    (["algorithm.advantage=ppo"], "algorithm.advantage"),
    (["learner.loss.scope=global"], "learner.loss.scope"),
    (["data.type=jsonl"], "data.jsonl.path"),
])
def test_bad_config_names_the_field(override, field):
    with pytest.raises(ConfigError) as e:
        load_config(ROOT / "recipes" / "default.yaml", override)
    assert field in str(e.value)


def test_override_types_and_malformed_override():
    cfg = load_config(ROOT / "recipes" / "default.yaml", ["trainer.steps=3", "learner.loss.eps_high=0.28"])
    assert cfg.trainer.steps == 3 and cfg.learner.loss.eps_high == 0.28
    with pytest.raises(ConfigError, match="key.sub=value"):
        load_config(None, ["trainer.steps"])


def test_missing_and_invalid_yaml(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("trainer: [1, 2\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad)


def test_cli_reports_config_errors_before_starting_anything(capsys):
    assert main(["train", str(ROOT / "recipes" / "default.yaml"), "trainer.steps=0"]) == 2
    err = capsys.readouterr().err
    assert "trainer.steps" in err and "Traceback" not in err

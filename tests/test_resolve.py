"""orchestrator.resolve: every "auto" a run decides is concrete in the resolved config (and in the
config.resolved.yaml written from it), and nothing else changes."""
from pathlib import Path

import pytest
import yaml
from forkrl.orchestrator.config import load_config
from forkrl.orchestrator.resolve import (
    RESOLVED_FILE,
    Host,
    host_facts,
    resolution_lines,
    resolve_connected,
    resolve_job,
    write_resolved,
)

RECIPES = Path(__file__).resolve().parents[1] / "recipes"
LOCAL = Host(joins_cluster=False, node_cpus=2, alive_nodes=1)


def test_a_cpu_job_on_a_private_local_ray_resolves_every_auto():
    cfg = load_config(None)
    job = resolve_job(cfg, LOCAL)
    r = job.config
    assert (r.rollout.dtype, r.learner.dtype) == ("float32", "float32")
    assert (r.learner.weight_sync.backend, r.learner.weight_sync.wire_dtype) == ("gloo", "float32")
    assert r.trainer.layout == "colocated" and (job.layout.rollout_threads, job.layout.learner_threads) == (2, 2)
    assert r.eval.sample_temperature == 1.0  # null: the training temperature
    assert resolution_lines(cfg, r) == [
        "rollout.dtype: auto -> float32",
        "learner.dtype: auto -> float32",
        "learner.weight_sync.backend: auto -> gloo",
        "learner.weight_sync.wire_dtype: auto -> float32",
        "trainer.layout: auto -> colocated",
        "eval.sample_temperature: null -> 1.0",
    ]
    # the rules that are not values stay as they are
    assert (r.learner.zero_bucket_size, r.learner.recompute_old_logprobs) == ("auto", "auto")


def test_the_weight_push_travels_in_the_engines_dtype_unless_set():
    bf16 = resolve_job(load_config(None, ["rollout.dtype=bfloat16"]), LOCAL).config
    assert bf16.learner.weight_sync.wire_dtype == "bfloat16"
    assert bf16.learner.dtype == "float32"  # the learner's own dtype follows its own device
    kept = load_config(None, ["rollout.dtype=bfloat16", "learner.weight_sync.wire_dtype=float32"])
    assert resolve_job(kept, LOCAL).config.learner.weight_sync.wire_dtype == "float32"  # explicit wins


def test_gpu_roles_and_joined_clusters():
    gpu = load_config(RECIPES / "gpu_cluster.yaml")
    r = resolve_job(gpu, Host(joins_cluster=True, node_cpus=64, alive_nodes=3)).config
    assert (r.rollout.dtype, r.learner.dtype, r.learner.weight_sync.wire_dtype) == ("bfloat16",) * 3
    assert r.learner.weight_sync.backend == "nccl" and r.trainer.layout == "split"
    cpu = load_config(None)
    assert resolve_job(cpu, Host(joins_cluster=True, node_cpus=2, alive_nodes=1)).config.trainer.layout == "split"
    assert resolve_job(cpu, Host(joins_cluster=False, node_cpus=2, alive_nodes=2)).config.trainer.layout == "split"
    assert host_facts(cpu, {"RAY_ADDRESS": "10.0.0.1:6379"}, 8, 1).joins_cluster
    assert not host_facts(cpu, {}, 8, 1).joins_cluster


def test_explicit_values_and_everything_else_are_kept():
    cfg = load_config(None, ["eval.sample_temperature=0.7", "trainer.layout=split", "learner.lr=3e-6",
                             "rollout.temperature=0.9"])
    r = resolve_job(cfg, LOCAL).config
    assert (r.eval.sample_temperature, r.trainer.layout, r.learner.lr) == (0.7, "split", 3e-6)
    assert resolution_lines(cfg, r) == [
        "rollout.dtype: auto -> float32", "learner.dtype: auto -> float32",
        "learner.weight_sync.backend: auto -> gloo", "learner.weight_sync.wire_dtype: auto -> float32"]
    assert resolve_job(r, LOCAL).config == r  # resolving a resolved config changes nothing


def test_the_record_is_written_from_the_resolved_config(tmp_path):
    cfg = load_config(RECIPES / "default.yaml")
    path = write_resolved(resolve_job(cfg, LOCAL).config, tmp_path)
    assert path == tmp_path / RESOLVED_FILE
    record = yaml.safe_load(path.read_text())
    assert record["learner"]["weight_sync"]["wire_dtype"] == "float32"
    assert record["trainer"]["layout"] == "colocated"
    assert "auto" not in (record["rollout"]["dtype"], record["learner"]["dtype"])
    assert load_config(path) == resolve_job(cfg, LOCAL).config  # the record is a recipe that runs as-is


@pytest.mark.slow
def test_the_trainers_step_on_a_private_local_ray(tmp_path, caplog):
    import ray

    cfg = load_config(RECIPES / "default.yaml")
    ray.init(address="local", num_cpus=1, include_dashboard=False)
    try:
        with caplog.at_level("INFO", logger="forkrl"):
            job = resolve_connected(cfg, tmp_path)
    finally:
        ray.shutdown()
    assert job.config.trainer.layout == "colocated"  # one alive node, not joined
    assert "resolved trainer.layout: auto -> colocated" in caplog.messages
    assert yaml.safe_load((tmp_path / RESOLVED_FILE).read_text())["trainer"]["layout"] == "colocated"

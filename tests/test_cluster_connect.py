"""Which Ray a job runs on: a configured or submitted cluster is joined without resources; otherwise a
private local Ray starts, whatever Ray's "current cluster" file says."""
import shutil
import tempfile
from pathlib import Path

import pytest

from forkrl.orchestrator.config import load_config
from forkrl.orchestrator.startup import connect_ray, ray_init_args


def _cfg(*overrides: str):
    return load_config(None, ["cluster.dashboard=false", *overrides])


@pytest.mark.parametrize("address", ["auto", "10.0.0.1:6379"])
def test_a_configured_address_is_joined_without_resources(address):
    args = ray_init_args(_cfg(f"cluster.address={address}", "cluster.num_cpus=3"), env={})
    assert args["address"] == address
    assert not {"num_cpus", "num_gpus", "resources", "include_dashboard"} & set(args)


def test_ray_address_from_ray_job_submit_is_joined_and_the_config_wins_over_it():
    assert ray_init_args(_cfg(), env={"RAY_ADDRESS": "10.0.0.2:6379"})["address"] == "10.0.0.2:6379"
    cfg = _cfg("cluster.address=10.0.0.1:6379")
    assert ray_init_args(cfg, env={"RAY_ADDRESS": "10.0.0.2:6379"})["address"] == "10.0.0.1:6379"


def test_without_an_address_a_private_local_ray_is_started_explicitly():
    args = ray_init_args(_cfg("learner.num_ranks=3", "learner.cpus_per_rank=4"), env={})
    assert args["address"] == "local"  # never Ray's implicit "current cluster" lookup
    assert args["num_cpus"] >= 12 + 1 + 2 * 0.25


@pytest.mark.slow
def test_a_stale_current_cluster_file_cannot_redirect_a_local_start(monkeypatch):
    import ray
    from ray._private import services

    # Ray finds its temp dir (and the ray_current_cluster file in it) through RAY_TMPDIR: point it at
    # a directory this test owns (short: Ray's socket paths live under it), never the machine's /tmp/ray.
    tmp = tempfile.mkdtemp(prefix="frst", dir="/tmp")
    stale = "127.0.0.1:1"  # a `ray start` cluster that died without `ray stop`
    try:
        monkeypatch.setenv("RAY_TMPDIR", tmp)
        monkeypatch.delenv("RAY_ADDRESS", raising=False)
        ray_dir = Path(tmp, "ray")
        ray_dir.mkdir()
        (ray_dir / "ray_current_cluster").write_text(stale)
        # Plain ray.init() would follow the file to the dead cluster (and refuse num_cpus there):
        assert services.get_ray_address_from_environment(None, None) == stale
        connect_ray(_cfg("cluster.num_cpus=1"), Path(tmp))
        try:
            assert not ray.get_runtime_context().gcs_address.endswith(":1")  # not the stale cluster
            assert ray.get(ray.remote(lambda: 41 + 1).remote()) == 42
            assert ray.cluster_resources()["CPU"] == 1  # our own resources: a private cluster
        finally:
            ray.shutdown()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

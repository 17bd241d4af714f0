"""Durable outputs: where relative output paths land (never a Ray job's temporary working dir), and a
run mirrored to a non-local filesystem (fsspec's in-memory one, standing in for s3:// / gs://, which
nothing here can reach): checkpoints arrive whole with state.json last, are pruned, and come back."""
import shutil
import uuid
from pathlib import Path

import fsspec
import pytest

from forkrl.orchestrator import checkpoint as ckpt
from forkrl.orchestrator.storage import RAY_JOB_ENV, RunStorage, join, resolve_location


def test_relative_paths_resolve_to_the_cwd_but_to_home_inside_a_ray_job(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert resolve_location("runs", env={}) == str(tmp_path / "runs")
    job_env = {RAY_JOB_ENV: "{}"}  # what `ray job submit` sets; its cwd is a temporary unpacked copy
    assert resolve_location("runs", env=job_env) == str(Path.home() / "forkrl" / "runs")
    assert resolve_location("/abs/runs", env=job_env) == "/abs/runs"
    assert resolve_location("s3://bucket/runs", env=job_env) == "s3://bucket/runs"
    assert join("s3://bucket/runs/", "default") == "s3://bucket/runs/default"


@pytest.mark.parametrize("scheme", ["", "file://"])
def test_local_paths_and_file_uris_are_written_in_place(tmp_path, scheme):
    store = RunStorage(scheme + str(tmp_path / "run"))
    assert not store.remote and store.local == tmp_path / "run"


def _save(store: RunStorage, step: int, keep_last: int = 2) -> Path:
    def write_learner(d: Path) -> None:
        d.mkdir(parents=True)
        (d / "shard_rank0.pt").write_bytes(b"w" * 1000 + bytes([step]))

    path = ckpt.save(store.local / "checkpoints", step, {"step": step}, write_learner, keep_last)
    store.push_checkpoint(path, keep_last)
    return path


def _names(fs, root: str) -> list[str]:
    return sorted(p.rsplit("/", 1)[1] for p in fs.ls(f"{root}/checkpoints", detail=False))


def test_remote_run_uploads_checkpoints_and_logs_and_resume_reads_them_back():
    location = f"memory://bucket-{uuid.uuid4().hex[:8]}/runs/tiny"
    store = RunStorage(location)
    try:
        _check_remote_run(location, store)
    finally:
        shutil.rmtree(store.local, ignore_errors=True)  # the local working copy (same for both stores)


def _check_remote_run(location: str, store: RunStorage) -> None:
    fs, root = fsspec.core.url_to_fs(location)
    assert store.remote and not str(store.local).startswith(root)
    store.local.mkdir(parents=True, exist_ok=True)
    (store.local / "metrics.jsonl").write_text('{"step": 1}\n{"step": 2}\n{"step": 3}\n')
    for step in (1, 2, 3):
        _save(store, step)
    store.push_logs()
    assert _names(fs, root) == ["step_000002", "step_000003"]
    assert fs.cat(f"{root}/checkpoints/step_000003/learner/shard_rank0.pt")[-1] == 3
    assert fs.exists(f"{root}/checkpoints/step_000003/{ckpt.STATE}")
    assert fs.cat(f"{root}/metrics.jsonl").count(b"step") == 3

    # An upload cut off before its state.json is not a checkpoint: resume takes the last complete one.
    fs.pipe(f"{root}/checkpoints/step_000004/learner/shard_rank0.pt", b"partial")
    shutil.rmtree(store.local)  # a new machine: nothing local
    fresh = RunStorage(location)
    assert fresh.pull_for_resume() == "step_000003"
    last = ckpt.latest(fresh.local / "checkpoints")
    assert last.name == "step_000003" and ckpt.load_state(last) == {"step": 3}
    assert (last / "learner" / "shard_rank0.pt").read_bytes()[-1] == 3
    assert (fresh.local / "metrics.jsonl").read_text().count("step") == 3

    # The next save replaces the partial upload and prunes to keep_last.
    _save(fresh, 4)
    assert _names(fs, root) == ["step_000003", "step_000004"]
    assert fs.cat(f"{root}/checkpoints/step_000004/learner/shard_rank0.pt")[-1] == 4

"""orchestrator.checkpoint: atomic publication (state written before the rename), `.tmp` dirs never taken
for checkpoints, pruning to keep_last, RNG round trip. Plain files, no DeepSpeed."""
from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pytest
import torch

from forkrl.orchestrator import checkpoint as ckpt


def _writer(calls: list | None = None):
    def write_learner(d: Path) -> None:
        d.mkdir()
        (d / "model.bin").write_text("weights")
        if calls is not None:
            calls.append(d)

    return write_learner


def test_state_is_written_before_the_atomic_rename(tmp_path, monkeypatch):
    seen = []
    real_rename = Path.rename

    def spy_rename(self, target):
        target = Path(target)
        # at publication the tmp dir is complete and nothing is published under the final name yet
        seen.append((self.name, target.name, json.loads((self / ckpt.STATE).read_text()),
                     (self / "learner" / "model.bin").is_file(), target.exists()))
        return real_rename(self, target)

    monkeypatch.setattr(Path, "rename", spy_rename)
    learner_dirs = []
    out = ckpt.save(tmp_path, 7, {"step": 7, "version": 3}, _writer(learner_dirs))
    assert seen == [("step_000007.tmp", "step_000007", {"step": 7, "version": 3}, True, False)]
    assert learner_dirs == [tmp_path / "step_000007.tmp" / "learner"]  # the learner writes into tmp
    assert out == tmp_path / "step_000007" and ckpt.load_state(out) == {"step": 7, "version": 3}
    assert (out / "learner" / "model.bin").read_text() == "weights"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["step_000007"]


def test_tmp_dirs_are_never_resumed_from(tmp_path):
    assert ckpt.latest(tmp_path) is None
    ckpt.save(tmp_path, 3, {"step": 3}, _writer())
    # a later save that crashed after writing everything but before the rename: complete-looking .tmp
    crashed = tmp_path / "step_000005.tmp"
    (crashed / "learner").mkdir(parents=True)
    (crashed / ckpt.STATE).write_text(json.dumps({"step": 5}))
    (tmp_path / "step_000009").mkdir()  # no state file: not a checkpoint either
    (tmp_path / "step_000011").write_text("a file, not a dir")
    assert ckpt.latest(tmp_path) == tmp_path / "step_000003"
    assert ckpt.load_state(ckpt.latest(tmp_path)) == {"step": 3}


def test_crash_while_writing_leaves_the_previous_checkpoint_and_the_next_save_cleans_up(tmp_path):
    ckpt.save(tmp_path, 1, {"step": 1}, _writer())

    def crash(d: Path) -> None:
        d.mkdir()
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        ckpt.save(tmp_path, 2, {"step": 2}, crash)
    assert (tmp_path / "step_000002.tmp").is_dir() and not (tmp_path / "step_000002").exists()
    assert ckpt.latest(tmp_path) == tmp_path / "step_000001"
    out = ckpt.save(tmp_path, 2, {"step": 2}, _writer())  # the stale tmp of the same step is replaced
    assert out == ckpt.latest(tmp_path) == tmp_path / "step_000002"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["step_000001", "step_000002"]


@pytest.mark.parametrize("keep_last", [1, 2, 3])
def test_pruning_keeps_the_last_n(tmp_path, keep_last):
    for step in (8, 9, 10, 11, 12):  # 9 -> 10 crosses a digit: order is numeric, not by string length
        ckpt.save(tmp_path, step, {"step": step}, _writer(), keep_last=keep_last)
    kept = sorted(p.name for p in tmp_path.iterdir())
    assert kept == [f"step_{s:06d}" for s in (8, 9, 10, 11, 12)[-keep_last:]]
    assert ckpt.load_state(ckpt.latest(tmp_path)) == {"step": 12}


def test_pruning_ignores_tmp_dirs_and_resave_replaces_whole(tmp_path):
    stale = tmp_path / "step_000099.tmp"
    stale.mkdir()
    ckpt.save(tmp_path, 1, {"step": 1}, _writer(), keep_last=1)
    first = ckpt.save(tmp_path, 2, {"step": 2}, _writer(), keep_last=1)
    (first / "leftover").write_text("from the first save")
    again = ckpt.save(tmp_path, 2, {"step": 2, "again": True}, _writer(), keep_last=1)
    assert not (again / "leftover").exists() and ckpt.load_state(again) == {"step": 2, "again": True}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["step_000002", "step_000099.tmp"]
    assert ckpt.latest(tmp_path) == again


def test_rng_state_round_trips_through_json():
    random.seed(1), np.random.seed(2), torch.manual_seed(3)
    state = json.loads(json.dumps(ckpt.capture_rng()))
    want = (random.random(), float(np.random.rand()), float(torch.rand(1)))
    random.seed(10), np.random.seed(20), torch.manual_seed(30)
    ckpt.restore_rng(state)
    assert (random.random(), float(np.random.rand()), float(torch.rand(1))) == want


def test_save_creates_a_nested_root_and_pruning_tolerates_a_vanished_checkpoint(tmp_path, monkeypatch):
    root = tmp_path / "run" / "checkpoints"  # neither exists yet
    ckpt.save(root, 1, {"step": 1}, _writer(), keep_last=1)
    real_rmtree = ckpt.shutil.rmtree

    def removed_meanwhile(path, *args, **kwargs):  # e.g. a second pruner, or a storage sync
        if Path(path).name == "step_000001":
            real_rmtree(path)
        return real_rmtree(path, *args, **kwargs)

    monkeypatch.setattr(ckpt.shutil, "rmtree", removed_meanwhile)
    out = ckpt.save(root, 2, {"step": 2}, _writer(), keep_last=1)
    assert sorted(p.name for p in root.iterdir()) == ["step_000002"] and ckpt.latest(root) == out

"""Optional metric sinks: TensorBoard event files read back with TensorBoard's own reader, and W&B in
offline mode (no network). Each needs its optional package; without it the test is skipped."""
import math

import pytest

from forkrl.orchestrator.metrics import MetricsSink


def test_tensorboard_events_hold_every_logged_scalar(tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    sink = MetricsSink(tmp_path, ray_metrics=False, tensorboard=True)
    for step in (1, 2, 3):
        sink.log(step, {"reward/mean": step / 10, "policy/entropy": 2.0 - step / 10, "train/kl": float("nan")})
    sink.close()
    acc = EventAccumulator(str(tmp_path / "tensorboard"))
    acc.Reload()
    assert set(acc.Tags()["scalars"]) == {"reward/mean", "policy/entropy"}  # NaN is not written
    events = acc.Scalars("reward/mean")
    assert [e.step for e in events] == [1, 2, 3]
    assert all(math.isclose(e.value, e.step / 10, rel_tol=1e-6) for e in events)


def test_wandb_offline_run_writes_locally(tmp_path, monkeypatch):
    pytest.importorskip("wandb")
    monkeypatch.setenv("WANDB_SILENT", "true")
    sink = MetricsSink(tmp_path, ray_metrics=False, wandb_project="forkrl-test", wandb_mode="offline",
                       run="tiny", config={"trainer": {"steps": 2}})
    sink.log(1, {"reward/mean": 0.25})
    sink.close()
    runs = list((tmp_path / "wandb").glob("offline-run-*"))
    assert len(runs) == 1 and list(runs[0].glob("*.wandb"))

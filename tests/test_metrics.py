"""Per-step metrics reach the Ray metrics endpoint (what the dashboard's Grafana reads), the JSONL
log and the PNG plot."""
import socket
import time
import urllib.request

import pytest
import ray

from forkrl.orchestrator.metrics import MetricsSink, plot_run, read_metrics


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_gauges_show_up_on_the_prometheus_endpoint(tmp_path):
    port = _free_port()
    ray.init(address="local", num_cpus=1, include_dashboard=False, _metrics_export_port=port)
    try:
        sink = MetricsSink(tmp_path, run="t")
        sink.log(1, {"policy/entropy": 1.25, "reward/mean": 0.5})
        deadline, text = time.time() + 60, ""
        while time.time() < deadline:
            sink.log(1, {"policy/entropy": 1.25, "reward/mean": 0.5})  # keep the value fresh
            try:
                text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
            except OSError:
                text = ""
            if "forkrl_policy_entropy" in text:
                break
            time.sleep(2)
        line = next(ln for ln in text.splitlines() if ln.startswith("ray_forkrl_policy_entropy"))
        assert 'run="t"' in line and "exported_job" not in line and float(line.rsplit(" ", 1)[1]) == 1.25
    finally:
        ray.shutdown()


def test_jsonl_resume_keeps_last_row_per_step_and_plot(tmp_path):
    sink = MetricsSink(tmp_path, ray_metrics=False)
    sink.log(0, {"eval/accuracy": 0.25})
    for step, r in ((1, 0.1), (2, 0.2), (2, 0.3), (3, float("nan"))):
        sink.log(step, {"reward/mean": r, "policy/entropy": 2.0 - step / 10})
    rows = read_metrics(tmp_path / "metrics.jsonl")
    assert [r["step"] for r in rows] == [0, 1, 2, 3]
    assert rows[2]["reward/mean"] == 0.3 and "reward/mean" not in rows[3]  # NaN is not written
    png = plot_run(tmp_path / "metrics.jsonl", tmp_path / "c.png")
    assert png.stat().st_size > 5000


def test_plot_has_a_role_utilisation_panel_when_the_run_logs_busy_fractions(tmp_path):
    import matplotlib.image

    def width(rows: list[dict], name: str) -> int:
        sink = MetricsSink(tmp_path / name, ray_metrics=False)
        for step, m in enumerate(rows, 1):
            sink.log(step, m)
        return matplotlib.image.imread(plot_run(tmp_path / name / "metrics.jsonl", tmp_path / f"{name}.png")).shape[1]

    plain = [{"reward/mean": 0.1 * s} for s in range(3)]
    busy = [{**m, "role/rollout_busy_frac": 0.9, "role/learner_busy_frac": 0.5, "role/verifier_busy_frac": 0.01}
            for m in plain]
    # one panel per plotted metric plus one for the three roles together (figures are 4.2 in per panel)
    assert width(busy, "busy") == 2 * width(plain, "plain")
    assert plot_run(tmp_path / "busy" / "metrics.jsonl", tmp_path / "b.png") is not None

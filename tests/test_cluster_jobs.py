"""The tiny job through the Ray Jobs SDK, as `ray job submit --working-dir .` sends it, to a head this
test starts with token authentication (what Ray 2.60 turns on once a token exists): the submission is
refused without the token and runs with it, and a relative output_dir lands under ~/forkrl, not in
the job's temporary unpacked working directory (the test removes its run dir there afterwards)."""
import contextlib
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import pytest
import yaml
from forkrl.orchestrator import checkpoint as ckpt
from forkrl.orchestrator.storage import JOB_OUTPUT_ROOT
from tiny_model import tiny_job

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _poll(fn, timeout_s: float, what: str, every_s: float = 0.5):
    """fn() until it returns something truthy without raising; its last error if time runs out."""
    deadline, last = time.monotonic() + timeout_s, None
    while time.monotonic() < deadline:
        try:
            out = fn()
            if out:
                return out
        except Exception as e:  # noqa: BLE001 - not up yet: keep polling
            last = e
        time.sleep(every_s)
    raise TimeoutError(f"{what}: {last!r}")


@pytest.fixture
def ray_head(tiny_model_dir):
    """`ray start --head --block` with a dashboard, token auth and a temp dir of its own (never the
    machine's /tmp/ray); stopped by signalling the process group this fixture started."""
    tmp = Path(tempfile.mkdtemp(prefix="frjb", dir="/tmp"))
    token = secrets.token_hex(16)
    (tmp / "auth_token").write_text(token)
    port, dash = _free_port(), _free_port()
    # this interpreter's scripts dir first: `ray` here and the job's `forkrl` must be this install's,
    # whether or not pip's script dir is on the caller's PATH (a venv, a --user install)
    bin_dir = str(Path(sys.executable).parent)
    env = dict(os.environ, RAY_TMPDIR=str(tmp), RAY_AUTH_MODE="token", RAY_AUTH_TOKEN_PATH=str(tmp / "auth_token"),
               PYTHONPATH=os.pathsep.join([str(ROOT / "tests")]),  # the tiny job's reward function
               PATH=os.pathsep.join([bin_dir, os.environ.get("PATH", "")]))
    env.pop("RAY_ADDRESS", None)
    ray_cli = shutil.which("ray", path=env["PATH"])
    assert ray_cli, f"no `ray` command next to {sys.executable} or on PATH"
    head = subprocess.Popen(
        [ray_cli, "start", "--head", "--block", f"--port={port}", "--num-cpus=4", "--include-dashboard=true",
         "--dashboard-host=127.0.0.1", f"--dashboard-port={dash}", f"--temp-dir={tmp / 'ray'}",
         "--disable-usage-stats"],
        env=env, stdout=subprocess.DEVNULL, stderr=(tmp / "head.log").open("w"), start_new_session=True)
    try:
        yield {"url": f"http://127.0.0.1:{dash}", "token": token, "tmp": tmp}
    finally:
        head.send_signal(signal.SIGTERM)
        try:
            head.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(head.pid, signal.SIGKILL)  # the group this fixture started
            head.wait()
        shutil.rmtree(tmp, ignore_errors=True)


def test_tiny_job_submitted_with_the_jobs_sdk_succeeds_and_keeps_its_outputs(ray_head, tiny_model_dir):
    from ray.job_submission import JobStatus, JobSubmissionClient

    run_name = f"test-jobs-{uuid.uuid4().hex[:8]}"
    run_dir = JOB_OUTPUT_ROOT.expanduser() / "runs" / run_name  # where a Ray job's relative outputs go
    recipe = ray_head["tmp"] / "tiny.yaml"
    recipe.write_text(yaml.safe_dump(tiny_job(
        tiny_model_dir, data={"type": "arithmetic", "num_train": 64, "num_eval": 4},
        checkpoint={"every_steps": 2, "save_hf_at_end": False},
        logging={"output_dir": "runs", "run_name": run_name, "progress": False, "plot": False})))
    auth = {"Authorization": f"Bearer {ray_head['token']}"}
    client = _poll(lambda: JobSubmissionClient(ray_head["url"], headers=auth), 120, "dashboard up")
    with pytest.raises(Exception, match="(?i)unauthori|forbidden|401|403|token"):
        JobSubmissionClient(ray_head["url"], headers={"Authorization": "Bearer wrong"}).list_jobs()

    submit = dict(entrypoint=f"forkrl train {recipe}",
                  runtime_env={"working_dir": str(ROOT),
                               "excludes": [".git", "runs", ".cache", ".pytest_cache", "*.whl", ".coverage*"]})
    # The head's job agent comes up after the dashboard ("No available agent to submit job"), which
    # took more than 120 s on a loaded 2-core machine: a bound for a wait, not a timing check.
    job = _poll(lambda: client.submit_job(**submit), 300, "job accepted", every_s=1)
    terminal = {JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.STOPPED}
    try:
        status = _poll(lambda: (s := client.get_job_status(job)) in terminal and s, 600, "job finished", every_s=1)
        logs = client.get_job_logs(job)
        assert status == JobStatus.SUCCEEDED, logs[-4000:]
        assert f"forkrl: outputs go to {run_dir}\n" in logs
        assert ckpt.latest(run_dir / "checkpoints").name == "step_000002"
        assert len((run_dir / "metrics.jsonl").read_text().splitlines()) == 2
        assert not list((ray_head["tmp"] / "ray").glob(f"session_*/runtime_resources/**/{run_name}"))
    finally:
        shutil.rmtree(run_dir, ignore_errors=True)
        for parent in (run_dir.parent, run_dir.parent.parent):  # ~/forkrl/runs, ~/forkrl if now empty
            with contextlib.suppress(OSError):
                parent.rmdir()

"""Nothing outlives a run: not when the verifier is killed mid-run, not a fallback work dir (the sweeper
removes those of dead owners), not a zombie. Every process check looks for this test's own marker."""

import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import pytest

from forkrl.rewards.sandbox import Limits, bwrap_problem, run_python, sweep_stale_dirs
from forkrl.rewards.sandbox_fallback import _remove_tree

ROOT = Path(__file__).resolve().parents[1]


def _processes_with(mark: str) -> list[int]:
    """Live `sh` processes carrying `mark` (the owner's own python command line carries it too)."""
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            alive = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
            if alive and cmdline.startswith(b"sh\0") and mark.encode() in cmdline:
                found.append(int(pid))
        except OSError:
            pass
    return found


def _until(cond, timeout=15.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(0.05)
    return False


def _owner(isolation: str, mark: str, tmpdir: str | None = None) -> subprocess.Popen:
    """A verifier stand-in whose sandboxed program parks a marked process, then waits to be killed."""
    prog = f"import os\nos.execv('/bin/sh', ['sh', '-c', 'sleep 60; : {mark}'])"
    code = f"from forkrl.rewards.sandbox import *\nrun_python({prog!r}, '', Limits(wall_s=60, isolation={isolation!r}))"
    env = dict(os.environ)
    if tmpdir:
        env["TMPDIR"] = tmpdir
    return subprocess.Popen([sys.executable, "-c", code], env=env)


@pytest.mark.skipif(bool(bwrap_problem()), reason="bubblewrap unavailable")
def test_killed_verifier_takes_its_sandbox_along():
    mark = f"owner{uuid.uuid4().hex}"
    owner = _owner("bwrap", mark)
    try:
        assert _until(lambda: _processes_with(mark)), "the sandboxed program never started"
    finally:
        owner.send_signal(signal.SIGKILL)
        owner.wait()
    assert _until(lambda: not _processes_with(mark), 10)


def test_sweeper_removes_dirs_of_a_killed_fallback_owner():
    tmpdir = tempfile.mkdtemp(prefix="forkrl-sweeptest-")
    try:
        os.chmod(tmpdir, 0o711)  # the run's private uid must reach its work dir
        mark = f"owner{uuid.uuid4().hex}"
        owner = _owner("fallback", mark, tmpdir)
        try:
            assert _until(lambda: _processes_with(mark)), "the sandboxed program never started"
            mine = [n for n in os.listdir(tmpdir) if n.startswith(f"forkrl-sbx-{owner.pid}-")]
            assert len(mine) == 1
            assert sweep_stale_dirs(tmpdir) == 0  # its owner is alive: left alone
        finally:
            owner.send_signal(signal.SIGKILL)
            owner.wait()
        for pid in _processes_with(mark):  # the fallback's runner dies with its owner, its children need not
            os.kill(pid, signal.SIGKILL)
        assert sweep_stale_dirs(tmpdir) == 1
        assert os.listdir(tmpdir) == []
    finally:
        _remove_tree(Path(tmpdir))


def test_remove_tree_takes_very_deep_trees_and_never_raises(tmp_path):
    top = tmp_path / "deep"
    top.mkdir()
    build = "import os\nfor _ in range(3000):\n    os.mkdir('d'); os.chdir('d')\nopen('f', 'w').close(); os.chmod('.', 0)"
    subprocess.run([sys.executable, "-c", build], cwd=top, check=True)  # deeper than PATH_MAX, last dir 000
    _remove_tree(top)
    assert not top.exists()
    _remove_tree(tmp_path / "never-existed")


@pytest.mark.parametrize("isolation", ["bwrap", "fallback"])
def test_no_zombies_after_a_fork_bomb(isolation):
    if isolation == "bwrap" and bwrap_problem():
        pytest.skip("bubblewrap unavailable")
    src = "import os, time\nfor _ in range(100):\n    try: os.fork()\n    except OSError: pass\ntime.sleep(30)"
    r = run_python(src, "", Limits(wall_s=1.5, max_processes=8, isolation=isolation))
    assert r.status == "timeout" and r.isolation == isolation
    children = set()
    for tid in os.listdir("/proc/self/task"):
        children |= set(Path(f"/proc/self/task/{tid}/children").read_text().split())
    zombies = [c for c in children if Path(f"/proc/{c}/stat").exists()
               and Path(f"/proc/{c}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"]
    assert zombies == []

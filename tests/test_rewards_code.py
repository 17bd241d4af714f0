"""The code sandbox and verifier: limits hold, the host is untouched, HumanEval canonical solutions pass."""

import os
import random
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import pytest

from forkrl.rewards.code_verifier import score_code
from forkrl.rewards.config import CodeRewardConfig
from forkrl.rewards.datasets import humaneval_answer, load_humaneval
from forkrl.rewards.sandbox import Limits, run_python
from forkrl.rewards.types import Sample

L = Limits(wall_s=3, cpu_s=2, memory_bytes=512 << 20, max_processes=8, max_output_bytes=64 << 10)
CFG = CodeRewardConfig(cpu_s=2, memory_mb=512)


def test_plain_run_and_stdin():
    r = run_python("print(input()[::-1])", "abc\n", L)
    assert (r.status, r.stdout) == ("ok", "cba\n")


def test_network_is_unreachable_inside_but_reachable_outside():
    """Our own listener on the loopback: the same code connects from outside, and gets an OSError (not an
    ImportError) inside, where the loopback is the sandbox's own."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        src = ("import socket\nprint('imported')\ntry:\n"
               f"    socket.create_connection(('127.0.0.1', {server.getsockname()[1]}), timeout=2).close()\n"
               "    print('connected')\nexcept OSError as e:\n    print('oserror', type(e).__name__, e.errno)\n")
        outside = subprocess.run([sys.executable, "-c", src], capture_output=True, text=True, timeout=30)
        assert outside.stdout.splitlines() == ["imported", "connected"]
        r = run_python(src, "", L)
    assert r.status == "ok", r.stderr
    lines = r.stdout.splitlines()
    assert lines[0] == "imported" and lines[1].startswith("oserror ") and "connected" not in r.stdout
    assert r.net_isolation in ("netns", "audit_hook")


def test_infinite_loop_hits_cpu_limit():
    r = run_python("while True: pass", "", Limits(wall_s=10, cpu_s=1))
    assert r.status == "cpu_limit" and r.wall_s < 10


def test_sleep_hits_wall_clock():
    t0 = time.monotonic()
    r = run_python("import time; time.sleep(60)", "", Limits(wall_s=1))
    assert r.status == "timeout" and time.monotonic() - t0 < 3


def test_memory_limit():
    assert run_python("x = bytearray(1 << 31)", "", L).status == "memory_limit"


def test_output_cap():
    r = run_python("while True: print('y' * 1000)", "", L)
    assert r.status == "output_limit" and len(r.stdout) <= 64 << 10


def test_fork_bomb_is_capped_and_cleaned_up():
    """Every process the bomb makes carries this test's own marker in its argv (sh -c '...; : MARK'), so
    the check counts only what this run started, whatever else runs on the host."""
    mark = f"forkbomb{uuid.uuid4().hex}"
    src = ("import os, time\nfor _ in range(200):\n    try:\n        if os.fork() == 0:\n"
           f"            os.execv('/bin/sh', ['sh', '-c', 'sleep 30; : {mark}'])\n"
           "    except OSError:\n        pass\ntime.sleep(30)")
    r = run_python(src, "", Limits(wall_s=2, max_processes=8))
    assert r.status == "timeout"
    assert _processes_with(mark) == []


def _processes_with(mark: str) -> list[int]:
    """Live (non-zombie) processes whose command line contains `mark`."""
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            if mark.encode() in Path(f"/proc/{pid}/cmdline").read_bytes() and not _zombie(pid):
                found.append(int(pid))
        except OSError:
            pass
    return found


def _zombie(pid):
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] == "Z"
    except OSError:
        return True


def test_host_files_untouched_and_workdir_thrown_away(tmp_path):
    target = tmp_path / "victim.txt"
    target.write_text("keep")
    mark = f"scratch{uuid.uuid4().hex}"
    src = (f"import os\nopen({mark!r}, 'w').write('x')\nprint(os.getcwd())\ntry:\n"
           f"    open({str(target)!r}, 'w').write('pwned')\nexcept OSError as e:\n    print('denied')")
    r = run_python(src, "", L)
    assert target.read_text() == "keep"
    assert r.status == "ok" and "denied" in r.stdout
    if r.isolation == "bwrap":  # the work dir was a tmpfs of the sandbox's own
        assert not any(mark in name for name in os.listdir(tempfile.gettempdir()))
    else:
        assert not Path(r.stdout.splitlines()[0]).exists()


def _he(problem, response):
    return Sample(problem["task_id"], problem["prompt"], response, humaneval_answer(problem), "code")


def test_humaneval_ships_164_problems():
    assert len(load_humaneval()) == 164


def test_humaneval_sample_canonical_passes_empty_fails():
    probs = random.Random(0).sample(load_humaneval(), 10)
    for p in probs:
        s = score_code(_he(p, p["canonical_solution"]), CFG, 10)
        assert s.reward == 1.0 and s.reason.startswith("ok"), (p["task_id"], s)
    for p in load_humaneval()[:3]:  # (a few problems, e.g. /12, assert f([]) is None: partial credit)
        s = score_code(_he(p, "    pass\n"), CFG, 10)  # the prompt's bare def returns None
        assert s.reward == 0.0 and not s.correct


@pytest.mark.slow
def test_humaneval_all_canonical_pass():
    bad = [p["task_id"] for p in load_humaneval() if score_code(_he(p, p["canonical_solution"]), CFG, 10).reward != 1.0]
    assert bad == []


def test_partial_credit_and_fenced_code():
    p = load_humaneval()[0]  # has_close_elements: 7 asserts, 4 expect True
    s = score_code(_he(p, "Sure:\n```python\ndef has_close_elements(numbers, threshold):\n    return True\n```"), CFG, 10)
    assert s.reward == pytest.approx(4 / 7) and s.reason == "tests_failed"


@pytest.mark.parametrize("hack", [
    "    import os; os._exit(0)\n",                      # exit "successfully" before any test
    "    import sys; sys.exit(0)\n",
    "    print('0 pass'); print('done'); return None\n",  # forge result lines without the nonce
    "    while True: pass\n",
])
def test_reward_hacks_score_zero(hack):
    s = score_code(_he(load_humaneval()[0], hack), CFG, 4)
    assert s.reward == 0.0


def test_stdin_stdout_cases():
    ans = {"inputs": ["1 2\n", "5 7\n", "0 0\n"], "outputs": ["3\n", "12", "1\n"]}
    s = score_code(Sample("s", "", "a, b = map(int, input().split())\nprint(a + b)", ans, "code"), CFG, 10)
    assert s.reward == pytest.approx(2 / 3) and s.reason == "tests_failed"


def test_assert_list_cases():
    ans = {"tests": ["assert f(1) == 2", "assert f(2) == 3", "assert f(0) == 0"]}
    s = score_code(Sample("s", "", "def f(x):\n    return x + 1", ans, "code"), CFG, 10)
    assert s.reward == pytest.approx(2 / 3)

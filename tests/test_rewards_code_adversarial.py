"""Reward hacks against the code verifier: every cheat scores 0, every correct answer scores 1, and no run
leaves a file or a process on the host.

Each case is a response to our own small HumanEval-shaped problem (or to a HumanEval one where the
cheat is about the shipped data). Cheats that write files or start processes tag them with a marker
unique to the test (`MARK`), so the host checks look only at what this test started, never at all the
processes of some uid (other sandboxes may be running on the machine).
"""

import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import pytest

import forkrl.rewards.code_verifier as cv
from forkrl.rewards.code_verifier import score_code
from forkrl.rewards.config import CodeRewardConfig
from forkrl.rewards.datasets import humaneval_answer, load_humaneval
from forkrl.rewards.sandbox import RunResult, bwrap_problem
from forkrl.rewards.types import Sample

PROBLEM = {
    "prompt": 'def pair_sums(xs: list) -> list:\n    """Sums of adjacent items: [1, 2, 3] -> [3, 5]."""\n',
    "entry_point": "pair_sums",
    "test": (
        "METADATA = {}\n\n\ndef check(candidate):\n"
        "    assert candidate([10, 20, 30]) == [30, 50]\n"
        "    assert candidate([]) == []\n"
        "    assert candidate([5, -5, 10, 7]) == [0, 5, 17]\n"
        "    assert candidate([0.5, 0.25]) == [0.75]\n"
        "    assert candidate(xs=[4, 4]) == [8]\n"
        "    for x in range(3):\n"  # a loop: judged inside the sandbox, counted as unparsed
        "        assert candidate([x, x, x]) == [2 * x, 2 * x]\n"
    ),
}
BODY = "    return [a + b for a, b in zip(xs, xs[1:])]\n"
CORRECT = PROBLEM["prompt"] + BODY
N_CASES = 6

# Building blocks of the cheats: a wrong answer, the result fd as the program sees it.
WRONG = "def pair_sums(xs):\n    return None\n"
ALWAYS_EQ = "class Eq:\n    def __eq__(self, o): return True\n    def __ne__(self, o): return False\n    __hash__ = None\n"
FD = "int(__import__('os').environ.get('FORKRL_RESULT_FD', '1'))"
# What a cheater can write without knowing the answers: a verdict for every case, and the end.
FORGED = "".join(f"('pass', {i})\\n" for i in range(N_CASES)) + "('done',)\\n"
# Find the test's own text in memory (the old harness kept it in its globals and case list) and read
# the expected value for these inputs off it.
HUNT = r"""
import ast, gc, sys
def _texts():
    out = []
    if 'GC' == 'GC':
        for o in gc.get_objects():
            if type(o) in (list, tuple, dict):
                out += [v for v in (o.values() if type(o) is dict else o) if type(v) is str and 'candidate(' in v]
    f = sys._getframe()
    while f is not None:
        out += [repr(v) for v in list(f.f_locals.values()) + list(f.f_globals.values())]
        f = f.f_back
    return out
def pair_sums(xs):
    for t in _texts():
        for line in t.replace('\\n', '\n').splitlines():
            if 'candidate(' + repr(xs) + ')' in line and '==' in line:
                try:
                    return ast.literal_eval(line.split('==', 1)[1].strip().split("'")[0].strip())
                except Exception:
                    pass
    return None
"""
READ_TESTS = r"""
import ast
def pair_sums(xs):
    try:
        src = open('TESTFILE').read()
    except OSError:
        return None
    for line in src.split('\\n'):
        if 'candidate(' + repr(xs) + ')' in line and '==' in line:
            return ast.literal_eval(line.split('==', 1)[1].strip())
    return None
"""

CHEATS = {
    # forging verdicts
    "print_pass_lines": WRONG + "print('0 pass'); print('done'); print(\"('done',)\")\n",
    "forge_records_on_result_fd": WRONG + f"import os\nos.write({FD}, b\"{FORGED}\")\nos._exit(0)\n",
    "forge_records_every_fd": WRONG + f"import os\nfor fd in range(64):\n    try: os.write(fd, b\"{FORGED}\")\n    except OSError: pass\n",
    "forge_pass_for_parsed_case": WRONG + f"import os\nos.write({FD}, b\"('pass', 0)\\n\")\n",
    "close_result_fd": WRONG + f"import os\nos.close({FD})\n",
    "dup_devnull_over_result_fd": WRONG + f"import os\nos.dup2(os.open('/dev/null', os.O_WRONLY), {FD})\n",
    # exiting early
    "os_exit_at_import": "import os\nos._exit(0)\n",
    "sys_exit_at_import": "import sys\nsys.exit(0)\n",
    "os_exit_in_function": "def pair_sums(xs):\n    import os; os._exit(0)\n",
    "sys_exit_in_function": "def pair_sums(xs):\n    raise SystemExit(0)\n",
    # values that lie about equality
    "always_eq_object": ALWAYS_EQ + "def pair_sums(xs):\n    return Eq()\n",
    "list_subclass_always_eq": "class L(list):\n    def __eq__(self, o): return True\ndef pair_sums(xs):\n    return L()\n",
    "int_subclass_items": ("class I(int):\n    def __eq__(self, o): return True\n    __hash__ = int.__hash__\n"
                           "def pair_sums(xs):\n    return [I(0)] * max(len(xs) - 1, 1)\n"),
    "str_subclass": "class S(str):\n    def __eq__(self, o): return True\ndef pair_sums(xs):\n    return S('x')\n",
    "systemexit_in_eq": "class E:\n    def __eq__(self, o): raise SystemExit(0)\ndef pair_sums(xs):\n    return E()\n",
    "hash_override_in_set": ("class H:\n    def __hash__(self): return 0\n    def __eq__(self, o): return True\n"
                             "def pair_sums(xs):\n    return {H()}\n"),
    "nan_return": "def pair_sums(xs):\n    return [float('nan')] * max(len(xs) - 1, 1)\n",
    "inf_return": "def pair_sums(xs):\n    return [float('inf')] * max(len(xs) - 1, 1)\n",
    "huge_return": "def pair_sums(xs):\n    return [10 ** 50000] * 200\n",
    "generator_return": "def pair_sums(xs):\n    return (a + b for a, b in zip(xs, xs[1:]) if False)\n",
    # patching what the harness uses, after it loaded the solution
    "patch_builtins_after_load": WRONG + (
        "import builtins\nbuiltins.type = lambda *a: list\nbuiltins.isinstance = lambda *a: True\n"
        "builtins.repr = lambda o: \"('done',)\"\nbuiltins.print = lambda *a, **k: None\n"
        "builtins.len = lambda o: 0\nbuiltins.exec = lambda *a, **k: None\nbuiltins.abs = lambda x: 0\n"),
    "patch_os_write_and_exit": WRONG + (
        "import os, sys\n_w = os.write\nos.write = lambda fd, b: _w(fd, b.replace(b'raised', b'pass').replace(b'fail', b'pass'))\n"
        "sys.exit = lambda *a: os._exit(0)\n"),
    "patch_json_and_import": WRONG + (
        "import json, builtins\njson.dumps = lambda *a, **k: '\"pass\"'\n_imp = builtins.__import__\n"
        "builtins.__import__ = lambda n, *a, **k: _imp('json') if n == 'os' else _imp(n, *a, **k)\n"),
    "patch_int_format_via_gc": WRONG + (
        "import gc\nfor f in gc.get_objects():\n    if callable(f) and getattr(f, '__name__', '') in ('enc', 'put', 'clean'):\n"
        "        try: f.__code__ = (lambda *a, **k: ('list', [])).__code__\n        except Exception: pass\n"),
    "rewrite_harness_defaults": WRONG + (
        "import gc\nfor f in gc.get_objects():\n    if getattr(f, '__name__', '') == '_encode' and hasattr(f, '__defaults__'):\n"
        "        f.__defaults__ = (lambda v: list,) + f.__defaults__[1:]\n"),
    "weird_exception_name_at_import": (
        "class S(str):\n    def __repr__(self): return \"'x')\\n('value', 0, ('list', []))\\n('done',\"\n"
        "class M(type):\n    @property\n    def __name__(cls): return S('X')\n"
        "class Boom(Exception, metaclass=M):\n    pass\nraise Boom()\n"),
    # hunting for the answers or a nonce
    "hunt_frames_for_expected": HUNT.replace("'GC' == 'GC'", "False"),
    "hunt_gc_and_frames_for_expected": HUNT,
    "inspect_harness_source": ("import inspect, sys, ast\ndef pair_sums(xs):\n    src = ''\n    f = sys._getframe(1)\n"
                               "    try: src = inspect.getsource(f)\n    except Exception: pass\n"
                               "    for line in src.splitlines():\n        if repr(xs) in line and '==' in line:\n"
                               "            return ast.literal_eval(line.split('==')[1].strip())\n    return None\n"),
    "read_proc_self_fd_back": WRONG + (
        "import os\nfor fd in os.listdir('/proc/self/fd'):\n    try:\n"
        "        data = open('/proc/self/fd/' + fd, 'rb').read()\n        os.write(1, data); os.write(int(fd), data)\n"
        "    except Exception: pass\n"),
    "read_proc_parent": WRONG + (
        "import os\nfor p in (os.getppid(), 1):\n    for what in ('cmdline', 'environ', 'fd/1', 'fd/3'):\n"
        "        try: print(open(f'/proc/{p}/{what}', 'rb').read()[:200])\n        except Exception as e: print(e)\n"),
    "read_sandbox_program_file": WRONG + (
        "import glob\nfor p in glob.glob('/sbx/*') + glob.glob('/tmp/forkrl-sbx-*/private/*'):\n"
        "    try: print(open(p).read()[:100])\n    except Exception as e: print(e)\n"),
    # processes
    "fork_at_import": "import os\nos.fork()\n" + WRONG,
    "fork_at_import_and_forge": f"import os\nfor _ in range(3):\n    os.fork()\nos.write({FD}, b\"{FORGED}\")\n" + WRONG,
    "fork_parent_exits_child_reports": "import os\nif os.fork():\n    os._exit(0)\n" + WRONG,
    "fork_bomb": ("import os\nwhile True:\n    try:\n        if os.fork() == 0:\n"
                  "            os.execv('/bin/sh', ['sh', '-c', 'sleep 60; : MARK'])\n    except OSError:\n        break\n"
                  + WRONG),
    "thread_exits_process": WRONG + "import os, threading, time\nthreading.Thread(target=lambda: (time.sleep(0.05), os._exit(0)), daemon=True).start()\n",
    "thread_forges_late": WRONG + (
        f"import os, threading, time\ndef late():\n    time.sleep(0.2)\n    os.write({FD}, b\"{FORGED}\")\n"
        "threading.Thread(target=late).start()\n"),
    "signal_handler_alarm": WRONG + (
        f"import os, signal\nsignal.signal(signal.SIGALRM, lambda *a: (os.write({FD}, b\"{FORGED}\"), os._exit(0)))\n"
        "signal.setitimer(signal.ITIMER_REAL, 0.01)\n"),
    "atexit_handler": WRONG + f"import atexit, os\natexit.register(lambda: os.write({FD}, b\"('pass', 5)\\n('done',)\\n\"))\n",
    "sleep_forever": "import time\ntime.sleep(60)\n",
    # the host file system
    "write_host_tmp_dirs": WRONG + (
        "for d in ('/tmp', '/dev/shm', '/var/tmp', '/run', '/root', '/work'):\n"
        "    try: open(d + '/MARK', 'w').write('x')\n    except OSError: pass\n"),
    "delete_victim": WRONG + "import os, shutil\ntry: os.remove('VICTIM')\nexcept OSError: pass\nshutil.rmtree('VICTIMDIR', ignore_errors=True)\n",
    "read_test_file": READ_TESTS,
    "network_exfiltration": WRONG + (
        "import socket\ntry: socket.create_connection(('127.0.0.1', 22), timeout=1)\nexcept OSError: pass\n"),
}

CORRECT_ANSWERS = {
    "plain": BODY,
    "restated_in_fence": "Here:\n```python\n" + CORRECT + "```\n",
    "prints_junk": "    print(\"('raised', 0)\\nfail\")\n" + BODY,
    "forks_child_that_exits": "import os\nif os.fork() == 0:\n    os._exit(0)\nos.wait()\n" + CORRECT,
    "forks_at_import_both_live": "import os\nos.fork()\n" + CORRECT,
    "deep_directory_tree": ("import os\nfor _ in range(3000):\n    os.mkdir('d')\n    os.chdir('d')\n"
                            "open('MARK', 'w').write('x')\n" + CORRECT),
    "writes_private_tmp": "open('/tmp/MARK', 'w').write('[1]')\nassert open('/tmp/MARK').read() == '[1]'\n" + CORRECT,
    "thread_that_finishes": "import threading\nt = threading.Thread(target=sum, args=([1],))\nt.start(); t.join()\n" + CORRECT,
}

CFG = CodeRewardConfig(cpu_s=2, memory_mb=512, max_processes=8, max_output_bytes=256 << 10)
ISOLATIONS = ["bwrap", "fallback"]
# The fallback lets programs read world-readable host files (documented in rewards.sandbox): these
# cheats are expected to beat it, and are run under bubblewrap only.
BWRAP_ONLY = {"read_test_file"}


def _skip_without_bwrap(isolation: str) -> None:
    if isolation == "bwrap" and bwrap_problem():
        pytest.skip(f"bubblewrap unavailable here: {bwrap_problem()}")


@pytest.fixture
def host(tmp_path):
    """A unique marker, a victim file in a host dir of our own, and cleanup of anything tagged with it."""
    mark = f"forkrl{uuid.uuid4().hex[:16]}"
    victim_dir = tmp_path / "victims"
    victim_dir.mkdir()
    (victim_dir / "victim.txt").write_text("keep")
    yield mark, victim_dir
    for d in _host_dirs():
        for name in _names_with(d, mark):
            os.system(f"rm -rf -- '{d}/{name}'")


def _host_dirs() -> list[str]:
    return [d for d in (tempfile.gettempdir(), "/tmp", "/dev/shm", "/var/tmp", "/run", "/root", "/work") if os.path.isdir(d)]


def _names_with(d: str, mark: str) -> list[str]:
    try:
        return [n for n in os.listdir(d) if mark in n]
    except OSError:
        return []


def _processes_with(mark: str, wait_s: float = 5.0) -> list[int]:
    """Live processes whose command line holds `mark`, polled until there are none or `wait_s` passed:
    a process SIGKILLed as its run ended may take a moment to exit on a loaded host, while one that
    escaped the kill (the cheats' children sleep 60 s) is still there."""
    deadline = time.monotonic() + wait_s
    while (found := _live_with(mark)) and time.monotonic() < deadline:
        time.sleep(0.05)
    return found


def _live_with(mark: str) -> list[int]:
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            alive = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
            if alive and mark.encode() in Path(f"/proc/{pid}/cmdline").read_bytes():
                found.append(int(pid))
        except OSError:
            pass
    return found


def _score(response: str, isolation: str, answer: dict | None = None, wall_s: float = 5.0):
    cfg = CFG.model_copy(update={"isolation": isolation})
    return score_code(Sample("s", PROBLEM["prompt"], response, answer or dict(PROBLEM), "code"), cfg, wall_s)


def _fill(src: str, mark: str, victim_dir: Path) -> str:
    return (src.replace("MARK", mark).replace("VICTIMDIR", str(victim_dir)).replace("VICTIM", str(victim_dir / "victim.txt"))
            .replace("TESTFILE", __file__))


@pytest.mark.parametrize("isolation", ISOLATIONS)
@pytest.mark.parametrize("name", sorted(CHEATS))
def test_cheat_scores_zero(name, isolation, host):
    _skip_without_bwrap(isolation)
    if isolation == "fallback" and name in BWRAP_ONLY:
        pytest.skip("the fallback does not hide host files")
    mark, victim_dir = host
    s = _score(_fill(CHEATS[name], mark, victim_dir), isolation, wall_s=3.0 if name == "sleep_forever" else 5.0)
    assert (s.reward, s.correct) == (0.0, False), s
    assert _processes_with(mark) == []
    if isolation == "bwrap":  # the fallback does not claim to protect the host's world-writable dirs
        assert (victim_dir / "victim.txt").read_text() == "keep"
        assert [n for d in _host_dirs() for n in _names_with(d, mark)] == []


@pytest.mark.parametrize("isolation", ISOLATIONS)
@pytest.mark.parametrize("name", sorted(CORRECT_ANSWERS))
def test_correct_answer_scores_one(name, isolation, host):
    _skip_without_bwrap(isolation)
    mark, victim_dir = host
    s = _score(_fill(CORRECT_ANSWERS[name], mark, victim_dir), isolation, wall_s=20.0)
    assert (s.reward, s.correct, s.reason) == (1.0, True, "ok (1 unparsed)"), s
    assert _processes_with(mark) == []
    if isolation == "bwrap":
        assert [n for d in _host_dirs() for n in _names_with(d, mark)] == []
    assert not [n for n in os.listdir(tempfile.gettempdir()) if n.startswith(f"forkrl-sbx-{os.getpid()}-")]


@pytest.mark.parametrize("isolation", ISOLATIONS)
def test_partial_answer_with_forks_is_not_multiplied(isolation):
    """Half right, and forked at import three times (the old harness counted each pass line 8 times):
    the copies stay silent, the credit is exactly the fraction of cases passed."""
    _skip_without_bwrap(isolation)
    half = ("import os\nfor _ in range(3):\n    os.fork()\n"
            "def pair_sums(xs):\n    return [] if len(xs) > 2 else [a + b for a, b in zip(xs, xs[1:])]\n")
    s = _score(half, isolation)
    assert s.reward == pytest.approx(3 / N_CASES) and s.reason == "tests_failed (1 unparsed)"


def test_partial_credit_is_a_fraction_of_cases():
    half = "def pair_sums(xs):\n    return [] if len(xs) > 2 else [a + b for a, b in zip(xs, xs[1:])]\n"
    s = _score(half, "auto")
    assert s.reward == pytest.approx(3 / N_CASES) and s.reason == "tests_failed (1 unparsed)"


@pytest.mark.skipif(bool(bwrap_problem()), reason="bubblewrap unavailable")
def test_shipped_gold_data_is_invisible_inside():
    """A HumanEval problem answered by reading the canonical solution out of rewards/data."""
    p = load_humaneval()[0]
    data = Path(__file__).resolve().parents[1] / "rewards" / "data" / "HumanEval.jsonl.gz"
    site = Path(os.__file__).parent / "site-packages" / "rewards" / "data" / "HumanEval.jsonl.gz"
    steal = (
        "import gzip, json\n_src = None\n"
        f"for path in ({str(data)!r}, {str(site)!r}):\n"
        "    try:\n        _rows = [json.loads(l) for l in gzip.open(path, 'rt')]\n"
        f"        _src = next(r for r in _rows if r['entry_point'] == {p['entry_point']!r})\n        break\n"
        "    except Exception:\n        pass\n"
        "exec(_src['prompt'] + _src['canonical_solution'])\n"
    )
    for site_packages in (False, True):
        cfg = CFG.model_copy(update={"isolation": "bwrap", "site_packages": site_packages})
        s = score_code(Sample("s", p["prompt"], steal, humaneval_answer(p), "code"), cfg, 10)
        assert s.reward == 0.0, (site_packages, s)


def _unsandboxed(source: str, stdin: str, limits, channel: bool = False, private_input: bytes = b"") -> RunResult:
    """The program run by a plain interpreter of our own uid, no isolation at all, the result fd a pipe,
    the private input a memfd."""
    r, w = os.pipe()
    inp = os.memfd_create("input", 0)
    os.write(inp, private_input)
    os.lseek(inp, 0, os.SEEK_SET)
    try:
        proc = subprocess.run([sys.executable, "-I", "-S", "-c", source],
                              env={**os.environ, "FORKRL_RESULT_FD": str(w), "FORKRL_INPUT_FD": str(inp)},
                              pass_fds=[w, inp], capture_output=True, timeout=60)
    finally:
        os.close(w)
        os.close(inp)
    with os.fdopen(r, "rb") as f:
        chan = f.read()
    status = "ok" if proc.returncode == 0 else f"exit:{proc.returncode}"
    return RunResult(status, proc.returncode, proc.stdout.decode(), proc.stderr.decode(), 0.0, "none", "none", chan)


def test_a_cheat_that_reads_the_tests_works_where_files_are_visible(tmp_path, monkeypatch):
    """The read_test_file cheat is real: run where the test file is readable (no sandbox; a copy of this
    module in a directory of the test's own, whatever the checkout's permissions), it scores the 4 cases
    whose expected values are literals; so bwrap's 0 above is not vacuous."""
    tests = tmp_path / "tests.py"
    tests.write_text(Path(__file__).read_text())
    monkeypatch.setattr(cv, "run_python", _unsandboxed)
    s = _score(READ_TESTS.replace("TESTFILE", str(tests)), "auto")
    assert (s.reward, s.reason) == (pytest.approx(4 / N_CASES), "tests_failed (1 unparsed)")


def _recs(*lines: str) -> bytes:
    return "".join(line + "\n" for line in lines).encode()


V = "('list', [('int', '1e'), ('int', '32')])"  # [30, 50]: case 0's right answer


@pytest.mark.parametrize("raw, outcome", [
    (_recs(f"('value', 0, {V})", "('raised', 1)", "('done',)"), (1, True, None)),
    (_recs(f"('value', 0, {V})") + b"('value', 1, ('li", (1, False, None)),  # cut short: ignored
    (_recs("('load_error', 'NameError')"), (0, False, "NameError")),
    (_recs(f"('value', 0, {V})", f"('value', 0, {V})"), "violation"),  # twice
    (_recs(f"('value', 1, {V})"), "violation"),  # out of order
    (_recs(f"('value', True, {V})"), "violation"),  # True is not 0... nor 1
    (_recs("('pass', 0)"), "violation"),  # a verdict for a case judged outside
    (_recs("('done',)"), "violation"),  # done before the cases
    (_recs(f"('value', 0, {V})", "('raised', 1)", "('done',)", "('done',)"), "violation"),
    (_recs("('load_error', 'X')", f"('value', 0, {V})"), "violation"),
    (_recs("('value', 0, ('int', 'zz'))"), "violation"),  # malformed value
    (_recs("('value', 0, ('mystery', 1))"), "violation"),
    (_recs("__import__('os')"), "violation"),  # not a literal
    (b"\xff\xfe\n", "violation"),
])
def test_the_parent_accepts_only_what_the_honest_harness_writes(raw, outcome):
    from forkrl.rewards.code_cases import Call, Case
    from forkrl.rewards.code_records import ProtocolViolation, records, tally

    call = Call(None, [], {})
    cases = [Case("a", True, call, lambda v: v == [30, 50]), Case("b", True, call, lambda v: v == [])]
    if outcome == "violation":
        with pytest.raises(ProtocolViolation):
            tally(records(raw, 1 << 16), cases)
    else:
        assert tally(records(raw, 1 << 16), cases) == outcome

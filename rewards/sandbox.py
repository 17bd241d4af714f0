"""Run one untrusted Python program in a subprocess with hard limits, and clean up after it.

Isolation, and why each piece:
- network: a fresh network namespace (unshare(CLONE_NEWNET) in the child; as root, or with a user
  namespace otherwise). Where the kernel refuses, a Python audit hook blocks socket.* and process
  spawning instead; best effort (ctypes can bypass it). `RunResult.net_isolation` says which ran.
- processes: root ignores RLIMIT_NPROC, so as root each run gets its own random unused uid
  (setuid in the child, after the rlimits). NPROC then caps that uid alone, and when the run ends
  a helper with the same uid sends kill(-1, SIGKILL): every process the program forked dies, even
  ones that left the process group. Not root: NPROC counts all of our user's processes, so it is
  raised by the number already running, and cleanup is by process group only.
- CPU: RLIMIT_CPU; wall clock: the parent's timeout; memory: RLIMIT_AS; output: stdout/stderr go to
  files in a root-only directory and RLIMIT_FSIZE caps them (and every file the program writes).
- files: a throwaway working directory owned by the run's uid, removed afterwards; the program text
  and spec sit in a second, root-only directory the program cannot read.
- imports: the sandbox uid must be able to read the interpreter's stdlib. Where it cannot (a
  Python under /root), a fixed list of common stdlib modules is imported before dropping privileges.
Not covered: reading world-readable host files, and filling /tmp with many small files (no mount
namespace / quota). No seccomp.
"""

from __future__ import annotations

import functools
import json
import os
import random
import shutil
import signal
import stat
import subprocess
import sys
import sysconfig
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

_CHILD = str(Path(__file__).with_name("_sandbox_child.py"))
_IS_ROOT = os.geteuid() == 0
# Imported before dropping privileges when the interpreter's stdlib is not readable by other uids
# (e.g. a pyenv under /root, mode 0700); programs can then use these modules and no others.
_PREIMPORT = (
    "math cmath typing collections collections.abc itertools functools heapq bisect re string random "
    "statistics fractions decimal datetime json hashlib copy operator time io array dataclasses enum "
    "struct textwrap unicodedata contextlib abc numbers queue types traceback warnings"
).split()


@dataclass(frozen=True)
class Limits:
    wall_s: float = 10.0
    cpu_s: int = 5
    memory_bytes: int = 1 << 30
    max_processes: int = 16
    max_output_bytes: int = 1 << 20
    max_open_files: int = 64
    site_packages: bool = False


@dataclass
class RunResult:
    status: str
    """"ok" (exit 0), "exit:N", "timeout", "cpu_limit", "output_limit", "memory_limit", "signal:NAME"."""
    returncode: int
    stdout: str
    stderr: str
    wall_s: float
    net_isolation: str


def _uid_ranges() -> list[tuple[int, int]]:
    """Host uids we may setuid to (inside a container only the mapped ones work)."""
    try:
        rows = [list(map(int, line.split())) for line in Path("/proc/self/uid_map").read_text().splitlines()]
    except OSError:
        rows = [[0, 0, 65536]]
    return [(inside, inside + count) for inside, _outside, count in rows]


@functools.lru_cache(maxsize=None)
def _world_readable(path: str) -> bool:
    """Can an unrelated uid read `path`? (every ancestor searchable by others, the dir itself listable)"""
    p = Path(path).resolve()
    try:
        if not p.stat().st_mode & stat.S_IROTH:
            return False
        return all(a.stat().st_mode & stat.S_IXOTH for a in [p, *p.parents])
    except OSError:
        return False


def _preimports() -> list[str]:
    paths = sysconfig.get_paths()
    if not _IS_ROOT or all(_world_readable(paths[k]) for k in ("stdlib", "platstdlib")):
        return []
    return list(_PREIMPORT)


def _pick_uid() -> int:
    """A random uid far above real accounts, so concurrent runs (and users) never share one."""
    for lo, hi in _uid_ranges():
        lo = max(lo, 1_000_000)
        if hi - lo >= 1_000_000:
            return random.randrange(lo, min(hi, 2**31 - 2))
    return 65534  # nobody: NPROC and kill(-1) then span every sandbox run on the host at once


def _kill_uid(uid: int) -> None:
    """SIGKILL every process of `uid` (a process may only kill(-1) what its own uid owns)."""
    pid = os.fork()
    if pid == 0:  # pragma: no cover - child of fork
        try:
            os.setuid(uid)
            os.kill(-1, signal.SIGKILL)
        finally:
            os._exit(0)
    os.waitpid(pid, 0)


def _read_capped(path: Path, cap: int) -> str:
    with open(path, "rb") as f:
        return f.read(cap).decode("utf-8", errors="replace")


def _status(rc: int, timed_out: bool, stderr: str, cpu_s: int, cpu_used: float) -> str:
    if timed_out:
        return "timeout"
    if rc == 0:
        return "ok"
    if rc < 0:
        sig = -rc
        if sig == signal.SIGXCPU or (sig == signal.SIGKILL and cpu_used >= cpu_s):
            return "cpu_limit"
        if sig == signal.SIGXFSZ:
            return "output_limit"
        return f"signal:{signal.Signals(sig).name}" if sig in signal.Signals._value2member_map_ else f"signal:{sig}"
    if "File too large" in stderr[-2000:]:  # Python ignores SIGXFSZ, so RLIMIT_FSIZE surfaces as EFBIG
        return "output_limit"
    if "MemoryError" in stderr[-2000:]:
        return "memory_limit"
    return f"exit:{rc}"


def run_python(source: str, stdin: str = "", limits: Limits = Limits()) -> RunResult:
    """Run `source` as __main__ under `limits`; never raises for anything the program does."""
    private = Path(tempfile.mkdtemp(prefix="forkrl-sbx-"))  # 0700, ours: program text, outputs
    work = Path(tempfile.mkdtemp(prefix="forkrl-work-"))
    uid = _pick_uid() if _IS_ROOT else os.getuid()
    try:
        if _IS_ROOT:
            os.chown(work, uid, uid)
        nproc = limits.max_processes
        if not _IS_ROOT:
            nproc += len([p for p in os.listdir("/proc") if p.isdigit()])  # upper bound of ours
        (private / "solution.py").write_text(source)
        (private / "stdin").write_text(stdin)
        spec = {
            "program": str(private / "solution.py"), "net_report": str(private / "net"), "cwd": str(work),
            "uid": uid, "cpu_s": limits.cpu_s, "mem": limits.memory_bytes, "nproc": nproc,
            "fsize": limits.max_output_bytes, "nofile": limits.max_open_files, "preimport": _preimports(),
        }
        (private / "spec.json").write_text(json.dumps(spec))
        flags = ["-I", "-S"] if not limits.site_packages else ["-I"]
        env = {"PATH": "/usr/bin:/bin", "HOME": str(work), "TMPDIR": str(work), "LANG": "C.UTF-8",
               "PYTHONHASHSEED": "0", "PYTHONDONTWRITEBYTECODE": "1"}
        t0 = time.monotonic()
        with open(private / "stdin", "rb") as fin, open(private / "stdout", "wb") as fout, \
                open(private / "stderr", "wb") as ferr:
            proc = subprocess.Popen(
                [sys.executable, *flags, _CHILD, str(private / "spec.json")],
                stdin=fin, stdout=fout, stderr=ferr, cwd=work, env=env,
                start_new_session=True, close_fds=True,
            )
            timed_out = False
            try:
                proc.wait(timeout=limits.wall_s)
            except subprocess.TimeoutExpired:
                timed_out = True
            finally:
                _cleanup(proc, uid)
        wall = time.monotonic() - t0
        stdout = _read_capped(private / "stdout", limits.max_output_bytes)
        stderr = _read_capped(private / "stderr", limits.max_output_bytes)
        net = (private / "net").read_text() if (private / "net").exists() else "unknown"
        rc = proc.returncode if proc.returncode is not None else -signal.SIGKILL
        cpu_used = _children_cpu_delta()
        return RunResult(_status(rc, timed_out, stderr, limits.cpu_s, cpu_used), rc, stdout, stderr, wall, net)
    finally:
        shutil.rmtree(private, ignore_errors=True)
        shutil.rmtree(work, ignore_errors=True)


def _cleanup(proc: subprocess.Popen, uid: int) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    if _IS_ROOT and uid != 0:
        _kill_uid(uid)
    proc.wait()


_last_children_cpu = [0.0]


def _children_cpu_delta() -> float:
    """CPU seconds our reaped children used since the last call (tells RLIMIT_CPU's SIGKILL from ours)."""
    t = os.times()
    total = t.children_user + t.children_system
    delta, _last_children_cpu[0] = total - _last_children_cpu[0], total
    return delta

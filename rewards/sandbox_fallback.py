"""Isolation "fallback": one run without bubblewrap, plus the host-side work dirs it needs.

The runner builds what it can itself (network, IPC and mount namespaces; every host mount read-only
with private tmpfs over /tmp, /var/tmp, /dev/shm and the work dir) and reports it back on a pipe; what
it could not get is logged once per process. The parent still makes a host work dir per run
(`$TMPDIR/forkrl-sbx-<pid>-<start>-<rand>/`, removed with `rm -rf` and by `sweep_stale_dirs()` if its
owner died): it holds the program and spec, and is the work dir where no mount namespace can be made.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import re
import shutil
import signal
import stat
import subprocess
import sys
import sysconfig
import tempfile
from pathlib import Path

from .sandbox_process import (
    IS_ROOT,
    RUNNER,
    Limits,
    kill_uid,
    pick_uid,
    python_flags,
    reap,
    runner_spec,
)

log = logging.getLogger("forkrl.rewards.sandbox")
_DIR_RE = re.compile(r"forkrl-sbx-(\d+)-(\d+)-\w+")
# Imported before dropping privileges when the stdlib is unreadable by other uids (e.g. a pyenv under
# /root, mode 0700); programs can then use these modules and no others. ast, signal: the code harness.
_PREIMPORT = (
    "math cmath typing collections collections.abc itertools functools heapq bisect re string random "
    "statistics fractions decimal datetime json hashlib copy operator time io array dataclasses enum "
    "struct textwrap unicodedata contextlib abc numbers queue types traceback warnings ast signal calendar "
    "base64 pprint"
).split()


class FallbackLaunch:
    name = "fallback"

    def __init__(self, limits: Limits):
        self.limits = limits
        self.root: Path | None = None
        self.uid = pick_uid() if IS_ROOT else os.getuid()
        self._report_r = self._report_w = None
        self._report: dict = {}

    def net_isolation(self) -> str:
        net = self._report.get("net")
        return "unknown" if net is None else "netns" if net else "audit_hook"

    def prepare(self, source: str, extra: dict[str, int], mem) -> tuple[list[str], list[int], dict]:
        """The runner's argv; `extra` maps an env name to the fd the program gets under it."""
        _sweep_once()
        self.root = _new_run_dir()
        private, work = self.root / "private", self.root / "work"
        private.mkdir(mode=0o700)
        work.mkdir(mode=0o700)
        if IS_ROOT:
            os.chown(work, self.uid, self.uid)
        (private / "solution.py").write_text(source)
        self._report_r, self._report_w = os.pipe()  # the runner says which namespaces it got, then closes it
        spec = runner_spec(self.limits, self.uid if IS_ROOT else None, str(private / "solution.py"), str(work),
                           self._report_w, _preimports())
        (private / "spec.json").write_text(json.dumps(spec))
        env = {"PATH": "/usr/bin:/bin", "HOME": str(work), "TMPDIR": str(work), "LANG": "C.UTF-8"}
        env |= {name: str(fd) for name, fd in extra.items()}
        pass_fds = [self._report_w, *extra.values()]
        argv = [sys.executable, *python_flags(self.limits), str(RUNNER), str(private / "spec.json")]
        return argv, pass_fds, env

    def started(self, proc: subprocess.Popen) -> None:
        os.close(self._report_w)
        self._report_w = None

    def finish(self, proc: subprocess.Popen) -> tuple[int, float]:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        if IS_ROOT:  # processes that left the group: everything the private uid still runs
            kill_uid(self.uid)
        out = reap(proc)
        self._report = _read_report(self._report_r)
        _warn_shared(self._report)
        return out

    def cleanup(self) -> None:
        for fd in (self._report_r, self._report_w):
            if fd is not None:
                os.close(fd)
        self._report_r = self._report_w = None
        if self.root is not None:
            _remove_tree(self.root)


def _read_report(fd: int) -> dict:
    """The runner's {"net", "ipc", "mnt", "ro_failed"}; {} if it died before writing it (then nothing ran)."""
    os.set_blocking(fd, False)
    try:
        report = json.loads(os.read(fd, 1 << 16) or b"{}")
    except (OSError, ValueError):
        return {}
    return report if isinstance(report, dict) else {}


def _warn_shared(report: dict) -> None:
    """One log line per process for each host resource the fallback could not take away from programs."""
    if not report:
        return
    if not report.get("ipc"):
        _warn_once("sandbox fallback: no IPC namespace (unshare refused): programs share the host's SysV "
                   "and POSIX IPC (shared memory, message queues, semaphores) and may leave objects there")
    if not report.get("mnt"):
        _warn_once("sandbox fallback: no mount namespace (unshare refused): programs can write every host "
                   "directory their uid can (/tmp, /dev/shm; not root: the verifier user's own files, "
                   "site-packages included), and what they plant there stays")
    elif report.get("ro_failed"):
        _warn_once(f"sandbox fallback: these mounts stay writable to programs: {sorted(report['ro_failed'])}")


@functools.lru_cache(maxsize=None)
def _warn_once(message: str) -> None:
    log.warning(message)


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
    if not IS_ROOT or all(_world_readable(paths[k]) for k in ("stdlib", "platstdlib")):
        return []
    return list(_PREIMPORT)


# ---- host-side directories (fallback only): one prefix per owner, removable without recursion --------------
def _start_time(pid: int) -> str | None:
    """Field 22 of /proc/<pid>/stat: tells a live owner from a new process that reused its pid."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def _new_run_dir() -> Path:
    """$TMPDIR/forkrl-sbx-<pid>-<start>-<rand>: 0711 so the run's uid reaches work/ but cannot list."""
    path = Path(tempfile.mkdtemp(prefix=f"forkrl-sbx-{os.getpid()}-{_start_time(os.getpid())}-"))
    path.chmod(0o711)
    return path


def _remove_tree(path: Path) -> None:
    """Remove a tree the program may have made hostile (very deep, chmod 000); never raises.

    `rm -rf` walks without recursion or PATH_MAX limits (shutil.rmtree recurses and gives up).
    """
    for attempt in range(2):
        try:
            if attempt:  # unreadable dirs a non-root program left behind
                subprocess.run(["chmod", "-R", "u+rwx", str(path)], stdin=subprocess.DEVNULL,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=120)
            subprocess.run(["rm", "-rf", "--one-file-system", "--", str(path)], stdin=subprocess.DEVNULL,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=120)
        except (OSError, subprocess.SubprocessError):
            shutil.rmtree(path, ignore_errors=True)
        if not os.path.lexists(path):
            return
    log.warning("sandbox: could not remove %s; sweep_stale_dirs() will retry", path)


def sweep_stale_dirs(tmpdir: str | None = None) -> int:
    """Remove fallback work dirs whose owning process is gone (a killed verifier actor); never raises.

    Call it when a pool starts and when it shuts down; every fallback run in a process also calls it
    once. Dirs of live owners, including other pools on the same host, are left alone. Returns how
    many were removed.
    """
    root = Path(tmpdir or tempfile.gettempdir())
    removed = 0
    try:
        names = os.listdir(root)
    except OSError:
        return 0
    for name in names:
        m = _DIR_RE.fullmatch(name)
        if m and _start_time(int(m.group(1))) != m.group(2):
            _remove_tree(root / name)
            removed += not os.path.lexists(root / name)
    return removed


@functools.lru_cache(maxsize=None)
def _sweep_once() -> None:
    sweep_stale_dirs()

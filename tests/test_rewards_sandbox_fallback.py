"""The fallback sandbox (no bubblewrap) closes what it can: its own IPC namespace (no SysV object a
program makes outlives it or is seen by it), a private mount table (every host mount read-only, fresh
tmpfs on /tmp, /var/tmp, /dev/shm and the work dir: a planted sitecustomize.py or .pth stays nowhere),
and one log line for each of these it could not get. Each check looks only for this test's own marker."""

import ctypes
import logging
import os
import random
import sys
import sysconfig
import uuid
from pathlib import Path

import pytest

import forkrl.rewards as rewards_pkg
import forkrl.rewards.sandbox_fallback as fallback
from forkrl.rewards.sandbox import Limits, bwrap_problem, run_python

IPC_CREAT = 0o1000
IPC_RMID = 0
ISOLATIONS = ["bwrap", "fallback"]


def _skip_without_bwrap(isolation: str) -> None:
    if isolation == "bwrap" and bwrap_problem():
        pytest.skip(f"bubblewrap unavailable here: {bwrap_problem()}")


def _sysv_keys(kind: str) -> set[int]:
    """The keys of the host's SysV objects of one kind ("shm", "msg", "sem"), from /proc/sysvipc."""
    lines = Path(f"/proc/sysvipc/{kind}").read_text().splitlines()[1:]
    return {int(line.split()[0]) for line in lines}


MAKE_IPC = """
import ctypes
libc = ctypes.CDLL(None, use_errno=True)
KEY = {key}
made = [libc.shmget(KEY, 64 << 20, 0o1666), libc.msgget(KEY + 1, 0o1666), libc.semget(KEY + 2, 1, 0o1666)]
print("made", [m >= 0 for m in made])
print("sees", {host_key} in {{int(l.split()[0]) for l in open('/proc/sysvipc/shm').read().splitlines()[1:]}})
"""


@pytest.mark.parametrize("isolation", ISOLATIONS)
def test_sysv_ipc_objects_stay_inside_and_host_ones_are_not_seen(isolation):
    """A 64 MiB shared-memory segment, a message queue and a semaphore set, mode 0666: made inside,
    gone with the run; and a segment of the host's is not in the program's view."""
    _skip_without_bwrap(isolation)
    key = random.randrange(1 << 20, 1 << 30)
    libc = ctypes.CDLL(None, use_errno=True)
    host_id = libc.shmget(key + 10, 4096, IPC_CREAT | 0o600)
    assert host_id >= 0
    try:
        r = run_python(MAKE_IPC.format(key=key, host_key=key + 10), "", Limits(wall_s=20, isolation=isolation))
        assert r.status == "ok" and r.isolation == isolation, r.stderr
        assert r.stdout.splitlines() == ["made [True, True, True]", "sees False"]
        assert {key, key + 1, key + 2} & (_sysv_keys("shm") | _sysv_keys("msg") | _sysv_keys("sem")) == set()
    finally:
        libc.shmctl(host_id, IPC_RMID, None)
        _remove_sysv(libc, key)


def _remove_sysv(libc, key: int) -> None:
    """Remove what a run that escaped would have left (the test must not leave it on the host either)."""
    for get, ctl in ((lambda: libc.shmget(key, 0, 0), lambda i: libc.shmctl(i, IPC_RMID, None)),
                     (lambda: libc.msgget(key + 1, 0), lambda i: libc.msgctl(i, IPC_RMID, None)),
                     (lambda: libc.semget(key + 2, 0, 0), lambda i: libc.semctl(i, 0, IPC_RMID))):
        if (ident := get()) >= 0:
            ctl(ident)


PLANT = """
import os, sys
dirs = ['/tmp', '/var/tmp', '/dev/shm', os.getcwd(), os.environ.get('HOME', '/'), *sys.path, *EXTRA]
wrote = []
for d in dict.fromkeys(dirs):
    for name in ('sitecustomize.py', 'MARK.pth', 'MARK_usercustomize.py'):
        try:
            with open(os.path.join(d, name), 'a') as f:
                f.write('# MARK\\n')
            wrote.append(d)
        except OSError:
            pass
print(sorted(set(wrote)))
"""


@pytest.mark.parametrize("isolation", ISOLATIONS)
def test_planted_startup_files_do_not_reach_the_host(isolation):
    """A program writes sitecustomize.py / .pth files into every dir it can name: /tmp and its work dir
    take them (the private tmpfs), and after the run no host dir holds one."""
    _skip_without_bwrap(isolation)
    mark = f"plant{uuid.uuid4().hex}"
    extra = [str(Path(rewards_pkg.__file__).parent), str(Path(rewards_pkg.__file__).parents[1]),
             os.path.expanduser("~"), *sysconfig.get_paths().values()]
    src = PLANT.replace("MARK", mark).replace("EXTRA", repr(extra))
    r = run_python(src, "", Limits(wall_s=20, isolation=isolation))
    assert r.status == "ok" and r.isolation == isolation, r.stderr
    wrote = eval(r.stdout)
    assert "/tmp" in wrote  # the writes were allowed where a program needs scratch space...
    dirs = {"/tmp", "/var/tmp", "/dev/shm", *extra, *sys.path, *sysconfig.get_paths().values(), *wrote}
    planted = [os.path.join(d, n) for d in dirs for n in ("sitecustomize.py", f"{mark}.pth", f"{mark}_usercustomize.py")
               if os.path.isfile(os.path.join(d, n)) and mark in _read(os.path.join(d, n))]
    for path in planted:  # a failing run must not leave them for the next Python on the host
        if _read(path) == f"# {mark}\n":
            os.remove(path)
    assert planted == []  # ...and none of them reached the host


def _read(path: str) -> str:
    try:
        return Path(path).read_text(errors="replace")
    except OSError:
        return ""


def test_the_fallback_reports_what_it_got():
    r = run_python("print('hi')", "", Limits(wall_s=20, isolation="fallback"))
    assert (r.status, r.stdout, r.isolation, r.net_isolation) == ("ok", "hi\n", "fallback", "netns")


@pytest.mark.parametrize("report, lines", [
    ({"net": True, "ipc": True, "mnt": True, "ro_failed": []}, []),
    ({"net": True, "ipc": False, "mnt": True, "ro_failed": []}, ["no IPC namespace"]),
    ({"net": False, "ipc": False, "mnt": False, "ro_failed": None}, ["no IPC namespace", "no mount namespace"]),
    ({"net": True, "ipc": True, "mnt": True, "ro_failed": ["/b", "/a"]}, ["these mounts stay writable to programs: ['/a', '/b']"]),
    ({}, []),  # the runner died before reporting: nothing ran
])
def test_each_missing_namespace_is_one_clear_log_line(report, lines, caplog):
    fallback._warn_once.cache_clear()
    with caplog.at_level(logging.WARNING, logger="forkrl.rewards.sandbox"):
        fallback._warn_shared(report)
        fallback._warn_shared(report)  # once per process, not per run
    assert len(caplog.messages) == len(lines)
    assert all(want in got for want, got in zip(lines, caplog.messages))
    fallback._warn_once.cache_clear()


@pytest.mark.parametrize("data, report", [
    (b'{"net": true, "ipc": false}', {"net": True, "ipc": False}), (b"", {}), (b"[1]", {}), (b"{oops", {}),
])
def test_read_report(data, report):
    r, w = os.pipe()
    os.write(w, data)
    os.close(w)
    try:
        assert fallback._read_report(r) == report
    finally:
        os.close(r)

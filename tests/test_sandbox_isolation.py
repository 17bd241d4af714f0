"""What a program sees under bubblewrap, and that the fallback is never silent."""

import logging
import os
import sys

import pytest

import forkrl.rewards.sandbox as sandbox
from forkrl.rewards.sandbox import Limits, SandboxUnavailable, run_python

needs_bwrap = pytest.mark.skipif(bool(sandbox.bwrap_problem()), reason="bubblewrap unavailable")
L = Limits(wall_s=10, isolation="bwrap")
PROBE = """
import os, sys
def can_list(p):
    try:
        return sorted(os.listdir(p))
    except OSError as e:
        return type(e).__name__
print(repr({
    "pids": sorted(int(p) for p in os.listdir('/proc') if p.isdigit()),
    "uid": os.getuid(),
    "caps": [l.split()[1] for l in open('/proc/self/status') if l.startswith(('CapEff', 'CapPrm'))],
    "root": can_list('/'),
    "site": can_list(SITE),
    "data": can_list(DATA),
    "shm": can_list('/dev/shm'),
    "home": can_list(HOME),
    "hostname": os.uname().nodename,
}))
"""


def _probe(site_packages: bool) -> dict:
    site = os.path.join(os.path.dirname(os.__file__), "site-packages")
    data = os.path.join(os.path.dirname(sandbox.__file__), "data")
    src = PROBE.replace("SITE", repr(site)).replace("DATA", repr(data)).replace("HOME", repr(os.path.expanduser("~")))
    r = run_python(src, "", Limits(wall_s=10, isolation="bwrap", site_packages=site_packages))
    assert r.status == "ok" and r.isolation == "bwrap", r.stderr
    return eval(r.stdout)


@needs_bwrap
def test_the_sandbox_sees_only_the_interpreter_and_system_libraries():
    seen = _probe(site_packages=False)
    assert len(seen["pids"]) <= 2  # its own pid namespace: bwrap's pid 1 and the program
    assert seen["caps"] == ["0000000000000000"] * 2
    if os.geteuid() == 0:
        assert seen["uid"] >= 1_000_000 or seen["uid"] == 65534  # a private uid, never root
    assert set(seen["root"]) <= {"bin", "sbin", "lib", "lib32", "lib64", "libx32", "usr", "etc", "proc", "dev", "tmp",
                                 "sbx", *[p.split("/")[1] for p in (sys.prefix, sys.base_prefix)]}
    assert seen["site"] == [] or seen["site"] == "FileNotFoundError"  # site-packages: hidden
    assert seen["data"] in ("FileNotFoundError", [])  # the gold tests: never there
    assert seen["shm"] in ([], "FileNotFoundError")  # not the host's /dev/shm
    assert seen["hostname"] == "sandbox"


@needs_bwrap
def test_site_packages_on_still_hides_the_project_data():
    seen = _probe(site_packages=True)
    assert isinstance(seen["site"], list) and seen["site"]
    assert seen["data"] in ("FileNotFoundError", [])


@needs_bwrap
def test_the_root_file_system_is_read_only_and_tmp_is_capped():
    src = ("import os\nfor p in ('/usr/x', '/x', '/etc/x'):\n    try: open(p, 'w'); print('wrote', p)\n"
           "    except OSError: pass\ntry:\n    open('/tmp/big', 'wb').write(b'x' * (200 << 20))\nexcept OSError as e:\n"
           "    print('full', e.errno)\n")
    r = run_python(src, "", Limits(wall_s=10, isolation="bwrap", max_output_bytes=512 << 20))
    assert "wrote" not in r.stdout and "full 28" in r.stdout  # ENOSPC: the private tmpfs is size-capped


def test_fallback_is_logged_and_reported(monkeypatch, caplog):
    monkeypatch.setattr(sandbox, "bwrap_problem", lambda: "user namespaces refused (test)")
    with caplog.at_level(logging.WARNING, logger="forkrl.rewards.sandbox"):
        r = run_python("print('hi')", "", Limits(isolation="auto"))
    assert r.stdout == "hi\n" and r.isolation == "fallback"
    assert any("WEAKER isolation" in m and "refused (test)" in m for m in caplog.messages)
    with pytest.raises(SandboxUnavailable):
        run_python("print('hi')", "", Limits(isolation="bwrap"))

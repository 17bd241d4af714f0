"""Entry point of the sandboxed process (run as a script, never imported by the verifier).

Under bubblewrap it is copied into the sandbox as /sbx/runner.py and sees only the sandbox; in the
fallback it runs from the package. Stdlib only.

Order matters: read the program and spec while still privileged, (fallback only) cut the network,
set the rlimits, step into the work dir, drop to the run's private uid (as root) and check no
capability survived, and only then run the untrusted code in this same interpreter.
"""

import ctypes
import json
import os
import resource
import sys

_CLONE_NEWNET = 0x40000000
_CLONE_NEWUSER = 0x10000000
_PR_SET_PDEATHSIG = 1
# Events that reach the network or start a program the audit hook cannot see (fallback mode only).
_BLOCKED_PREFIXES = ("socket.", "subprocess.", "os.system", "os.exec", "os.posix_spawn", "os.spawn", "pty.spawn")


def _unshare_net() -> bool:
    """A fresh network namespace has only a downed loopback: no route anywhere. Needs root or a user ns."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        flags = _CLONE_NEWNET if os.geteuid() == 0 else _CLONE_NEWUSER | _CLONE_NEWNET
        return libc.unshare(flags) == 0
    except Exception:
        return False


def _die_with_parent() -> None:
    """Fallback only (bwrap has --die-with-parent): if the verifier dies, so do we (not our children)."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, 9)  # SIGKILL
    except Exception:
        pass


def _audit_hook(event, args):
    if event.startswith(_BLOCKED_PREFIXES):
        raise PermissionError(f"sandbox: {event} is blocked (no network)")


def _no_capabilities() -> bool:
    with open("/proc/self/status") as f:
        return all(int(line.split()[1], 16) == 0 for line in f if line.startswith(("CapPrm:", "CapEff:")))


def main() -> None:
    with open(sys.argv[1]) as f:
        spec = json.load(f)
    with open(spec["program"]) as f:
        source = f.read()
    net = "netns"
    if spec["net_report"] is not None:  # fallback: no bwrap made the namespaces for us
        _die_with_parent()
        net = "netns" if _unshare_net() else "audit_hook"
        with open(spec["net_report"], "w") as f:
            f.write(net)

    lim = resource.setrlimit
    lim(resource.RLIMIT_CORE, (0, 0))
    lim(resource.RLIMIT_CPU, (spec["cpu_s"], spec["cpu_s"] + 1))
    lim(resource.RLIMIT_FSIZE, (spec["fsize"], spec["fsize"]))
    lim(resource.RLIMIT_NOFILE, (spec["nofile"], spec["nofile"]))
    lim(resource.RLIMIT_NPROC, (spec["nproc"], spec["nproc"]))
    lim(resource.RLIMIT_AS, (spec["mem"], spec["mem"]))

    for name in spec["preimport"]:  # the stdlib may be unreadable once we are another uid
        __import__(name)
    os.chdir(spec["cwd"])
    if spec["uid"] is not None:  # root ignores RLIMIT_NPROC: run as a uid no other process on the host uses
        os.setgroups([])
        os.setgid(spec["uid"])
        os.setuid(spec["uid"])
        if not _no_capabilities():
            sys.stderr.write("sandbox: capabilities survived the uid switch; refusing to run\n")
            os._exit(125)
    if net == "audit_hook":
        sys.addaudithook(_audit_hook)

    code = compile(source, "solution.py", "exec")
    del source, spec
    sys.argv = ["solution.py"]
    exec(code, {"__name__": "__main__", "__builtins__": __builtins__})


if __name__ == "__main__":
    main()

"""Entry point of the sandbox subprocess (run as a script, never imported by the verifier).

Order matters: read the (root-only) program and spec while still privileged, cut the network, set the
rlimits, step into the throwaway directory, drop to the run's private uid, and only then run the
untrusted code in this same interpreter.
"""

import ctypes
import json
import os
import resource
import sys

_CLONE_NEWNET = 0x40000000
_CLONE_NEWUSER = 0x10000000
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


def _audit_hook(event, args):
    if event.startswith(_BLOCKED_PREFIXES):
        raise PermissionError(f"sandbox: {event} is blocked (no network)")


def main() -> None:
    with open(sys.argv[1]) as f:
        spec = json.load(f)
    with open(spec["program"]) as f:
        source = f.read()
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
    if os.geteuid() == 0:  # root ignores RLIMIT_NPROC: run as a uid no other process on the host uses
        os.setgroups([])
        os.setgid(spec["uid"])
        os.setuid(spec["uid"])
    if net == "audit_hook":
        sys.addaudithook(_audit_hook)

    code = compile(source, "solution.py", "exec")
    del source, spec
    sys.argv = ["solution.py"]
    exec(code, {"__name__": "__main__", "__builtins__": __builtins__})


if __name__ == "__main__":
    main()

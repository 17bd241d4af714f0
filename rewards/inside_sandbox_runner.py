"""RUNS INSIDE THE SANDBOX (stdlib only): the entry point of the sandboxed process, run as a script and
never imported by the verifier.

Under bubblewrap it is copied into the sandbox as /sbx/runner.py and sees only the sandbox; in the
fallback it runs from the package and builds what namespaces it can itself.

Order matters: read the program and spec while still privileged; (fallback only) enter new network,
IPC and mount namespaces, make every host mount read-only with private tmpfs over the scratch dirs and
the work dir, and report what it got on the report fd (then closed); set the rlimits, step into the
work dir, drop to the run's private uid (as root; not root, drop the user namespace's capabilities)
and check no capability survived; make the process
non-dumpable (so a process it forks, e.g. the code harness's candidate, cannot ptrace it or open its
/proc fds); only then run the untrusted code in this same interpreter.
"""

import ctypes
import json
import os
import resource
import sys

_CLONE_NEWNS = 0x00020000
_CLONE_NEWIPC = 0x08000000
_CLONE_NEWNET = 0x40000000
_CLONE_NEWUSER = 0x10000000
_PR_SET_PDEATHSIG = 1
_PR_SET_DUMPABLE = 4
_PR_SET_NO_NEW_PRIVS = 38
_CAPS_V3 = 0x20080522
_MS_RDONLY, _MS_NOSUID, _MS_NODEV, _MS_NOEXEC = 1, 2, 4, 8
_MS_REMOUNT, _MS_NOATIME, _MS_NODIRATIME, _MS_BIND = 32, 1024, 2048, 4096
_MS_REC, _MS_PRIVATE, _MS_RELATIME = 16384, 1 << 18, 1 << 21
_KEEP_FLAGS = {"nosuid": _MS_NOSUID, "nodev": _MS_NODEV, "noexec": _MS_NOEXEC, "noatime": _MS_NOATIME,
               "nodiratime": _MS_NODIRATIME, "relatime": _MS_RELATIME}
_SCRATCH = ("/tmp", "/var/tmp", "/dev/shm")  # world-writable on every host: private tmpfs instead
_TMPFS_SIZE = "64m"
# Events that reach the network or start a program the audit hook cannot see (no network namespace only).
_BLOCKED_PREFIXES = ("socket.", "subprocess.", "os.system", "os.exec", "os.posix_spawn", "os.spawn", "pty.spawn")
_libc = ctypes.CDLL(None, use_errno=True)


def _unshare() -> dict:
    """The namespaces we could make: net (only a downed loopback), ipc (no host SysV/POSIX IPC objects),
    mnt (a private mount table). Root needs no user namespace; otherwise one is needed and made."""
    user = 0 if os.geteuid() == 0 else _CLONE_NEWUSER
    for want in (("net", "ipc", "mnt"), ("net", "ipc"), ("net",)):
        flags = user | sum({"net": _CLONE_NEWNET, "ipc": _CLONE_NEWIPC, "mnt": _CLONE_NEWNS}[w] for w in want)
        if _libc.unshare(flags) == 0:
            return {w: w in want for w in ("net", "ipc", "mnt")}
    return {"net": False, "ipc": False, "mnt": False}


def _mount(src, target, fstype, flags, data) -> bool:
    enc = lambda s: None if s is None else s.encode()  # noqa: E731
    return _libc.mount(enc(src), enc(target), enc(fstype), flags, enc(data)) == 0


def _mount_points() -> list:
    """(mount point, its per-mount flags to keep) for every mount, from /proc/self/mountinfo."""
    out = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            fields = line.split()
            path = fields[4].encode().decode("unicode_escape")  # \040 is a space
            keep = sum(_KEEP_FLAGS.get(o, 0) for o in fields[5].split(","))
            out.append((path, keep))
    return out


def _private_file_system(work: str, uid) -> list:
    """Every host mount read-only, a fresh tmpfs on each scratch dir and on the work dir. Returns the
    mount points that could not be made read-only (reported; the parent logs them)."""
    if not _mount(None, "/", None, _MS_REC | _MS_PRIVATE, None):
        return ["/"]
    failed = [p for p, keep in _mount_points()
              if not _mount(None, p, None, _MS_REMOUNT | _MS_BIND | _MS_RDONLY | keep, None)]
    owner = "" if uid is None else f",uid={uid},gid={uid}"
    for d in _SCRATCH:
        if os.path.isdir(d) and not _mount("tmpfs", d, "tmpfs", _MS_NOSUID | _MS_NODEV, f"size={_TMPFS_SIZE},mode=1777"):
            failed.append(d)
    os.makedirs(work, exist_ok=True)  # its host copy now sits under a tmpfs when $TMPDIR is a scratch dir
    if not _mount("tmpfs", work, "tmpfs", _MS_NOSUID | _MS_NODEV, f"size={_TMPFS_SIZE},mode=0700{owner}"):
        failed.append(work)
    return failed


def _die_with_parent() -> None:
    """Fallback only (bwrap has --die-with-parent): if the verifier dies, so do we (not our children)."""
    _libc.prctl(_PR_SET_PDEATHSIG, 9)  # SIGKILL


def _audit_hook(event, args):
    if event.startswith(_BLOCKED_PREFIXES):
        raise PermissionError(f"sandbox: {event} is blocked (no network)")


def _drop_capabilities() -> None:
    """Not root, the fallback's user namespace gave us every capability inside it (enough to remount
    what we made read-only): drop them all, for good (no_new_privs: no exec regains any)."""
    header = (ctypes.c_uint32 * 2)(_CAPS_V3, 0)
    data = (ctypes.c_uint32 * 6)()  # effective, permitted, inheritable: 0, for both 32-bit halves
    _libc.capset(header, data)
    _libc.prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)


def _no_capabilities() -> bool:
    with open("/proc/self/status") as f:
        return all(int(line.split()[1], 16) == 0 for line in f if line.startswith(("CapPrm:", "CapEff:")))


def main() -> None:
    with open(sys.argv[1]) as f:
        spec = json.load(f)
    with open(spec["program"]) as f:
        source = f.read()
    net = "netns"
    if spec["report_fd"] is not None:  # fallback: no bwrap made the namespaces for us
        _die_with_parent()
        got = _unshare()
        got["ro_failed"] = _private_file_system(spec["cwd"], spec["uid"]) if got["mnt"] else None
        net = "netns" if got["net"] else "audit_hook"
        os.write(spec["report_fd"], json.dumps(got).encode())
        os.close(spec["report_fd"])

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
    elif spec["report_fd"] is not None:
        _drop_capabilities()
    if not _no_capabilities():
        sys.stderr.write("sandbox: capabilities survived; refusing to run\n")
        os._exit(125)
    if _libc.prctl(_PR_SET_DUMPABLE, 0) != 0:
        sys.stderr.write("sandbox: could not make the process non-dumpable; refusing to run\n")
        os._exit(125)
    if net == "audit_hook":
        sys.addaudithook(_audit_hook)

    code = compile(source, "solution.py", "exec")
    del source, spec
    sys.argv = ["solution.py"]
    exec(code, {"__name__": "__main__", "__builtins__": __builtins__})


if __name__ == "__main__":
    main()

"""RUNS INSIDE THE SANDBOX (stdlib only; also imported by the parent for `encode`/`decode`).

The test harness of assert-shaped code tasks (`rewards.code_verifier`). Two processes, so that nothing
the candidate controls is in the process that runs the tests, and nothing of the tests is in the
process that runs the candidate:

- the TEST process (the one the sandbox starts; it alone holds the result fd) never runs a line of the
  candidate's code. It builds the test namespace fresh from the prompt and the test's preamble, with
  the builtins and modules untouched, and runs the test statements there. The candidate's functions
  (the entry point, `candidate`, and every name the tests call that the prompt does not define) are
  proxies: each call encodes its arguments (a deep copy: the candidate cannot mutate the test's
  objects) and sends them to the other process, and turns the reply into fresh built-ins.
- the CANDIDATE process is forked by `run` BEFORE the tests exist in this interpreter: the program
  (and so the runner's compiled module, its constants, the sandbox's program file) holds only the
  solution; the tests arrive on the fd named by $FORKRL_INPUT_FD, which the candidate closes before
  loading the solution and the test process reads only after the fork. So no frame, object, module
  constant or page of the candidate's address space ever held a test (a candidate that walks
  `sys._getframe()` to replay the asserts finds nothing). Whatever it patches (builtins, `math.fabs`,
  `random.randint`, `tuple`, `str`) is its own copy. It cannot reach the test process's memory or fds:
  the runner made the processes non-dumpable, so ptrace and /proc/<pid>/{mem,fd} are refused.

Records go to the fd named by $FORKRL_RESULT_FD as Python literals, one per line:
("value", i, encoded) | ("raised", i) | ("pass", i) | ("fail", i) | ("load_error", name) | ("done",).
A record longer than the tests' "max_record" bytes is replaced by ("raised", i): the parent refuses longer
lines unread, so that decoding a forged record costs it a bounded time.
"""

import ast
import os
import signal


def encode(x, _type=type, _hex=int.__format__, _frepr=float.__repr__, _items=dict.items):
    """`x` as nested tuples holding only exact str/bytes/bool, tagged by EXACT built-in type.

    Raises TypeError for anything else (subclasses, generators, objects, depth > 100). Never calls
    code of the value's own (no __eq__, __hash__, __repr__, __iter__ of a subclass). The defaults
    capture the built-ins when this module is defined.
    """
    def enc(v, depth):
        t = _type(v)
        if depth > 100:
            raise TypeError("nested too deep")
        if v is None:
            return ("none",)
        if t is bool:
            return ("bool", v)
        if t is int:  # hex: no 4300-digit str() limit
            return ("int", _hex(v, "x"))
        if t is float:
            return ("float", _frepr(v))
        if t is str:
            return ("str", v)
        if t is bytes:
            return ("bytes", v)
        if t is list:
            return ("list", [enc(e, depth + 1) for e in v])
        if t is tuple:
            return ("tuple", [enc(e, depth + 1) for e in v])
        if t is set:
            return ("set", [enc(e, depth + 1) for e in v])
        if t is frozenset:
            return ("frozenset", [enc(e, depth + 1) for e in v])
        if t is dict:
            return ("dict", [(enc(k, depth + 1), enc(w, depth + 1)) for k, w in _items(v)])
        raise TypeError("not a plain built-in value")

    return enc(x, 0)


def decode(e):
    """Inverse of `encode`, building fresh built-ins; raises ValueError/TypeError on a malformed value."""
    if type(e) is not tuple or not e or type(e[0]) is not str:
        raise ValueError("malformed value")
    tag, rest = e[0], e[1:]
    if tag == "none" and not rest:
        return None
    if len(rest) != 1:
        raise ValueError("malformed value")
    v = rest[0]
    if tag == "bool" and type(v) is bool:
        return v
    if tag == "int" and type(v) is str:
        return int(v, 16)
    if tag == "float" and type(v) is str:
        return float(v)
    if (tag == "str" and type(v) is str) or (tag == "bytes" and type(v) is bytes):
        return v
    if type(v) is list:
        if tag == "dict":
            return {decode(k): decode(w) for k, w in v}
        make = {"list": list, "tuple": tuple, "set": set, "frozenset": frozenset}.get(tag)
        if make is not None:
            return make([decode(x) for x in v])
    raise ValueError(f"malformed value tagged {tag!r}")


class _Lines:
    """Newline-terminated Python literals over a pipe."""

    def __init__(self, rfd, wfd):
        self.rfd, self.wfd, self.buf = rfd, wfd, b""

    def send(self, msg):
        data = (repr(msg) + "\n").encode()
        while data:
            data = data[os.write(self.wfd, data):]

    def recv(self):
        """The next message, or None at end of file or on garbage."""
        while b"\n" not in self.buf:
            chunk = os.read(self.rfd, 1 << 16)
            if not chunk:
                return None
            self.buf += chunk
        line, self.buf = self.buf.split(b"\n", 1)
        try:
            msg = ast.literal_eval(line.decode("utf-8"))
        except Exception:
            return None
        return msg if type(msg) is tuple and msg else None


def _candidate_process(solution, link):
    """Load the solution and answer ("call", name, args, kwargs) until the test process hangs up."""
    me = os.getpid()
    g = {"__name__": "solution"}
    try:
        exec(compile(solution, "solution.py", "exec"), g)
        reply = ("ready",)
    except BaseException as e:
        name = type(e).__name__
        reply = ("load_error", name if type(name) is str else "?")
    if os.getpid() != me:  # a copy forked by the solution at import: only the process we started answers
        os._exit(0)
    link.send(reply)
    while reply[0] == "ready":
        msg = link.recv()
        if msg is None:
            break
        try:
            args = [decode(a) for a in msg[2]]
            kwargs = {k: decode(v) for k, v in msg[3]}
            value = encode(g[msg[1]](*args, **kwargs))
            out = ("value", value)
        except BaseException as e:
            out = ("raised", type(e).__name__)
        if os.getpid() != me:  # forked inside the call
            os._exit(0)
        link.send(out)
    os._exit(0)


# raised inside the test's own loop machinery they would END a map/zip/generator instead of failing the case
_LOOP_ENDERS = ("StopIteration", "StopAsyncIteration", "GeneratorExit")


def _raise_as(name, builtins_):
    """A fresh exception of the built-in class the candidate raised (tests may expect one), else
    RuntimeError; also RuntimeError for the exceptions that end iteration (`_LOOP_ENDERS`): otherwise a
    candidate raising StopIteration inside `all(a == b for a, b in zip(map(f, xs), ys))` empties it."""
    cls = builtins_.get(name) if type(name) is str and name not in _LOOP_ENDERS else None
    if type(cls) is type and issubclass(cls, Exception):
        raise cls("raised by the candidate")
    raise RuntimeError("the candidate raised")


def _read_all(fd):
    chunks = []
    while chunk := os.read(fd, 1 << 16):
        chunks.append(chunk)
    return b"".join(chunks)


def run(solution):
    """The test process: fork the candidate, then read the tests, run every case, write one record per
    case, then "done"."""
    import builtins

    fd = int(os.environ["FORKRL_RESULT_FD"])
    tests_fd = int(os.environ["FORKRL_INPUT_FD"])
    pristine = dict(vars(builtins))
    req_r, req_w = os.pipe()
    rep_r, rep_w = os.pipe()
    if os.fork() == 0:
        for f in (fd, tests_fd, req_w, rep_r):
            os.close(f)
        _candidate_process(solution, _Lines(req_r, rep_w))
    for f in (req_r, rep_w):
        os.close(f)
    try:
        spec = ast.literal_eval(_read_all(tests_fd).decode("utf-8"))
    finally:
        os.close(tests_fd)
    cap = spec["max_record"]
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # else the candidate could raise KeyboardInterrupt in a test
    link = _Lines(rep_r, req_w)

    def put(*rec):
        data = (repr(rec) + "\n").encode()
        if len(data) > cap and rec[0] == "value":
            data = (repr(("raised", rec[1])) + "\n").encode()
        try:
            if os.write(fd, data) != len(data):
                os._exit(3)
        except OSError:  # over the output cap: the parent sees a missing record
            os._exit(3)

    def ask(name, args, kwargs):
        """The candidate's reply to one call: ("value", encoded) checked to decode, else ("raised", name)."""
        try:
            link.send(("call", name, args, kwargs))
        except OSError:  # the candidate process is gone
            return ("raised", "gone")
        reply = link.recv()
        if reply is not None and reply[0] == "value" and len(reply) == 2:
            try:
                return ("value", encode(decode(reply[1])))
            except (TypeError, ValueError, RecursionError):
                pass
        return ("raised", reply[1] if reply is not None and len(reply) == 2 else "?")

    def proxy(name):
        def call(*args, **kwargs):
            reply = ask(name, [encode(a) for a in args], [(k, encode(v)) for k, v in kwargs.items()])
            if reply[0] == "value":
                return decode(reply[1])
            _raise_as(reply[1], pristine)
        return call

    first = link.recv()
    if first is None or first[0] != "ready":
        name = first[1] if first is not None and len(first) == 2 and type(first[1]) is str else "exit"
        put("load_error", name[:60])
        os._exit(0)
    t = {"__name__": "tests", "__builtins__": builtins}
    try:
        exec(compile(spec["setup"], "tests.py", "exec"), t)
    except BaseException as e:
        put("load_error", "setup " + type(e).__name__)
        os._exit(0)
    for name in spec["proxies"]:
        t[name] = proxy(name)
    if spec["entry"] is not None:
        t["candidate"] = proxy(spec["entry"])
    i = 0
    for item in spec["items"]:
        if item[0] == "call":
            reply = ask(item[1] if item[1] is not None else spec["entry"], item[2], item[3])
            put(*(("value", i, reply[1]) if reply[0] == "value" else ("raised", i)))
            i += 1
            continue
        src, is_case = item[1], item[2]
        try:
            exec(compile(src, "tests.py", "exec"), t)
            ok = True
        except BaseException:
            ok = False
        if is_case:
            put("pass" if ok else "fail", i)
            i += 1
    put("done")
    os._exit(0)  # the candidate process dies with the sandbox's pid namespace (or its process group)

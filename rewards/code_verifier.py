"""Code answers: run the response's Python on test cases in the sandbox; reward = fraction of cases passed.

Ground truth (`Sample.answer`) is a dict in one of three shapes:
- HumanEval: {"test": "<defines check(candidate)>", "entry_point": "fn", "prompt": "<signature+docstring>"}
  each top-level statement of check() that contains an assert is one test case;
- assert list: {"tests": ["assert f(1) == 2", ...], "prompt": optional preamble}: one case per string;
- stdin/stdout: {"inputs": ["1 2\\n", ...], "outputs": ["3\\n", ...]}: one run per case, output compared
  here after stripping trailing whitespace per line.

The judge is this process, never the sandbox. The policy writes the code we run and will use every
way to score without solving the task (patching builtins, objects whose __eq__ is always True, hunting
for a nonce, forking so that pass lines print twice, ...), so the program inside only PRODUCES values:
- A case of the form `assert candidate(<literals>) == <literal>` (also `!=`, `is None/True/False`, bare
  or `not candidate(...)`, `abs(candidate(...) - x) < eps`, `math.isclose(candidate(...), x, ...)`; in
  assert lists any `f(...)` call) is parsed here with `ast`: inputs and expected value are evaluated
  here from the literals. Only the inputs enter the sandbox; the expected values never do, so nothing
  inside can read, find or forge them.
- The harness calls the function on each case's inputs and writes one record per case to a result
  channel, a write-only fd that is not stdout. Values are encoded by EXACT built-in type (`type(x) is
  int`; an int subclass is not an int) with references captured before the solution is loaded; a
  candidate that subverts the harness anyway can only make a record claim some plain value, which it
  could have returned itself. Here records become fresh built-ins and are compared with the expected
  values (HumanEval's tolerance where the test says `abs(...) < eps`).
- Each case counts once: records must come in case order, one per case, then "done". A copy of the
  harness forked by the solution stays silent; a duplicate, unknown or out-of-order record, or garbage
  (what a forged or forked writer produces) scores the sample 0 with reason "protocol violation".
  Rewards are clamped to [0, 1].
- Statements that cannot be parsed (loops, helper calls, comprehensions) run inside as before; the
  function's return values reach them only as fresh built-ins, against pristine builtins, but their
  pass/fail comes from inside and a program that forges records could claim them. They are counted in
  the reason: "ok (3 unparsed)".
"""

from __future__ import annotations

import ast
import inspect
import math
import operator
import re
from dataclasses import dataclass
from typing import Any, Callable, NamedTuple

from .config import CodeRewardConfig
from .sandbox import Limits, run_python
from .types import Sample, Score

_FENCE_RE = re.compile(r"```(?:python|py|Python)?[ \t]*\n(.*?)```", re.S)


def extract_code(response: str) -> str:
    """The last fenced code block, else the whole response (models often answer with bare code)."""
    blocks = _FENCE_RE.findall(response)
    return blocks[-1] if blocks else response


# ---- values across the boundary (these three functions also run inside the sandbox: stdlib only) ---------
def _encode(x, _type=type, _hex=int.__format__, _frepr=float.__repr__, _items=dict.items):
    """`x` as nested tuples holding only exact str/bytes/bool, tagged by EXACT built-in type.

    Raises TypeError for anything else (subclasses, generators, objects, depth > 100). Never calls
    code of the value's own (no __eq__, __hash__, __repr__, __iter__ of a subclass). The defaults
    capture the built-ins when the harness is defined, before any solution runs.
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


def _decode(e):
    """Inverse of `_encode`, building fresh built-ins; raises ValueError/TypeError on a malformed value."""
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
            return {_decode(k): _decode(w) for k, w in v}
        make = {"list": list, "tuple": tuple, "set": set, "frozenset": frozenset}.get(tag)
        if make is not None:
            return make([_decode(x) for x in v])
    raise ValueError(f"malformed value tagged {tag!r}")


def _harness(spec):
    """Runs INSIDE the sandbox: load the solution, run each case, write one record per case.

    Records go to the fd named by $FORKRL_RESULT_FD as Python literals, one per line:
    ("value", i, encoded) | ("raised", i) | ("pass", i) | ("fail", i) | ("load_error", name) | ("done",).
    Everything it calls after the solution loads was bound before (patching builtins changes nothing).
    """
    import builtins
    import os

    fd = int(os.environ["FORKRL_RESULT_FD"])
    write, exit_, enc, dec, exec_, compile_ = os.write, os._exit, _encode, _decode, exec, compile
    rep, utf8, type_, str_, len_, getpid = repr, str.encode, type, str, len, os.getpid
    pristine = dict(vars(builtins))
    me = getpid()

    def put(*rec):
        if getpid() != me:  # a copy forked by the solution: only the process we started reports
            exit_(0)
        data = utf8(rep(rec) + "\n")
        try:
            if write(fd, data) != len_(data):
                exit_(3)
        except BaseException:  # over the output cap: the parent sees a missing record
            exit_(3)

    def clean(fn):
        """Unparsed cases see return values only as fresh built-ins: no __eq__ tricks reach them."""
        return lambda *a, **k: dec(enc(fn(*a, **k)))

    func_type = type_(put)
    items = [(it[0], it[1], [dec(a) for a in it[2]], {k: dec(v) for k, v in it[3]}) if it[0] == "call" else it
             for it in spec["items"]]  # inputs built now, with the built-ins untouched
    g = {"__name__": "solution"}
    try:
        exec_(compile_(spec["solution"], "solution.py", "exec"), g)
        exec_(compile_(spec["preamble"], "tests.py", "exec"), g)
        cand = g[spec["entry"]] if spec["entry"] else None
    except BaseException as e:
        name = type_(e).__name__
        put("load_error", name if type_(name) is str_ else "?")
        exit_(0)
    t = dict(g)
    t["__builtins__"] = pristine
    if cand is not None:
        t["candidate"] = clean(cand)
    i = 0
    for item in items:
        if item[0] == "call":
            name, args, kwargs = item[1], item[2], item[3]
            try:
                fn = cand if name is None else (g[name] if name in g else pristine[name])
                rec = ("value", i, enc(fn(*args, **kwargs)))
            except BaseException:
                rec = ("raised", i)
            put(*rec)
            i += 1
            continue
        src, is_case, wrap = item[1], item[2], item[3]
        for w in wrap:
            if w in g and type_(g[w]) is func_type:
                t[w] = clean(g[w])
        try:
            exec_(compile_(src, "tests.py", "exec"), t)
            ok = True
        except BaseException:
            ok = False
        if is_case:
            put("pass" if ok else "fail", i)
            i += 1
    put("done")
    exit_(0)  # no atexit handlers, finalizers or buffered prints of the solution's run after "done"


_HARNESS_SRC = "\n\n".join(inspect.getsource(f) for f in (_encode, _decode, _harness))


# ---- parsing test cases here, in the parent -----------------------------------------------------------------
class _NotLiteral(Exception):
    pass


_BINOPS = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv,
           ast.FloorDiv: operator.floordiv, ast.Mod: operator.mod, ast.Pow: operator.pow}
_UNOPS = {ast.USub: operator.neg, ast.UAdd: operator.pos, ast.Not: operator.not_, ast.Invert: operator.invert}


def _literal(node: ast.expr) -> Any:
    """The value of a literal expression: constants, containers and arithmetic on them (`3 * 19`,
    `2.0 / 3.0`, `'ab' + 'c'`). Raises _NotLiteral for names, calls, comprehensions, huge products."""
    if isinstance(node, ast.Constant) and not isinstance(node.value, type(...)):
        return node.value
    if isinstance(node, (ast.List, ast.Tuple, ast.Set)):
        items = [_literal(e) for e in node.elts]
        return {ast.List: list, ast.Tuple: tuple, ast.Set: set}[type(node)](items)
    if isinstance(node, ast.Dict) and None not in node.keys:
        return {_literal(k): _literal(v) for k, v in zip(node.keys, node.values)}
    if isinstance(node, ast.UnaryOp) and type(node.op) in _UNOPS:
        return _UNOPS[type(node.op)](_literal(node.operand))
    if isinstance(node, ast.BinOp) and type(node.op) in _BINOPS:
        a, b = _literal(node.left), _literal(node.right)
        # bounds on the result, not on each operand: ('ab' * 100_000) * 100_000 would be 20 GB, and
        # ((2 ** 1024) ** 1024) ** 1024 hours of the judge's time
        if isinstance(node.op, ast.Pow) and not (isinstance(b, (int, float)) and abs(b) <= 1024):
            raise _NotLiteral
        if isinstance(node.op, ast.Pow) and isinstance(a, int) and a.bit_length() * abs(b) > 65_536:
            raise _NotLiteral
        if isinstance(node.op, ast.Mult) and any(isinstance(x, (str, bytes, list, tuple)) for x in (a, b)):
            seq, times = (a, b) if isinstance(a, (str, bytes, list, tuple)) else (b, a)
            if isinstance(times, int) and len(seq) * times > 100_000:
                raise _NotLiteral
        try:
            return _BINOPS[type(node.op)](a, b)
        except Exception:
            raise _NotLiteral from None
    raise _NotLiteral


class Call(NamedTuple):
    """A call of the function under test, with inputs evaluated here."""

    name: str | None  # None: HumanEval's `candidate`
    args: list
    kwargs: dict


def _call(node: ast.expr, candidate: str | None) -> Call | None:
    """`f(<literals>)`: for HumanEval only `candidate(...)`, for assert lists any plain name."""
    if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)):
        return None
    if candidate is not None and node.func.id != candidate:
        return None
    try:
        if any(isinstance(a, ast.Starred) for a in node.args) or any(k.arg is None for k in node.keywords):
            return None
        args = [_literal(a) for a in node.args]
        kwargs = {k.arg: _literal(k.value) for k in node.keywords}
    except _NotLiteral:
        return None
    return Call(None if candidate else node.func.id, args, kwargs)


def _safe(judge: Callable[[Any], bool]) -> Callable[[Any], bool]:
    """A judge that says False instead of raising (e.g. `abs("x" - 1)`)."""
    def run(value: Any) -> bool:
        try:
            return bool(judge(value))
        except Exception:
            return False
    return run


def _is_fn(node: ast.expr, names: tuple[str, ...]) -> bool:
    """Is `node` a call of one of `names` ("abs", "math.fabs", ...)?"""
    if not isinstance(node, ast.Call):
        return False
    f = node.func
    if isinstance(f, ast.Attribute) and isinstance(f.value, ast.Name):
        return f"{f.value.id}.{f.attr}" in names
    return isinstance(f, ast.Name) and f.id in names


def _parse_test(test: ast.expr, cand: str | None) -> tuple[Call, Callable[[Any], bool]] | None:
    """(call, judge) for the assert forms this module can judge itself, else None."""
    if call := _call(test, cand):
        return call, bool
    if isinstance(test, ast.UnaryOp) and isinstance(test.op, ast.Not) and (call := _call(test.operand, cand)):
        return call, operator.not_
    if _is_fn(test, ("math.isclose",)) and len(test.args) == 2 and (call := _call(test.args[0], cand)):
        try:
            want = _literal(test.args[1])
            tol = {k.arg: _literal(k.value) for k in test.keywords if k.arg in ("rel_tol", "abs_tol")}
        except _NotLiteral:
            return None
        if len(tol) == len(test.keywords):
            return call, lambda v: math.isclose(v, want, **tol)
    if not (isinstance(test, ast.Compare) and len(test.ops) == 1):
        return None
    left, op, right = test.left, test.ops[0], test.comparators[0]
    try:
        if isinstance(op, (ast.Eq, ast.NotEq)):
            for a, b in ((left, right), (right, left)):
                if call := _call(a, cand):
                    want = _literal(b)
                    return call, (lambda v: v == want) if isinstance(op, ast.Eq) else (lambda v: v != want)
        singleton = isinstance(right, ast.Constant) and right.value in (None, True, False)
        if isinstance(op, (ast.Is, ast.IsNot)) and singleton:
            if call := _call(left, cand):
                want = right.value
                return call, (lambda v: v is want) if isinstance(op, ast.Is) else (lambda v: v is not want)
        if isinstance(op, (ast.Lt, ast.LtE)) and _is_fn(left, ("abs", "math.fabs")) and len(left.args) == 1:
            diff, eps = left.args[0], _literal(right)
            if isinstance(diff, ast.BinOp) and isinstance(diff.op, ast.Sub):
                for a, b in ((diff.left, diff.right), (diff.right, diff.left)):
                    if call := _call(a, cand):  # HumanEval's float tolerance
                        want = _literal(b)
                        if isinstance(op, ast.Lt):
                            return call, lambda v: abs(v - want) < eps
                        return call, lambda v: abs(v - want) <= eps
    except _NotLiteral:
        return None
    return None


@dataclass(frozen=True)
class _Case:
    """One statement of the tests: a judged-here case (`call` and `judge` set), an unparsed case, or
    (is_case False) a statement that sets up later ones (imports, assignments)."""

    src: str
    is_case: bool
    call: Call | None = None
    judge: Callable[[Any], bool] | None = None
    wrap: tuple[str, ...] = ()

    def item(self) -> tuple:
        """What the harness gets: inputs only, never the expected value."""
        if self.call is not None:
            name, args, kwargs = self.call
            return ("call", name, [_encode(a) for a in args], [(k, _encode(v)) for k, v in kwargs.items()])
        return ("stmt", self.src, self.is_case, list(self.wrap))


def _statement(stmt: ast.stmt, src: str, cand: str | None) -> _Case:
    if not _is_case(stmt):
        return _Case(src, False)
    parsed = _parse_test(stmt.test, cand) if isinstance(stmt, ast.Assert) else None
    if parsed is not None:
        try:
            _Case(src, True, *parsed).item()  # inputs must be encodable (e.g. not a complex number)
            return _Case(src, True, parsed[0], _safe(parsed[1]))
        except TypeError:
            pass
    called = {n.func.id for n in ast.walk(stmt) if isinstance(n, ast.Call) and isinstance(n.func, ast.Name)}
    return _Case(src, True, wrap=tuple(sorted(called)) if cand is None else ())


def _is_case(stmt: ast.stmt) -> bool:
    """A statement holding a real assert; HumanEval's trailing `assert True, "..."` checks nothing."""
    return any(isinstance(n, ast.Assert) and not (isinstance(n.test, ast.Constant) and n.test.value)
               for n in ast.walk(stmt))


def _humaneval_cases(test: str) -> tuple[str, list[_Case]]:
    """Split HumanEval's check(candidate) into (module preamble, its statements as cases)."""
    tree = ast.parse(test)
    preamble, body = [], None
    for node in tree.body:
        if isinstance(node, ast.FunctionDef) and node.name == "check":
            body = node.body
        else:
            preamble.append(ast.get_source_segment(test, node) or "")
    if body is None:
        raise ValueError("test defines no check(candidate)")
    return "\n".join(preamble), [_statement(s, ast.unparse(s), "candidate") for s in body]


def _assert_list_cases(tests: list[str]) -> list[_Case]:
    out = []
    for src in tests:
        body = ast.parse(src).body
        out.append(_statement(body[0], src, None) if len(body) == 1 else _Case(src, True))
    return out


# ---- judging the records -----------------------------------------------------------------------------------
class _ProtocolViolation(Exception):
    pass


def _records(raw: bytes) -> list[tuple]:
    lines = raw.split(b"\n")
    lines.pop()  # after the last newline: nothing, or a record cut short by the output cap or a kill
    out = []
    for line in lines:
        try:
            rec = ast.literal_eval(line.decode("utf-8"))
        except Exception:
            raise _ProtocolViolation from None
        if type(rec) is not tuple or not rec:
            raise _ProtocolViolation
        out.append(rec)
    return out


def _is_index(x: Any, expected: int, n: int) -> bool:
    """The next case's index, as a real int (True is not 1 here)."""
    return type(x) is int and x == expected < n


def _tally(records: list[tuple], cases: list[_Case]) -> tuple[int, bool, str | None]:
    """(cases passed, saw "done", load error); raises _ProtocolViolation on anything the honest
    harness would not have written: records out of order, twice, unknown, or after the end."""
    judged = [c for c in cases if c.is_case]
    seen = passed = 0
    done, load_error = False, None
    for rec in records:
        kind = rec[0]
        if done or load_error is not None:
            raise _ProtocolViolation
        if kind == "done" and len(rec) == 1 and seen == len(judged):
            done = True
        elif kind == "load_error" and len(rec) == 2 and type(rec[1]) is str and seen == 0:
            load_error = rec[1][:60]
        elif kind in ("value", "raised", "pass", "fail") and len(rec) >= 2 and _is_index(rec[1], seen, len(judged)):
            case = judged[seen]
            if kind == "value" and len(rec) == 3 and case.judge is not None:
                try:
                    value = _decode(rec[2])
                except Exception:  # the honest harness never writes a malformed value
                    raise _ProtocolViolation from None
                passed += case.judge(value)
            elif kind == "raised" and len(rec) == 2 and case.judge is not None:
                pass
            elif kind in ("pass", "fail") and len(rec) == 2 and case.judge is None:
                passed += kind == "pass"
            else:
                raise _ProtocolViolation
            seen += 1
        else:
            raise _ProtocolViolation
    return passed, done, load_error


# ---- scoring ------------------------------------------------------------------------------------------------
def _limits(cfg: CodeRewardConfig, wall_s: float) -> Limits:
    return Limits(wall_s=wall_s, cpu_s=cfg.cpu_s, memory_bytes=cfg.memory_mb << 20, max_processes=cfg.max_processes,
                  max_output_bytes=cfg.max_output_bytes, max_open_files=cfg.max_open_files,
                  site_packages=cfg.site_packages, isolation=cfg.isolation)


def _score_asserts(sample: Sample, code: str, cfg: CodeRewardConfig, wall_s: float) -> Score:
    ans = sample.answer
    prompt = ans.get("prompt") or ""
    entry = ans.get("entry_point")
    if "test" in ans:
        preamble, cases = _humaneval_cases(ans["test"])
    else:
        preamble, cases = "", _assert_list_cases(ans["tests"])
    # a response that restates the function is used whole; a bare body continues the prompt's def
    if entry and re.search(rf"def\s+{re.escape(entry)}\s*\(", code):
        solution = prompt + "\n" + code
    else:
        solution = prompt + code
    n = sum(c.is_case for c in cases)
    if n == 0:
        raise ValueError("no test cases")
    spec = {"solution": solution, "preamble": preamble, "entry": entry if "test" in ans else None,
            "items": [c.item() for c in cases]}
    res = run_python(f"{_HARNESS_SRC}\n\n_harness({spec!r})\n", "", _limits(cfg, wall_s), channel=True)
    try:
        passed, done, load_error = _tally(_records(res.channel), cases)
    except _ProtocolViolation:
        return Score(sample.uid, 0.0, False, "protocol violation")
    if load_error is not None:
        reason = f"load_error {load_error}"
    elif done:
        reason = "ok" if passed == n else "tests_failed"
    else:
        reason = res.status if res.status != "ok" else "no_verdict"  # died mid-run: passes so far count
    unparsed = sum(c.is_case and c.judge is None for c in cases)
    if unparsed:
        reason += f" ({unparsed} unparsed)"
    return Score(sample.uid, min(1.0, max(0.0, passed / n)), passed == n and done, reason)


def _score_stdio(sample: Sample, code: str, cfg: CodeRewardConfig, wall_s: float) -> Score:
    import time

    ins, outs = sample.answer["inputs"], sample.answer["outputs"]
    if not ins or len(ins) != len(outs):
        raise ValueError("inputs/outputs must be non-empty and of equal length")
    deadline, passed, reason = time.monotonic() + wall_s, 0, "ok"
    for stdin, want in zip(ins, outs):
        left = deadline - time.monotonic()
        if left <= 0:
            reason = "timeout"
            break
        res = run_python(code, stdin, _limits(cfg, left))
        if res.status == "ok" and _same_output(res.stdout, want):
            passed += 1
        elif reason == "ok":
            reason = "tests_failed" if res.status == "ok" else res.status
    n = len(ins)
    return Score(sample.uid, passed / n, passed == n, reason)


def _same_output(got: str, want: str) -> bool:
    norm = lambda s: [line.rstrip() for line in s.strip().splitlines()]  # noqa: E731
    return norm(got) == norm(want)


def score_code(sample: Sample, cfg: CodeRewardConfig, wall_s: float) -> Score:
    """Pass fraction of the sample's tests; `wall_s` bounds all of the sample's runs together."""
    if not isinstance(sample.answer, dict):
        raise TypeError(f"code answer must be a dict, got {type(sample.answer).__name__}")
    code = extract_code(sample.response or "")
    if "inputs" in sample.answer:
        return _score_stdio(sample, code, cfg, wall_s)
    return _score_asserts(sample, code, cfg, wall_s)

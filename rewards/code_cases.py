"""Test cases of assert-shaped code tasks, read here in the parent (never in the sandbox).

Each top-level statement of HumanEval's check(candidate), or each string of an assert list, becomes a
`Case`. A case of the form `assert candidate(<literals>) == <literal>` (also `!=`, `is None/True/False`,
bare or `not candidate(...)`, `abs(candidate(...) - x) < eps`, `math.isclose(candidate(...), x, ...)`,
and `tuple/list/set/sorted/len(candidate(...)) == ...` where the test does not rebind that name) is
parsed here with `ast`: inputs and expected value are evaluated here from the literals, and only the
inputs enter the sandbox. Other statements run inside, in the harness's test process
(`inside_sandbox_harness`), where the names listed by `proxy_names` reach the candidate.

A case that references none of the candidate's names checks nothing about the answer: a problem with
one is "unjudgeable" (`unjudgeable_cases`), reported, and by config skipped rather than scored. A case
that compares the candidate with itself (`self_compared_cases`) checks nothing either: it is excluded
from the score and counted in the reason.
"""

from __future__ import annotations

import ast
import builtins
import math
import operator
from dataclasses import dataclass
from typing import Any, Callable, NamedTuple

from .inside_sandbox_harness import encode

# builtins the parent may apply itself to a candidate's value or to a literal, where the test leaves them be
_WRAPPERS = {"tuple": tuple, "list": list, "set": set, "frozenset": frozenset, "sorted": sorted, "len": len}
_BUILTINS = frozenset(dir(builtins))


def _wrapper(node: ast.expr, free: frozenset[str]) -> Callable[[Any], Any] | None:
    """The builtin of `W(x)` for a W in `free` (one positional argument, no keywords), else None."""
    if (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in free
            and len(node.args) == 1 and not node.keywords and not isinstance(node.args[0], ast.Starred)):
        return _WRAPPERS[node.func.id]
    return None


class _NotLiteral(Exception):
    pass


_BINOPS = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv,
           ast.FloorDiv: operator.floordiv, ast.Mod: operator.mod, ast.Pow: operator.pow}
_UNOPS = {ast.USub: operator.neg, ast.UAdd: operator.pos, ast.Not: operator.not_, ast.Invert: operator.invert}


def _literal(node: ast.expr, free: frozenset[str] = frozenset()) -> Any:
    """The value of a literal expression: constants, containers and arithmetic on them (`3 * 19`,
    `2.0 / 3.0`, `'ab' + 'c'`), and a wrapper of `free` on one (`tuple([1, 2])`). Raises _NotLiteral
    for names, other calls, comprehensions, huge products."""
    if isinstance(node, ast.Constant) and not isinstance(node.value, type(...)):
        return node.value
    if (wrap := _wrapper(node, free)) is not None:
        try:
            return wrap(_literal(node.args[0], free))
        except TypeError:  # e.g. sorted([1, "a"])
            raise _NotLiteral from None
    if isinstance(node, (ast.List, ast.Tuple, ast.Set)):
        items = [_literal(e, free) for e in node.elts]
        return {ast.List: list, ast.Tuple: tuple, ast.Set: set}[type(node)](items)
    if isinstance(node, ast.Dict) and None not in node.keys:
        return {_literal(k, free): _literal(v, free) for k, v in zip(node.keys, node.values)}
    if isinstance(node, ast.UnaryOp) and type(node.op) in _UNOPS:
        return _UNOPS[type(node.op)](_literal(node.operand, free))
    if isinstance(node, ast.BinOp) and type(node.op) in _BINOPS:
        a, b = _literal(node.left, free), _literal(node.right, free)
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


def _call(node: ast.expr, names: frozenset[str]) -> Call | None:
    """`f(<literals>)` for an f in `names` (HumanEval: `candidate`; assert lists: the proxied names)."""
    if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in names):
        return None
    try:
        if any(isinstance(a, ast.Starred) for a in node.args) or any(k.arg is None for k in node.keywords):
            return None
        args = [_literal(a) for a in node.args]
        kwargs = {k.arg: _literal(k.value) for k in node.keywords}
    except _NotLiteral:
        return None
    return Call(None if node.func.id == "candidate" else node.func.id, args, kwargs)


def _wrapped_call(node: ast.expr, names: frozenset[str], free: frozenset[str]) -> tuple[Call, Callable] | None:
    """(call, what the test applies to its value): `f(...)` -> identity, `tuple(f(...))` -> tuple."""
    if call := _call(node, names):
        return call, _identity
    if (wrap := _wrapper(node, free)) is not None and (call := _call(node.args[0], names)):
        return call, wrap
    return None


def _identity(v: Any) -> Any:
    return v


def _safe(judge: Callable[[Any], bool]) -> Callable[[Any], bool]:
    """A judge that says False instead of raising (e.g. `abs("x" - 1)`, `tuple(None)`)."""
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


def _parse_test(test: ast.expr, names: frozenset[str], free: frozenset[str] = frozenset()
                ) -> tuple[Call, Callable[[Any], bool]] | None:
    """(call, judge) for the assert forms this module can judge itself, else None."""
    if call := _call(test, names):
        return call, bool
    if isinstance(test, ast.UnaryOp) and isinstance(test.op, ast.Not) and (call := _call(test.operand, names)):
        return call, operator.not_
    if _is_fn(test, ("math.isclose",)) and len(test.args) == 2 and (call := _call(test.args[0], names)):
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
                if found := _wrapped_call(a, names, free):
                    (call, w), want = found, _literal(b, free)
                    if isinstance(op, ast.Eq):
                        return call, lambda v: w(v) == want
                    return call, lambda v: w(v) != want
        singleton = isinstance(right, ast.Constant) and right.value in (None, True, False)
        if isinstance(op, (ast.Is, ast.IsNot)) and singleton:
            if call := _call(left, names):
                want = right.value
                return call, (lambda v: v is want) if isinstance(op, ast.Is) else (lambda v: v is not want)
        if isinstance(op, (ast.Lt, ast.LtE)) and _is_fn(left, ("abs", "math.fabs")) and len(left.args) == 1:
            diff, eps = left.args[0], _literal(right)
            if isinstance(diff, ast.BinOp) and isinstance(diff.op, ast.Sub):
                for a, b in ((diff.left, diff.right), (diff.right, diff.left)):
                    if call := _call(a, names):  # HumanEval's float tolerance
                        want = _literal(b)
                        if isinstance(op, ast.Lt):
                            return call, lambda v: abs(v - want) < eps
                        return call, lambda v: abs(v - want) <= eps
    except _NotLiteral:
        return None
    return None


@dataclass(frozen=True)
class Case:
    """One statement of the tests: a judged-here case (`call` and `judge` set), an unparsed case, or
    (is_case False) a statement that sets up later ones (imports, assignments)."""

    src: str
    is_case: bool
    call: Call | None = None
    judge: Callable[[Any], bool] | None = None

    def item(self) -> tuple:
        """What the harness gets: inputs only, never the expected value."""
        if self.call is not None:
            name, args, kwargs = self.call
            return ("call", name, [encode(a) for a in args], [(k, encode(v)) for k, v in kwargs.items()])
        return ("stmt", self.src, self.is_case)


def _statement(stmt: ast.stmt, src: str, names: frozenset[str], free: frozenset[str] = frozenset()) -> Case:
    if not _is_case(stmt):
        return Case(src, False)
    parsed = _parse_test(stmt.test, names, free) if isinstance(stmt, ast.Assert) else None
    if parsed is not None:
        try:
            Case(src, True, parsed[0]).item()  # inputs must be encodable (e.g. not a complex number)
            return Case(src, True, parsed[0], _safe(parsed[1]))
        except TypeError:
            pass
    return Case(src, True)


def _is_case(stmt: ast.stmt) -> bool:
    """A statement holding a real assert; HumanEval's trailing `assert True, "..."` checks nothing."""
    return any(isinstance(n, ast.Assert) and not (isinstance(n.test, ast.Constant) and n.test.value)
               for n in ast.walk(stmt))


def _bound(nodes: list[ast.AST]) -> set[str]:
    """Every name that `nodes` bind anywhere: assignments, loop targets, defs, imports, arguments."""
    out: set[str] = set()
    for node in (n for top in nodes for n in ast.walk(top)):
        if isinstance(node, ast.Name) and isinstance(node.ctx, (ast.Store, ast.Del)):
            out.add(node.id)
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            out.add(node.name)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            out |= {(a.asname or a.name).split(".")[0] for a in node.names}
        elif isinstance(node, ast.arg):
            out.add(node.arg)
    return out


def _is_stub(node: ast.stmt) -> bool:
    """A def whose body is only a docstring, `pass` or `...`: the prompt asks the candidate to write it."""
    return isinstance(node, (ast.FunctionDef, ast.ClassDef)) and all(
        isinstance(s, ast.Pass) or (isinstance(s, ast.Expr) and isinstance(s.value, ast.Constant)) for s in node.body)


def proxy_names(setup: str, statements: list[str], entry: str | None) -> list[str]:
    """The names the test process must send to the candidate: the entry point, and every name the test
    statements read that neither the setup (prompt + test preamble; stubs aside), the statements
    themselves nor the builtins provide."""
    top = ast.parse(setup).body
    provided = {n for s in top if not _is_stub(s) for n in _bound([s])}
    trees = [ast.parse(s) for s in statements]
    local = _bound(trees)
    read = {n.id for t in trees for n in ast.walk(t) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)}
    names = {n for n in read - local - provided - _BUILTINS if n != "candidate"}
    return sorted(names | ({entry} if entry else set()))


def unjudgeable_cases(cases: list[Case], proxies: list[str]) -> list[str]:
    """The sources of run-inside cases that read none of the candidate's names: they pass or fail
    whatever the answer, so a problem holding one cannot be judged safely."""
    mine = {*proxies, "candidate"}
    out = []
    for c in cases:
        if c.is_case and c.call is None:
            read = {n.id for n in ast.walk(ast.parse(c.src)) if isinstance(n, ast.Name)}
            if not read & mine:
                out.append(c.src)
    return out


_BINDERS = {ast.Assign: ("targets", "value"), ast.AnnAssign: ("target", "value"), ast.AugAssign: ("target", "value"),
            ast.NamedExpr: ("target", "value"), ast.For: ("target", "iter"), ast.AsyncFor: ("target", "iter"),
            ast.comprehension: ("target", "iter"), ast.withitem: ("optional_vars", "context_expr")}


def _reads(node: ast.AST | None) -> set[str]:
    return {n.id for n in ast.walk(node) if isinstance(n, ast.Name)} if node is not None else set()


_LOOPS = (ast.For, ast.AsyncFor, ast.comprehension)


def _taint(tree: ast.AST, tainted: set[str]) -> None:
    """Add to `tainted` every name `tree` binds from a value that reads a tainted name (to a fixed point:
    `y = sort_third(x)` then `z = y` taints both). A loop taints a single target only: in
    `for a, b in zip(map(f, xs), ys)` b is the test's own."""
    while True:
        grown = set()
        for node in ast.walk(tree):
            if (fields := _BINDERS.get(type(node))) is not None:
                target, value = (getattr(node, f) for f in fields)
                if isinstance(node, _LOOPS) and not isinstance(target, ast.Name):
                    continue
                if _reads(value) & tainted:
                    for t in target if isinstance(target, list) else [target]:
                        grown |= {n.id for n in ast.walk(t) if isinstance(n, ast.Name)} if t is not None else set()
        if not grown - tainted:
            return
        tainted |= grown


def _compared(tree: ast.AST):
    """The operands of each comparison (and `math.isclose`) inside the asserts of `tree`."""
    for test in (n.test for n in ast.walk(tree) if isinstance(n, ast.Assert)):
        for node in ast.walk(test):
            if isinstance(node, ast.Compare):
                yield [node.left, *node.comparators]
            elif _is_fn(node, ("math.isclose", "isclose")):
                yield list(node.args)


def _compares_with_itself(tree: ast.AST, tainted: set[str]) -> bool:
    """Does an assert in `tree` compare two things that both come from the candidate (`tuple(candidate(x))
    == tuple(sort_third(x))` where sort_third is the prompt's stub, `add(2, 2) == add(1, 3)`)?"""
    return any(sum(bool(_reads(side) & tainted) for side in sides) >= 2 for sides in _compared(tree))


def self_compared_cases(cases: list[Case], proxies: list[str]) -> list[Case]:
    """The run-inside cases whose expected side also comes from the candidate: a wrong answer matches
    itself (`return []` passes `tuple(candidate(x)) == tuple(sort_third(x))`), so they judge nothing
    and are excluded from the score. Names bound from a candidate's value count as the candidate's."""
    tainted, out = {*proxies, "candidate"}, []
    for c in cases:
        tree = ast.parse(c.src)
        _taint(tree, tainted)
        if c.is_case and c.call is None and _compares_with_itself(tree, tainted):
            out.append(c)
    return out


def humaneval_cases(test: str, prompt: str, entry: str) -> tuple[str, list[str], list[Case]]:
    """HumanEval's check(candidate) as (test-process setup: prompt + module preamble, proxies, cases)."""
    tree = ast.parse(test)
    preamble, body = [], None
    for node in tree.body:
        if isinstance(node, ast.FunctionDef) and node.name == "check":
            body = node.body
        else:
            preamble.append(ast.get_source_segment(test, node) or "")
    if body is None:
        raise ValueError("test defines no check(candidate)")
    setup = prompt + "\n" + "\n".join(preamble)
    free = frozenset(_WRAPPERS) - _bound([tree])
    sources = [ast.unparse(s) for s in body]
    cases = [_statement(s, src, frozenset({"candidate"}), free) for s, src in zip(body, sources)]
    return setup, proxy_names(setup, sources, entry), cases


def assert_list_cases(tests: list[str], prompt: str, entry: str | None) -> tuple[str, list[str], list[Case]]:
    """An assert list as (setup: the prompt, proxies, one case per string)."""
    proxies = proxy_names(prompt, tests, entry)
    free = frozenset(_WRAPPERS) - _bound([ast.parse(prompt), *map(ast.parse, tests)])
    out = []
    for src in tests:
        body = ast.parse(src).body
        out.append(_statement(body[0], src, frozenset(proxies), free) if len(body) == 1 else Case(src, True))
    return prompt, proxies, out

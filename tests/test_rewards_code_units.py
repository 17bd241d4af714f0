"""The code verifier's parts one at a time, without a sandbox: the value encoding, the parsing of test
statements into (call, judge), the harness (run as a plain subprocess, on a pipe), the reading of its
records and the scoring around the sandbox run. Expected values are written out."""

import ast
import os
import subprocess
import sys

import pytest

import forkrl.rewards.code_cases as cc
import forkrl.rewards.code_records as cr
import forkrl.rewards.code_verifier as cv
import forkrl.rewards.inside_sandbox_harness as harness
from forkrl.rewards.code_cases import Call, Case, _NotLiteral
from forkrl.rewards.code_records import ProtocolViolation
from forkrl.rewards.config import CodeRewardConfig
from forkrl.rewards.sandbox import RunResult
from forkrl.rewards.types import Sample, Score


def _nest(make, depth: int, inner=0):
    """`inner` wrapped in `depth` containers built by `make` (a one-item container of its argument)."""
    for _ in range(depth):
        inner = make(inner)
    return inner


# ---- values across the boundary --------------------------------------------------------------------
def test_encode_tags_each_exact_type():
    value = [None, True, 7, 1.5, "s", b"b", (1,), {2}, frozenset({3}), {"k": [4]}]
    assert harness.encode(value) == ("list", [
        ("none",), ("bool", True), ("int", "7"), ("float", "1.5"), ("str", "s"), ("bytes", b"b"),
        ("tuple", [("int", "1")]), ("set", [("int", "2")]), ("frozenset", [("int", "3")]),
        ("dict", [(("str", "k"), ("list", [("int", "4")]))]),
    ])
    assert harness.decode(harness.encode(value)) == value


@pytest.mark.parametrize("outer", ["list", "tuple", "set", "frozenset", "dict key", "dict value"])
def test_encode_depth_limit_counts_every_container_kind(outer):
    """100 levels below the top are encoded, 101 are refused; each container kind adds one level."""
    inner_tuple = lambda d: _nest(lambda x: (x,), d)  # noqa: E731 - hashable, for sets and keys
    inner_list = lambda d: _nest(lambda x: [x], d)  # noqa: E731
    wrap = {
        "list": lambda d: [inner_tuple(d)],
        "tuple": lambda d: (inner_list(d),),
        "set": lambda d: {inner_tuple(d)},
        "frozenset": lambda d: frozenset({inner_tuple(d)}),
        "dict key": lambda d: {inner_tuple(d): 0},
        "dict value": lambda d: {0: inner_list(d)},
    }[outer]
    harness.encode(wrap(99))  # the innermost int sits at depth 100
    with pytest.raises(TypeError, match="nested too deep"):
        harness.encode(wrap(100))


@pytest.mark.parametrize("encoded, value", [
    (("none",), None), (("bool", False), False), (("str", "a"), "a"), (("bytes", b"a"), b"a"),
    (("dict", [(("int", "1"), ("str", "x"))]), {1: "x"}), (("int", "-ff"), -255),
])
def test_decode_builds_the_value(encoded, value):
    got = harness.decode(encoded)
    assert got == value and type(got) is type(value)


@pytest.mark.parametrize("encoded", [
    ["none"],  # a list, not a tuple
    ("int",), ("none", 1),  # no payload / a payload where none belongs
    ("bool", "x"), ("int", True), ("str", b"x"), ("bytes", "x"),  # payload of the wrong type
])
def test_decode_refuses_malformed_values(encoded):
    with pytest.raises(ValueError, match="malformed value"):
        harness.decode(encoded)


# ---- literals and calls ------------------------------------------------------------------------------
def _expr(src: str) -> ast.expr:
    return ast.parse(src, mode="eval").body


LITERALS = [
    ("{1: 2}", {1: 2}), ("1 + 2", 3), ("-3", -3), ("2 ** 1024", 2 ** 1024), ("2 ** -1024", 2.0 ** -1024),
    ("1 + 2000", 2001), ("'%d' % 200001", "200001"), ("'ab' * 3", "ababab"),
    ("'a' * 100_000", "a" * 100_000), ("50_000 * 'ab'", "ab" * 50_000),  # 100 000 items at most
    ("(2 ** 63) ** 1024", 2 ** (63 * 1024)),  # 64 bits * 1024 = 65 536 bits at most
]


@pytest.mark.parametrize("src, value", LITERALS, ids=[src for src, _ in LITERALS])
def test_literal_values(src, value):
    assert cc._literal(_expr(src)) == value


@pytest.mark.parametrize("src", [
    "x", "-x", "x + 1", "2 ** 1025", "2 ** -1025", "1 / 0", "...", "{**d}",
    "'a' * 100_001", "100_001 * [0]", "'ab' * 50_001", "('a' * 100_000) * 2", "[0] * 1000 * 1000",
    "(2 ** 64) ** 1024", "(" + " * ".join(["2 ** 1024"] * 64) + ") ** 1",  # 65 537 bits
], ids=lambda src: src[:40])
def test_literal_refuses_what_is_not_a_small_literal(src):
    with pytest.raises(_NotLiteral):
        cc._literal(_expr(src))


CAND = frozenset({"candidate"})


@pytest.mark.parametrize("src, names, call", [
    ("candidate(1, k=[2])", CAND, Call(None, [1], {"k": [2]})),
    ("f(1)", frozenset({"f"}), Call("f", [1], {})),
    ("f(1)", CAND, None),  # HumanEval: only candidate(...)
    ("sorted([1])", frozenset({"f"}), None),  # assert lists: only the candidate's names, not a builtin
    ("f(*[1])", frozenset({"f"}), None),
    ("f(**{'a': 1})", frozenset({"f"}), None),
    ("f(x)", frozenset({"f"}), None),
    ("m.f(1)", frozenset({"f"}), None),
])
def test_call_of_literals(src, names, call):
    assert cc._call(_expr(src), names) == call


def test_is_fn_matches_names_and_dotted_names_only():
    assert cc._is_fn(_expr("abs(x)"), ("abs",)) is True
    assert cc._is_fn(_expr("math.fabs(x)"), ("abs", "math.fabs")) is True
    assert cc._is_fn(_expr("round(x)"), ("abs",)) is False
    assert cc._is_fn(_expr("fns[0](x)"), ("abs",)) is False
    assert cc._is_fn(_expr("abs"), ("abs",)) is False  # a name, not a call


# ---- assert forms judged here: (test expression) -> call and verdicts on returned values ----------------
C1 = Call(None, [1], {})


@pytest.mark.parametrize("src, verdicts", [
    ("candidate(1)", [(0, False), (3, True)]),
    ("not candidate(1)", [(0, True), (3, False)]),
    ("candidate(1) == 2", [(2, True), (3, False)]),
    ("2 == candidate(1)", [(2, True), (3, False)]),
    ("candidate(1) != 2", [(2, False), (3, True)]),
    ("candidate(1) is None", [(None, True), (0, False)]),
    ("candidate(1) is not None", [(None, False), (0, True)]),
    ("candidate(1) is True", [(True, True), (1, False)]),
    ("candidate(1) is False", [(False, True), (0, False)]),
    ("math.isclose(candidate(1), 2.0)", [(2.0, True), (2.1, False)]),
    ("math.isclose(candidate(1), 2.0, rel_tol=0.1)", [(2.15, True), (2.3, False)]),
    ("math.isclose(candidate(1), 2.0, abs_tol=0.5)", [(2.45, True), (2.55, False)]),
    ("abs(candidate(1) - 2.0) < 0.5", [(2.0, True), (2.25, True), (2.5, False), (1.5, False)]),
    ("abs(2.0 - candidate(1)) < 0.5", [(2.0, True), (2.5, False)]),
    ("abs(candidate(1) - 2.0) <= 0.5", [(2.0, True), (2.5, True), (2.6, False), (1.4, False)]),
    ("math.fabs(candidate(1) - 2.0) < 0.5", [(2.0, True), (2.5, False)]),
])
def test_parse_test_judges_these_forms(src, verdicts):
    call, judge = cc._parse_test(_expr(src), CAND)
    assert call == C1
    assert [(v, judge(v)) for v, _ in verdicts] == verdicts


@pytest.mark.parametrize("src", [
    "math.isclose(candidate(1), 2.0, 0.5)",  # a positional tolerance: not read here
    "math.isclose(candidate(1), 2.0, foo=1)",
    "math.isclose(candidate(1))",
    "candidate(1) == 2 == 3",  # chained
    "0 < candidate(1) < 5",
    "candidate(1) and candidate(2)",
    "candidate(1) is x", "candidate(1) is 5",  # only None/True/False are judged by identity
    "candidate(1) < True",
    "x < candidate(1)",
    "round(candidate(1) - 2) < 1",  # not abs
    "abs(candidate(1) + 2) < 1",  # not a difference
    "abs(candidate(1) - 2, 3) < 1",
    "abs(candidate(1) - x) < 1",
    "candidate(1) == x",
])
def test_parse_test_leaves_other_forms_to_run_inside(src):
    assert cc._parse_test(_expr(src), CAND) is None


# ---- statements into cases ---------------------------------------------------------------------------
def _stmt(src: str) -> ast.stmt:
    return ast.parse(src).body[0]


def test_statements_become_judged_unparsed_or_setup_cases():
    judged = cc._statement(_stmt("assert candidate(1) == 2"), "src", CAND)
    assert (judged.src, judged.is_case, judged.call) == ("src", True, C1)
    assert (judged.judge(2), judged.judge(3), judged.judge(object())) == (True, False, False)
    assert cc._statement(_stmt("x = 1"), "x = 1", CAND) == Case("x = 1", False)
    assert cc._statement(_stmt("assert candidate(1j) == 2"), "s", CAND) == Case("s", True)  # no encoding
    loop = "for x in [1]:\n    assert all(f(y) for y in g(x))"
    assert cc._statement(_stmt(loop), "s", frozenset({"f"})) == Case("s", True)


@pytest.mark.parametrize("src, is_case", [
    ("assert x", True), ("x = 1", False), ("if x:\n    pass", False), ("assert True, 'done'", False),
    ("assert 1", False), ("if x:\n    assert y", True),
])
def test_is_case(src, is_case):
    assert cc._is_case(_stmt(src)) is is_case


def test_humaneval_cases_keep_the_prompt_and_preamble_and_split_check():
    setup, proxies, cases = cc.humaneval_cases(
        "import math\n\n\ndef helper():\n    return 1\n\n\ndef check(candidate):\n"
        "    x = 2\n    assert candidate(1) == 2\n    assert candidate(x) == 2\n    assert fn(3) == helper()\n",
        'def fn(a):\n    """doc"""\n', "fn")
    assert setup == 'def fn(a):\n    """doc"""\n\nimport math\ndef helper():\n    return 1'
    assert proxies == ["fn"]  # helper comes from the setup, x from the statements, fn is the entry point
    assert [(c.src, c.is_case, c.call) for c in cases] == [
        ("x = 2", False, None), ("assert candidate(1) == 2", True, C1), ("assert candidate(x) == 2", True, None),
        ("assert fn(3) == helper()", True, None)]
    with pytest.raises(ValueError, match="no check"):
        cc.humaneval_cases("def test(candidate):\n    assert candidate(1)\n", "", "f")


def test_assert_list_cases_parse_single_statements_only():
    setup, proxies, (one, two) = cc.assert_list_cases(["assert f(1) == 2", "x = 1; assert f(x) == 2"], "", None)
    assert (setup, proxies) == ("", ["f"])
    assert (one.src, one.is_case, one.call) == ("assert f(1) == 2", True, Call("f", [1], {}))
    assert two == Case("x = 1; assert f(x) == 2", True)


@pytest.mark.parametrize("setup, statements, entry, proxies", [
    ("", ["assert f(1) == g(2)"], None, ["f", "g"]),
    ("def g(x):\n    return x\n", ["assert f(1) == g(2)"], None, ["f"]),  # a helper of the prompt: the test's
    ('def f(x):\n    "doc"\n', ["assert f(1) == 2"], None, ["f"]),  # a stub of the prompt: the candidate's
    ("def f(x):\n    pass\n", ["assert f(1) == 2"], "f", ["f"]),
    ("", ["assert len(f([1])) == 1", "assert list(map(add, [1], [2])) == [3]"], None, ["add", "f"]),
    ("", ["for x in range(3):\n    assert h(x) == x", "y = 1", "assert y == 1"], None, ["h"]),
    ("import math", ["assert math.fabs(candidate(1)) < 1"], "fn", ["fn"]),
])
def test_proxy_names(setup, statements, entry, proxies):
    assert cc.proxy_names(setup, statements, entry) == proxies


def test_unjudgeable_cases_are_those_that_read_no_candidate_name():
    cases = [Case("assert candidate(1) == 2", True, C1, bool), Case("assert f(2) == 3", True),
             Case("assert 1 + 1 == 2", True), Case("x = f(1)", False), Case("import math", False),
             Case("for i in range(3):\n    assert i < 5", True)]
    assert cc.unjudgeable_cases(cases, ["f"]) == ["assert 1 + 1 == 2", "for i in range(3):\n    assert i < 5"]
    assert cc.unjudgeable_cases(cases[:2], ["f"]) == []


@pytest.mark.parametrize("statements, excluded", [
    (["assert tuple(candidate([1])) == tuple(sort_third([1]))"], [0]),  # sort_third: the prompt's stub, proxied
    (["assert add(2, 2) == add(1, 3)", "assert add(1, 2) == 3"], [0]),
    (["y = sort_third([1])", "z = y", "assert candidate([1]) == z"], [2]),  # through names, to a fixed point
    (["assert all(candidate(x) == sort_third(x) for x in [1, 2])"], [0]),  # inside a generator
    (["assert math.isclose(candidate(1), add(0, 1))"], [0]),
    (["assert candidate(1) < candidate(2) < 5"], [0]),  # any comparison of two candidate values
    (["for y in map(add, [1], [2]):\n    assert candidate(1) == y"], [0]),
    (["assert helper(candidate(1)) == 2"], []),  # helper is the test's own
    (["for a, b in zip(map(add, [1], [2]), [3]):\n    assert a == b"], []),  # b is the test's: a tuple target
    (["x = [1]", "assert candidate(x) == [1]"], []),
])
def test_self_compared_cases_are_those_whose_expected_side_is_the_candidates(statements, excluded):
    cases = [cc._statement(ast.parse(s).body[0], s, CAND) if len(ast.parse(s).body) == 1 else Case(s, True)
             for s in statements]
    got = cc.self_compared_cases(cases, ["sort_third", "add"])
    assert [statements.index(c.src) for c in got] == excluded


@pytest.mark.parametrize("name", ["StopIteration", "StopAsyncIteration", "GeneratorExit", "KeyboardInterrupt",
                                  "NoSuchError", 3])
def test_raise_as_never_raises_what_ends_a_loop_of_the_test(name):
    import builtins

    with pytest.raises(RuntimeError, match="the candidate raised"):
        harness._raise_as(name, vars(builtins))


def test_raise_as_raises_a_fresh_exception_of_the_builtin_class():
    import builtins

    with pytest.raises(ValueError, match="raised by the candidate"):
        harness._raise_as("ValueError", vars(builtins))


@pytest.mark.parametrize("response, entry, code", [
    ("```python3\ndef f():\n    return 1\n```", "f", "def f():\n    return 1\n"),
    ("```py\nx = 1\n```", None, "x = 1\n"),
    ("```Python \nx = 1\n```", None, "x = 1\n"),
    ("```\nx = 1\n```", None, "x = 1\n"),
    ("```python\r\ndef f():\r\n    return 1\r\n```\r\n", "f", "def f():\n    return 1\n"),
    ("```python\ndef f():\n    return 1\n```\nUse:\n```python\nprint(f())\n```", "f", "def f():\n    return 1\n"),
    ("```python\ndef f():\n    return 1\n```\nUse:\n```python\nprint(f())\n```", None, "print(f())\n"),
    ("```python\nprint(g())\n```", "f", "print(g())\n"),  # no block defines f: the last one
    ("def f():\n    return 1\n", "f", "def f():\n    return 1\n"),  # bare code
])
def test_extract_code(response, entry, code):
    assert cv.extract_code(response, entry) == code


@pytest.mark.parametrize("src, verdicts", [
    ("tuple(candidate(1)) == (1, 2)", [([1, 2], True), ((1, 2), True), ([2, 1], False), (None, False)]),
    ("tuple(candidate(1)) == tuple([1, 2])", [([1, 2], True), ([1], False)]),
    ("sorted(candidate(1)) == [1, 2]", [([2, 1], True), ([1, 3], False)]),
    ("set(candidate(1)) == {1, 2}", [([2, 1, 1], True), ([1], False)]),
    ("len(candidate(1)) == 2", [("ab", True), ("abc", False), (5, False)]),
    ("list(candidate(1)) != [1]", [((1,), False), ((2,), True)]),
    ("[1, 2] == list(candidate(1))", [((1, 2), True), ((2, 1), False)]),
])
def test_parse_test_applies_builtin_wrappers_the_test_leaves_alone(src, verdicts):
    call, judge = cc._parse_test(_expr(src), CAND, frozenset(cc._WRAPPERS))
    assert call == C1
    assert [(v, cc._safe(judge)(v)) for v, _ in verdicts] == verdicts


def test_wrappers_are_left_inside_where_the_test_rebinds_them():
    """HumanEval/38 assigns `str` in check(); a test that rebinds `tuple` keeps `tuple(...)` inside."""
    _, _, cases = cc.humaneval_cases("def check(candidate):\n    tuple = list\n    assert tuple(candidate(1)) == (1,)\n",
                                     "", "f")
    assert cases[1] == Case("assert tuple(candidate(1)) == (1,)", True)
    assert cc._parse_test(_expr("tuple(candidate(1)) == (1,)"), CAND) is None  # no wrappers: not parsed


# ---- the harness, as a plain subprocess ------------------------------------------------------------------
HARNESS_SRC = open(harness.__file__).read()


def _run_harness(spec: dict, close_reader: bool = False) -> tuple[int, list[tuple]]:
    """(exit code, records): the harness run by a plain interpreter (no sandbox), its result fd a pipe,
    the tests (all of `spec` but the solution) on a memfd as the sandbox passes them."""
    r, w = os.pipe()
    if close_reader:  # every write then fails (EPIPE): what a full result channel looks like to it
        os.close(r)
    tests = os.memfd_create("tests", 0)
    os.write(tests, repr({k: v for k, v in spec.items() if k != "solution"}).encode())
    os.lseek(tests, 0, os.SEEK_SET)
    env = {**os.environ, "FORKRL_RESULT_FD": str(w), "FORKRL_INPUT_FD": str(tests)}
    proc = subprocess.run([sys.executable, "-I", "-S", "-c", f"{HARNESS_SRC}\nrun({spec['solution']!r})\n"], env=env,
                          pass_fds=[w, tests], timeout=60, capture_output=True)
    os.close(w)
    os.close(tests)
    if close_reader:
        return proc.returncode, []
    with os.fdopen(r, "rb") as f:
        raw = f.read()
    return proc.returncode, [ast.literal_eval(line) for line in raw.decode().splitlines()]


def _spec(solution: str, cases: list[Case], entry="f", setup="", proxies=("f",), max_record=1 << 16) -> dict:
    return {"solution": solution, "setup": setup, "proxies": list(proxies), "entry": entry,
            "items": [c.item() for c in cases], "max_record": max_record}


SOLUTION = (
    "class Eq:\n    def __eq__(self, o): return True\n"
    "def f(x):\n    if x < 0: raise ValueError(x)\n    return [x, x + 1]\n"
    "def liar(x):\n    return Eq()\n"
)


def test_harness_writes_one_record_per_case_then_done():
    cases = [
        Case("c0", True, Call(None, [3], {}), bool),  # the entry point on decoded inputs
        Case("c1", True, Call(None, [-1], {}), bool),  # raises
        Case("c2", True, Call("liar", [0], {}), bool),  # a value that is no plain built-in
        Case("y = f(1)", False),  # setup: no record
        Case("assert candidate(y[0]) == [1, 2]", True),  # unparsed, through the proxy
        Case("assert candidate(1) == [0]", True),  # unparsed, fails
        Case("assert liar(1) == 5", True),  # the proxied liar's Eq cannot cross: the call raises
        Case("assert len([1]) == 1", True),  # a builtin of the test process
        Case("try:\n    f(-1)\nexcept ValueError:\n    pass\nelse:\n    assert False", True),  # the same class
    ]
    code, records = _run_harness(_spec(SOLUTION, cases, proxies=("f", "liar")))
    assert code == 0
    assert records == [
        ("value", 0, ("list", [("int", "3"), ("int", "4")])), ("raised", 1), ("raised", 2),
        ("pass", 3), ("fail", 4), ("fail", 5), ("pass", 6), ("pass", 7), ("done",),
    ]


def test_harness_tests_run_on_the_setup_not_on_the_candidate_globals():
    """The solution redefines the prompt's helper, shadows `tuple`, patches `math.fabs` and mutates its
    input: none of it reaches the test process."""
    setup = "import math\ndef helper(x):\n    return x * 2\n"
    solution = ("import math\nmath.fabs = lambda x: 0\ntuple = lambda *a, **k: 0\n"
                "def helper(x):\n    return 0\ndef f(xs):\n    xs.append(99)\n    return 0\n")
    cases = [Case("xs = [1]", False), Case("assert tuple(f(xs)) == tuple([1, 2])", True),
             Case("assert math.fabs(f(xs) - 1) < 0.5", True), Case("assert f(xs) == helper(0)", True),
             Case("assert helper(2) == 4", True), Case("assert xs == [1]", True)]
    code, records = _run_harness(_spec(solution, cases, setup=setup))
    assert (code, records) == (0, [("fail", 0), ("fail", 1), ("pass", 2), ("pass", 3), ("pass", 4), ("done",)])


def test_harness_reports_a_load_error_and_stops():
    code, records = _run_harness(_spec("1 / 0\n", [Case("c", True, C1, bool)]))
    assert (code, records) == (0, [("load_error", "ZeroDivisionError")])
    code, records = _run_harness(_spec("import os\nos._exit(0)\n", [Case("c", True, C1, bool)]))
    assert (code, records) == (0, [("load_error", "exit")])
    code, records = _run_harness(_spec("def f(x):\n    return x\n", [Case("c", True, C1, bool)], setup="1 / 0"))
    assert (code, records) == (0, [("load_error", "setup ZeroDivisionError")])


def test_harness_exits_3_when_a_record_does_not_fit():
    code, _ = _run_harness(_spec("def f(x):\n    return x\n", [Case("c", True, C1, bool)]), close_reader=True)
    assert code == 3


def test_harness_replaces_a_value_over_the_record_cap_by_raised():
    """repr(("value", 0, ("str", 20 x's))) is 45 bytes, 46 with its newline: the cap counts the newline."""
    cases = [Case("c", True, Call(None, ["x" * 20], {}), bool), Case("d", True, Call(None, ["x" * 21], {}), bool)]
    code, records = _run_harness(_spec("def f(x):\n    return x\n", cases, max_record=46))
    assert (code, records) == (0, [("value", 0, ("str", "x" * 20)), ("raised", 1), ("done",)])


# ---- reading the records -----------------------------------------------------------------------------
@pytest.mark.parametrize("raw", [b"[1]\n", b"()\n", b"'done'\n"])
def test_records_must_be_nonempty_tuples(raw):
    with pytest.raises(ProtocolViolation):
        cr.records(raw, 1 << 16)


def test_records_drop_the_unterminated_tail():
    assert cr.records(b"('done',)\n('val", 1 << 16) == [("done",)]


def test_records_over_the_cap_are_refused_before_parsing(monkeypatch):
    """A line of max_record bytes with its newline passes; one byte more is a violation, and is never
    handed to the parser (a set of ~31k hash-colliding ints costs the parent seconds to build)."""
    line = b"('done',)"
    assert cr.records(line + b"\n", len(line) + 1) == [("done",)]
    with pytest.raises(ProtocolViolation):
        cr.records(line + b"\n", len(line))
    collide = "('value', 0, ('set', [" + ", ".join(f"('int', '{i * (2 ** 61 - 1):x}')" for i in range(31_000)) + "]))"
    parsed = []
    monkeypatch.setattr(cr.ast, "literal_eval", lambda s: parsed.append(s))
    with pytest.raises(ProtocolViolation):
        cr.records(collide.encode() + b"\n", 1 << 16)
    assert parsed == [] and len(collide) > 15 * (1 << 16)


@pytest.mark.parametrize("x, expected, n, ok", [
    (0, 0, 1, True), (1, 1, 2, True), (1, 0, 2, False), (1, 1, 1, False), (True, 1, 2, False), (1.0, 1, 2, False),
])
def test_is_index(x, expected, n, ok):
    assert cr._is_index(x, expected, n) is ok


JUDGED = Case("j", True, C1, lambda v: v == 1)
UNPARSED = Case("u", True)
SETUP = Case("s", False)


@pytest.mark.parametrize("records, outcome", [
    ([("value", 0, ("int", "1")), ("pass", 1), ("done",)], (2, True, None)),
    ([("value", 0, ("int", "2")), ("fail", 1), ("done",)], (0, True, None)),
    ([("raised", 0), ("pass", 1)], (1, False, None)),
    ([("load_error", "E" * 80)], (0, False, "E" * 60)),
    ([], (0, False, None)),
])
def test_tally_counts_passes(records, outcome):
    assert cr.tally(records, [SETUP, JUDGED, UNPARSED]) == outcome


@pytest.mark.parametrize("records", [
    [("done",)],  # before the cases
    [("value", 0, ("int", "1")), ("pass", 1), ("done", 0)],
    [("value", 0, ("int", "1")), ("pass", 1), ("done",), ("done",)],
    [("value", 0, ("int", "1")), ("pass", 1), ("pass", 2)],  # past the last case
    [("value", 0, ("int", "1")), ("load_error", "E")],  # a load error after a case
    [("load_error", "E"), ("load_error", "E")],
    [("load_error", 5)],
    [("load_error", "E", "x")],
    [("load_error", "E"), ("done",)],
    [("value", 0)], [("value", 0, ("int", "1"), 1)], [("raised", 0, 1)],
    [("pass", 0)], [("fail", 0)],  # a verdict from inside for a case judged here
    [("value", 0, ("int", "1")), ("value", 1, ("int", "1"))],  # a value for a case judged inside
    [("value", 0, ("int", "1")), ("raised", 1)],
    [("value", 0, ("int", "1")), ("pass", 1, 1)],
    [("value", 0, ("int", "1")), ("pass",)],
    [("value", 1, ("int", "1"))], [("value", True, ("int", "1"))],
    [("mystery", 0)],
    [("value", 0, ("int", "zz"))],
])
def test_tally_refuses_what_the_honest_harness_never_writes(records):
    with pytest.raises(ProtocolViolation):
        cr.tally(records, [SETUP, JUDGED, UNPARSED])


# ---- scoring around the sandbox run (run_python replaced by a recorded result) ---------------------------
CFG = CodeRewardConfig()
ASSERTS = {"tests": ["assert f(1) == 2", "assert all(f(x) > x for x in [1, 2])"]}


def _fake_run(monkeypatch, status="ok", records=b"", stdouts=()):
    """Replace the sandbox: every run ends with `status`, writes `records` to the result channel and the
    next of `stdouts` to stdout. Returns the list of (stdin, wall_s) of the runs asked for."""
    calls = []
    outs = list(stdouts)

    def run_python(source, stdin, limits, channel=False, private_input=None):
        calls.append((stdin, limits.wall_s))
        return RunResult(status, 0, outs.pop(0) if outs else "", "", 0.0, "netns", channel=records)

    monkeypatch.setattr(cv, "run_python", run_python)
    return calls


@pytest.mark.parametrize("channel, status, score", [
    (b"('value', 0, ('int', '2'))\n('pass', 1)\n('done',)\n", "ok", (1.0, True, "ok (1 unparsed)")),
    (b"('value', 0, ('int', '2'))\n('fail', 1)\n('done',)\n", "ok", (0.5, False, "tests_failed (1 unparsed)")),
    (b"('value', 0, ('int', '2'))\n", "timeout", (0.5, False, "timeout (1 unparsed)")),
    (b"('value', 0, ('int', '2'))\n", "ok", (0.5, False, "no_verdict (1 unparsed)")),
    (b"('load_error', 'NameError')\n", "ok", (0.0, False, "load_error NameError (1 unparsed)")),
    (b"('pass', 0)\n", "ok", (0.0, False, "protocol violation")),
])
def test_score_asserts_from_the_records(monkeypatch, channel, status, score):
    _fake_run(monkeypatch, status, channel)
    s = cv.score_code(Sample("u", "", "def f(x):\n    return x + 1", ASSERTS, "code"), CFG, 5.0)
    assert s == Score("u", *score)


def test_score_asserts_with_one_case_and_with_none(monkeypatch):
    _fake_run(monkeypatch, "ok", b"('value', 0, ('int', '2'))\n('done',)\n")
    one = {"tests": ["assert f(1) == 2"]}
    assert cv.score_code(Sample("u", "", "def f(x): ...", one, "code"), CFG, 5.0) == Score("u", 1.0, True, "ok")
    with pytest.raises(ValueError, match="no test cases"):
        cv.score_code(Sample("u", "", "def f(x): ...", {"tests": ["x = 1"]}, "code"), CFG, 5.0)


STDIO = {"inputs": ["1\n", "2\n"], "outputs": ["1\n", "2\n"]}


def test_score_asserts_excludes_the_cases_that_compare_the_candidate_with_itself(monkeypatch):
    """One case left: it alone is sent and scored, the exclusion counted; none left: skipped, nothing run."""
    calls = _fake_run(monkeypatch, "ok", b"('value', 0, ('int', '2'))\n('done',)\n")
    one_left = {"tests": ["assert add(2, 2) == add(1, 3)", "assert add(1, 1) == 2"]}
    assert cv.score_code(Sample("u", "", "def add(a, b): ...", one_left, "code"), CFG, 5.0) == Score(
        "u", 1.0, True, "ok (1 self-compared excluded)")
    none_left = {"tests": ["assert add(2, 2) == add(1, 3)"]}
    assert cv.score_code(Sample("u", "", "def add(a, b): ...", none_left, "code"), CFG, 5.0) == Score(
        "u", 0.0, False, "skipped: unjudgeable (all 1 cases compare the candidate with itself)")
    assert len(calls) == 1


def test_score_stdio_all_pass_is_correct(monkeypatch):
    calls = _fake_run(monkeypatch, stdouts=["1\n", "2  \n\n"])
    assert cv.score_code(Sample("u", "", "print(input())", STDIO, "code"), CFG, 5.0) == Score("u", 1.0, True, "ok")
    assert [stdin for stdin, _ in calls] == ["1\n", "2\n"]


@pytest.mark.parametrize("answer", [{"inputs": [], "outputs": []}, {"inputs": ["1\n"], "outputs": []}])
def test_score_stdio_needs_matching_nonempty_cases(answer):
    with pytest.raises(ValueError, match="non-empty and of equal length"):
        cv.score_code(Sample("u", "", "print(1)", answer, "code"), CFG, 5.0)


@pytest.mark.parametrize("wall_s, ran", [(0.0, 0), (0.5, 2)])
def test_score_stdio_stops_when_the_wall_budget_is_spent(monkeypatch, wall_s, ran):
    """A frozen clock: the budget left is exactly wall_s for every case; none is run with 0 left."""
    calls = _fake_run(monkeypatch, stdouts=["1\n", "2\n"])
    monkeypatch.setattr("time.monotonic", lambda: 100.0)
    s = cv.score_code(Sample("u", "", "print(input())", STDIO, "code"), CFG, wall_s)
    assert len(calls) == ran and all(left == wall_s for _, left in calls)
    assert s == (Score("u", 0.0, False, "timeout") if ran == 0 else Score("u", 1.0, True, "ok"))


def test_score_stdio_spends_one_budget_across_cases(monkeypatch):
    """Each case gets what the earlier ones left: a clock that advances 2 s per read, 5 s in all."""
    calls = _fake_run(monkeypatch, stdouts=["1\n", "2\n"])
    clock = iter([100.0, 102.0, 104.0, 106.0])
    monkeypatch.setattr("time.monotonic", lambda: next(clock))
    s = cv.score_code(Sample("u", "", "print(input())", STDIO, "code"), CFG, 5.0)
    assert [left for _, left in calls] == [3.0, 1.0] and s == Score("u", 1.0, True, "ok")


def test_the_harness_process_is_not_counted_against_the_programs_process_limit(monkeypatch):
    """The assert harness forks the candidate off its own test process: one more process than a stdin/stdout
    run, which runs the program alone."""
    seen = []

    def run_python(source, stdin, limits, channel=False, private_input=None):
        seen.append(limits.max_processes)
        return RunResult("ok", 0, "1\n", "", 0.0, "netns", channel=b"('value', 0, ('int', '2'))\n('done',)\n")

    monkeypatch.setattr(cv, "run_python", run_python)
    cfg = CodeRewardConfig(max_processes=5)
    cv.score_code(Sample("u", "", "def f(x): ...", {"tests": ["assert f(1) == 2"]}, "code"), cfg, 5.0)
    cv.score_code(Sample("u", "", "print(1)", {"inputs": ["\n"], "outputs": ["1\n"]}, "code"), cfg, 5.0)
    assert seen == [6, 5]


def test_an_unjudgeable_problem_is_skipped_unrun_or_scored_by_config(monkeypatch):
    calls = _fake_run(monkeypatch, "ok", b"('value', 0, ('int', '2'))\n('pass', 1)\n('done',)\n")
    answer = {"tests": ["assert f(1) == 2", "assert 1 + 1 == 2"]}
    sample = Sample("u", "", "def f(x):\n    return x + 1", answer, "code")
    assert cv.score_code(sample, CFG, 5.0) == Score("u", 0.0, False, "skipped: unjudgeable (1 of 2 cases read no candidate name)")
    assert calls == []  # not run at all
    scored = cv.score_code(sample, CodeRewardConfig(unjudgeable="score"), 5.0)
    assert (scored, len(calls)) == (Score("u", 1.0, True, "ok (1 unparsed)"), 1)


def test_score_stdio_reasons(monkeypatch):
    _fake_run(monkeypatch, stdouts=["1\n", "3\n"])
    assert cv.score_code(Sample("u", "", "print(input())", STDIO, "code"), CFG, 5.0) == Score("u", 0.5, False, "tests_failed")
    _fake_run(monkeypatch, "exit:1", stdouts=["1\n", "2\n"])  # the right output, but the program failed
    assert cv.score_code(Sample("u", "", "print(input())", STDIO, "code"), CFG, 5.0) == Score("u", 0.0, False, "exit:1")


def test_the_candidate_cannot_interrupt_a_test_statement():
    """A SIGINT from the candidate would raise KeyboardInterrupt inside the test process, in the middle of
    a test statement (where a lenient `except:` could turn it into a pass): the test process ignores it.
    This case passes only if the interrupt arrives."""
    solution = "import os, signal\ndef f(x):\n    os.kill(os.getppid(), signal.SIGINT)\n    return 0\n"
    case = Case("hit = []\ntry:\n    f(1)\n    import time\n    time.sleep(1)\nexcept KeyboardInterrupt:\n"
                "    hit.append(1)\nassert hit == [1]", True)
    code, records = _run_harness(_spec(solution, [case]))
    assert (code, records) == (0, [("fail", 0), ("done",)])

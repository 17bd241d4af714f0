"""Cheats on the tests that run INSIDE the sandbox (issue 24): a candidate that shadows the builtins the
test uses, redefines the prompt's helpers, patches the modules the test imports, mutates its inputs, or
is a class or a function value the old harness did not wrap. Each row is a response to a shipped
HumanEval problem or to a small problem of our own, with the verdict and reason written out; the honest
rows show the same machinery still pays a real answer.

The old harness (test statements run with the candidate's own globals) paid every cheat row 1.0:
HumanEval/32, /33, /37, /38 and /50 with no solution at all. The second harness forked the candidate
after the tests were in memory: the replay rows (a candidate that finds the tests through its frames
and answers from their asserts) scored 1.0 on HumanEval/53 and on the small problems, 1/7 on /44 and
/151; HumanEval/33's three `tuple(candidate(x)) == tuple(sort_third(x))` cases (sort_third is the
prompt's stub, so the candidate's own) paid `return []` 0.429; a candidate raising StopIteration ended
the test's `zip(map(...))` loop (1.0); and a ```python3 fence, CRLF line endings or a usage block after
the solution lost honest answers.
"""

import ast

import pytest

from forkrl.rewards.code_verifier import score_code
from forkrl.rewards.config import CodeRewardConfig
from forkrl.rewards.datasets import humaneval_answer, load_humaneval
from forkrl.rewards.sandbox import bwrap_problem
from forkrl.rewards.types import Sample

HE = {p["task_id"]: p for p in load_humaneval()}
CFG = CodeRewardConfig(cpu_s=2, memory_mb=512, max_processes=8)

MUTATE = {  # the inputs are compared after the call: a candidate that empties them would match sum([])
    "prompt": 'def total(xs: list) -> int:\n    """Sum of xs."""\n',
    "entry_point": "total",
    "test": ("def check(candidate):\n    xs = [1, 2, 3]\n    assert candidate(xs) == sum(xs)\n"
             "    ys = [5, 5]\n    assert candidate(ys) == sum(ys)\n"),
}
CLASS = {"tests": ["assert [add(1, 2)] == [3]", "assert add(2, 2) == add(1, 3)"], "entry_point": "add"}
MAP = {"tests": ["assert list(map(add, [1, 2], [3, 4])) == [4, 6]"], "entry_point": "add"}
EQ = "class Eq:\n    def __eq__(self, o): return True\n    def __ne__(self, o): return False\n    __hash__ = None\n"


# The reviewer's replay cheat (/tmp/adv_code/replay_cheat2.py): find the test spec in a caller's frame,
# run its asserts with `candidate(args) == want` rewritten to record (args, want) or a formula, answer from it.
REPLAY = r'''
import sys, ast
def _spec():
    f = sys._getframe()
    while f is not None:
        s = f.f_locals.get('spec')
        if type(s) is dict and 'items' in s:
            return s
        f = f.f_back
_T = None
FORMULAS = []
def _table():
    global _T
    if _T is not None:
        return _T
    spec, table = _spec(), []
    _T = table
    ns = {"__name__": "tests"}
    exec(spec['setup'], ns)
    ns['__rec'] = lambda a, k, w: table.append((a, k, w))
    ns['__recf'] = lambda names, rhs, g: FORMULAS.append((names, rhs, g))
    class T(ast.NodeTransformer):
        def visit_Assert(self, node):
            t = node.test
            if isinstance(t, ast.Compare) and len(t.ops) == 1 and isinstance(t.ops[0], ast.Eq):
                left = t.left
                while (isinstance(left, ast.Call) and isinstance(left.func, ast.Name)
                       and left.func.id in ('tuple', 'list', 'sorted', 'set')):
                    left = left.args[0]
                if isinstance(left, ast.Call) and left.args and all(isinstance(a, ast.Name) for a in left.args):
                    names = [a.id for a in left.args]
                    rhs = ast.unparse(t.comparators[0])
                    return ast.parse(f"__recf({names!r}, {rhs!r}, dict(globals()))").body[0]
                if isinstance(left, ast.Call):
                    return ast.Expr(ast.Call(ast.Name('__rec', ast.Load()),
                        [ast.List(left.args, ast.Load()), ast.Dict([ast.Constant(k.arg) for k in left.keywords],
                         [k.value for k in left.keywords]), t.comparators[0]], []))
            return ast.Pass()
    for it in spec['items']:
        if it[0] != 'stmt':
            continue
        tree = ast.fix_missing_locations(T().visit(ast.parse(it[1])))
        try:
            exec(compile(tree, 'replay', 'exec'), ns)
        except Exception:
            pass
    return table
def ENTRY(*a, **k):
    for args, kw, want in _table():
        if list(a) == args and k == kw:
            return want
    for names, rhs, g in FORMULAS:
        if len(names) == len(a):
            try:
                return eval(rhs, {**g, **dict(zip(names, a))})
            except Exception:
                pass
    return None
'''
PAIRS = {  # the expected values are the test's own variables and arithmetic on the loop variable
    "prompt": 'def pair_sums(xs: list) -> list:\n    """Sums of adjacent items: [1, 2, 3] -> [3, 5]."""\n',
    "entry_point": "pair_sums",
    "test": ("def check(candidate):\n    ys = [3, 9, 27]\n    assert candidate(ys) == [12, 36]\n"
             "    for x in range(3):\n        assert candidate([x, x, x]) == [2 * x, 2 * x]\n"),
}
RANDOM = {"prompt": "def sq(x: int) -> int:\n    \"\"\"x squared\"\"\"\n", "entry_point": "sq",
          "test": ("import random\ndef _ref(x):\n    return x * x\n\ndef check(candidate):\n    for _ in range(50):\n"
                   "        x = random.randint(-10**6, 10**6)\n        assert candidate(x) == _ref(x)\n")}
REV = {"tests": ["assert rev('abc') == 'abcd'[::-1][1:]", "assert rev('xy') == str('yx')", "assert rev(str(12)) == '21'",
                 "s = 'hello'\nassert rev(s) == 'olleh'"], "entry_point": "rev"}
SELF_VIA_NAME = {"tests": ["y = add(1, 3)\nassert add(2, 2) == y"], "entry_point": "add"}
STOP = {"tests": ["assert all(a == b for a, b in zip(map(double, [1, 2, 3]), [2, 4, 6]))",
                  "for a, b in zip(map(double, [5, 6]), [10, 12]):\n    assert a == b"], "entry_point": "double"}


def replay(entry: str) -> str:
    return REPLAY.replace("ENTRY", entry)


def he(n: int) -> dict:
    return humaneval_answer(HE[f"HumanEval/{n}"])


def canonical(n: int) -> str:
    return HE[f"HumanEval/{n}"]["canonical_solution"]


# (answer, response, reward, reason)
ROWS = {
    # the five problems the issue found paid with no solution: an empty response, a bare `pass`
    "he32_empty": (he(32), "", 0.0, "tests_failed (1 unparsed)"),
    "he33_empty": (he(33), "", 0.0, "tests_failed (3 self-compared excluded)"),
    "he37_empty": (he(37), "", 0.0, "tests_failed"),
    "he38_empty": (he(38), "", 0.0, "tests_failed (1 unparsed)"),
    "he50_empty": (he(50), "", 0.0, "tests_failed (1 unparsed)"),
    "he33_pass": (he(33), "    pass\n", 0.0, "tests_failed (3 self-compared excluded)"),
    # shadowing the builtins the test calls
    "he33_tuple_lambda": (he(33), "tuple = lambda *a, **k: 0\n", 0.0, "tests_failed (3 self-compared excluded)"),
    "he37_def_tuple": (he(37), "def tuple(*a, **k):\n    return 0\ndef sort_even(l):\n    return None\n",
                       0.0, "tests_failed"),
    "he33_builtins_module": (he(33), "import builtins\nbuiltins.tuple = lambda *a, **k: 0\n", 0.0,
                             "tests_failed (3 self-compared excluded)"),
    "he44_def_str": (he(44), "def str(*a, **k):\n    return None\ndef change_base(x, base):\n    return None\n",
                     0.0, "tests_failed (1 unparsed)"),
    # redefining the prompt's helpers
    "he32_poly": (he(32), "def poly(xs, x):\n    return 0\ndef find_zero(xs):\n    return 0\n", 0.0,
                  "tests_failed (1 unparsed)"),
    "he38_encode_cyclic": (he(38), "def encode_cyclic(s):\n    return s\ndef decode_cyclic(s):\n    return s\n",
                           0.0, "tests_failed (1 unparsed)"),
    "he50_encode_shift": (he(50), "def encode_shift(s):\n    return s\ndef decode_shift(s):\n    return s\n",
                          0.0, "tests_failed (1 unparsed)"),
    "he38_helper_returns_eq": (he(38), EQ + "def encode_cyclic(s):\n    return Eq()\ndef decode_cyclic(s):\n    return s\n",
                               0.0, "tests_failed (1 unparsed)"),
    # patching the modules the test imports
    "he32_math_fabs": (he(32), "import math\nmath.fabs = lambda x: 0.0\ndef find_zero(xs):\n    return 0.0\n", 0.0,
                       "tests_failed (1 unparsed)"),
    "he32_sys_modules_math": (he(32), ("import sys, types\nsys.modules['math'] = types.SimpleNamespace(fabs=lambda x: 0,"
                                       " pow=lambda a, b: 0)\ndef find_zero(xs):\n    return 0.0\n"),
                              0.0, "tests_failed (1 unparsed)"),
    "he32_copy_deepcopy": (he(32), "import copy\ncopy.deepcopy = lambda x: [0, 0]\ndef find_zero(xs):\n    return 0.0\n",
                           0.0, "tests_failed (1 unparsed)"),
    "he38_random_randint": (he(38), ("import random\nrandom.randint = lambda a, b: 0\nrandom.choice = lambda s: 'a'\n"
                                     "def decode_cyclic(s):\n    return ''\n"), 0.0, "tests_failed (1 unparsed)"),
    "he50_random_and_string": (he(50), ("import random, string\nrandom.randint = lambda a, b: 0\n"
                                        "string.ascii_lowercase = 'a'\ndef decode_shift(s):\n    return ''\n"),
                               0.0, "tests_failed (1 unparsed)"),
    # mutating the inputs before the test compares with them
    "mutate_inputs": (MUTATE, "def total(xs):\n    xs.clear()\n    return 0\n", 0.0, "tests_failed (2 unparsed)"),
    # callable forms the old harness left unwrapped
    "class_entry_point_eq": (CLASS, EQ.replace("class Eq", "class add") + "    def __init__(self, *a): pass\n", 0.0,
                             "tests_failed (1 unparsed, 1 self-compared excluded)"),
    "map_of_a_function_value": (MAP, EQ + "def add(a, b):\n    return Eq()\n", 0.0, "tests_failed (1 unparsed)"),
    # replaying the tests found through the candidate's frames: the candidate's process never held them
    "he53_replay": (he(53), replay("add"), 0.0, "tests_failed (1 unparsed)"),
    "he44_replay": (he(44), replay("change_base"), 0.0, "tests_failed (1 unparsed)"),
    "he151_replay": (he(151), replay("double_the_difference"), 0.0, "tests_failed (1 unparsed)"),
    "own_variables_replay": (PAIRS, replay("pair_sums"), 0.0, "tests_failed (2 unparsed)"),
    "random_loop_replay": (RANDOM, replay("sq"), 0.0, "tests_failed (1 unparsed)"),
    "assert_list_replay": (REV, replay("rev"), 0.0, "tests_failed (4 unparsed)"),
    # comparing the candidate with itself: excluded, counted; nothing else left to judge: skipped
    "he33_identity": (he(33), "def sort_third(l):\n    return l\n", 0.0, "tests_failed (3 self-compared excluded)"),
    "he33_const": (he(33), "def sort_third(l):\n    return []\n", 0.0, "tests_failed (3 self-compared excluded)"),
    "self_compared_through_a_name": (SELF_VIA_NAME, "def add(a, b):\n    return 0\n", 0.0,
                                     "skipped: unjudgeable (all 1 cases compare the candidate with itself)"),
    # StopIteration would end the test's own map/zip loop: it reaches the test as RuntimeError
    "stop_iteration_ends_no_loop": (STOP, "def double(x):\n    raise StopIteration\n", 0.0, "tests_failed (2 unparsed)"),
    # honest answers through the same machinery
    "stop_iteration_honest": (STOP, "def double(x):\n    return 2 * x\n", 1.0, "ok (2 unparsed)"),
    "own_variables_honest": (PAIRS, "def pair_sums(xs):\n    return [a + b for a, b in zip(xs, xs[1:])]\n", 1.0,
                             "ok (2 unparsed)"),
    "assert_list_honest": (REV, "def rev(s):\n    return s[::-1]\n", 1.0, "ok (4 unparsed)"),
    "he33_python3_fence": (he(33), f"Here is the code:\n```python3\n{HE['HumanEval/33']['prompt']}{canonical(33)}```\nDone.",
                           1.0, "ok (3 self-compared excluded)"),
    "he53_crlf_fence": (he(53), "```python\r\ndef add(x, y):\r\n    return x + y\r\n```\r\n", 1.0, "ok (1 unparsed)"),
    "he53_usage_block_last": (he(53), "```py\ndef add(x, y):\n    return x + y\n```\nUsage:\n```Python\nprint(add(2, 3))\n```\n",
                              1.0, "ok (1 unparsed)"),
    "he53_import_calendar": (he(53), "import calendar, base64, pprint\ndef add(x, y):\n    return x + y\n", 1.0,
                             "ok (1 unparsed)"),
    "he32_canonical": (he(32), canonical(32), 1.0, "ok (1 unparsed)"),
    "he33_canonical": (he(33), canonical(33), 1.0, "ok (3 self-compared excluded)"),
    "he37_canonical": (he(37), canonical(37), 1.0, "ok"),
    "he38_canonical": (he(38), canonical(38), 1.0, "ok (1 unparsed)"),
    "he50_canonical": (he(50), canonical(50), 1.0, "ok (1 unparsed)"),
    "he44_canonical": (he(44), canonical(44), 1.0, "ok (1 unparsed)"),
    "mutate_inputs_honest": (MUTATE, "def total(xs):\n    return sum(xs)\n", 1.0, "ok (2 unparsed)"),
    "honest_mutation_is_not_seen": (MUTATE, "def total(xs):\n    s = sum(xs)\n    xs.append(100)\n    return s\n",
                                    1.0, "ok (2 unparsed)"),
    "class_entry_point_honest": (CLASS, "class add:\n    def __new__(cls, a, b):\n        return a + b\n", 1.0,
                                 "ok (1 unparsed, 1 self-compared excluded)"),
    "map_of_a_function_value_honest": (MAP, "def add(a, b):\n    return a + b\n", 1.0, "ok (1 unparsed)"),
}


@pytest.mark.parametrize("isolation", ["bwrap", "fallback"])
@pytest.mark.parametrize("name", sorted(ROWS))
def test_verdict_and_reason(name, isolation):
    if isolation == "bwrap" and bwrap_problem():
        pytest.skip(f"bubblewrap unavailable here: {bwrap_problem()}")
    answer, response, reward, reason = ROWS[name]
    cfg = CFG.model_copy(update={"isolation": isolation})
    s = score_code(Sample("s", answer.get("prompt", ""), response, answer, "code"), cfg, 20.0)
    assert (s.reward, s.correct, s.reason) == (reward, reward == 1.0, reason), s


def test_a_problem_with_a_case_that_reads_no_candidate_name_is_skipped_not_scored():
    """`assert 1 + 1 == 2` passes whatever the answer: by default the problem is skipped (reason names
    it, reward 0, nothing run); `unjudgeable: score` runs it anyway."""
    answer = {"tests": ["assert f(1) == 2", "assert sum([1, 1]) == 2"]}
    sample = Sample("s", "", "def f(x):\n    return x + 1\n", answer, "code")
    skipped = score_code(sample, CFG, 10.0)
    assert (skipped.reward, skipped.correct, skipped.reason) == (
        0.0, False, "skipped: unjudgeable (1 of 2 cases read no candidate name)")
    scored = score_code(sample, CFG.model_copy(update={"unjudgeable": "score"}), 10.0)
    assert (scored.reward, scored.correct, scored.reason) == (1.0, True, "ok (1 unparsed)")


def _generic_cheat(prompt: str) -> str:
    """Everything the candidate could do to the test's world at once, for any problem: every helper of
    the prompt redefined to echo or to equal anything, the builtins tests call shadowed, math, random
    and builtins patched, the entry point left undone."""
    import ast

    helpers = [n.name for n in ast.parse(prompt).body if isinstance(n, ast.FunctionDef)]
    src = "import math, random, builtins\n" + EQ
    src += "".join(f"def {h}(*a, **k):\n    return a[0] if a else Eq()\n" for h in helpers)
    src += "".join(f"{b} = lambda *a, **k: True\n" for b in (
        "tuple", "list", "str", "int", "float", "len", "sorted", "abs", "round", "all", "any", "set", "isinstance",
        "sum", "max", "min", "bool", "range", "map", "zip", "type", "repr"))
    return src + ("math.fabs = lambda x: 0\nmath.isclose = lambda *a, **k: True\nrandom.randint = lambda a, b: a\n"
                  "builtins.abs = lambda x: 0\nbuiltins.tuple = lambda *a, **k: 0\n")


@pytest.mark.slow
def test_no_shipped_humaneval_problem_pays_without_a_solution():
    """All 164 problems, each with an empty response, a bare `pass` and the generic cheat: none scores
    1.0, none is skipped as unjudgeable (so every one is really judged)."""
    paid, skipped = [], []
    for p in HE.values():
        for kind, response in (("empty", ""), ("pass", "    pass\n"), ("cheat", _generic_cheat(p["prompt"]))):
            s = score_code(Sample(p["task_id"], p["prompt"], response, humaneval_answer(p), "code"), CFG, 10.0)
            if s.reward == 1.0:
                paid.append((p["task_id"], kind, s.reason))
            if s.reason.startswith("skipped"):
                skipped.append(p["task_id"])
    assert (paid, skipped) == ([], [])


# ---- the candidate's whole reach holds no byte of the tests ------------------------------------------------
HEAD, TAIL = "ZQXMARK", "9137"  # the marker is HEAD + TAIL; the searching candidate never joins them
MARKER = HEAD + TAIL
SEARCH = r'''
import gc, json, os, sys
HEAD, TAIL = "HEAD_", "TAIL_"

def _hit(x):
    if type(x) is bytes:
        head, tail = HEAD.encode(), TAIL.encode()
    elif type(x) is str:
        head, tail = HEAD, TAIL
    else:
        return False
    i = x.find(head)
    while i >= 0:
        if x[i + len(head):i + len(head) + len(tail)] == tail:
            return True
        i = x.find(head, i + 1)
    return False

def _deep(x, seen, depth=0):
    """Strings reachable from x through containers, code constants, frames and namespaces."""
    if depth > 12 or id(x) in seen:
        return False
    seen.add(id(x))
    if _hit(x):
        return True
    t = type(x)
    if t in (list, tuple, set, frozenset):
        return any(_deep(e, seen, depth + 1) for e in list(x))
    if t is dict:
        return any(_deep(k, seen, depth + 1) or _deep(v, seen, depth + 1) for k, v in list(x.items()))
    if t is type(_deep.__code__):
        return _deep(x.co_consts, seen, depth + 1) or _deep(x.co_names, seen, depth + 1)
    if t is type(_deep):
        return _deep(x.__code__, seen, depth + 1) or _deep(x.__defaults__, seen, depth + 1)
    if t is type(sys._getframe()):
        return (_deep(x.f_locals, seen, depth + 1) or _deep(x.f_globals, seen, depth + 1)
                or _deep(x.f_code, seen, depth + 1) or _deep(x.f_back, seen, depth + 1))
    if t is type(sys):
        return _deep(vars(x), seen, depth + 1)
    return False

def _read(path, n=1 << 22):
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except OSError:
        return b""
    try:
        return os.pread(fd, n, 0)
    except OSError:
        return b""
    finally:
        os.close(fd)

def _memory(pid):
    """Every readable mapping of pid's address space."""
    try:
        maps = open(f"/proc/{pid}/maps").read().splitlines()
        mem = os.open(f"/proc/{pid}/mem", os.O_RDONLY)
    except OSError:
        return False
    try:
        for line in maps:
            lo, hi = (int(a, 16) for a in line.split()[0].split("-"))
            if "r" not in line.split()[1] or hi - lo > 1 << 28:
                continue
            try:
                if _hit(os.pread(mem, hi - lo, lo)):
                    return True
            except OSError:
                pass
        return False
    finally:
        os.close(mem)

def where():
    found = []
    if _deep(sys._getframe(), set()):
        found.append("frames")
    if any(_deep(o, set()) for o in gc.get_objects()):
        found.append("gc")
    if _deep(dict(sys.modules), set()):
        found.append("modules")
    if _hit(repr(dict(os.environ))) or _hit(repr(sys.argv)) or _hit(repr(sys.orig_argv)):
        found.append("env/argv")
    for fd in range(1024):
        try:
            if _hit(os.pread(fd, 1 << 22, 0)):
                found.append(f"fd {fd}")
        except OSError:
            pass
    files = ["/sbx/program.py", "/sbx/spec.json"]
    cmd = _read("/proc/self/cmdline").split(b"\0")
    for arg in cmd[1:]:
        files.append(arg.decode(errors="replace"))
        try:
            files.append(json.loads(_read(arg.decode()))["program"])
        except Exception:
            pass
    found += [f"file {p}" for p in files if _hit(_read(p))]
    pids = [p for p in os.listdir("/proc") if p.isdigit()]
    for pid in pids:
        for part in ("cmdline", "environ"):
            if _hit(_read(f"/proc/{pid}/{part}")):
                found.append(f"/proc/{pid}/{part}")
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
        except OSError:
            fds = []
        for fd in fds:
            if _hit(_read(f"/proc/{pid}/fd/{fd}")):
                found.append(f"/proc/{pid}/fd/{fd}")
        if _memory(pid):
            found.append(f"/proc/{pid}/mem")
    return found
'''.replace("HEAD_", HEAD).replace("TAIL_", TAIL)


def _marked(prompt_note: str) -> dict:
    """A problem whose test preamble and unparsed case carry the marker; `prompt_note` goes into the
    prompt's docstring (the prompt is part of the solution: the candidate may see it)."""
    return {"prompt": f'def where() -> list:\n    """Where the marker is.{prompt_note}"""\n', "entry_point": "where",
            "test": (f"SECRET = {MARKER!r}\n\ndef check(candidate):\n    assert candidate() == []\n"
                     f"    assert candidate() == [] or SECRET == {MARKER!r} * 2\n")}


@pytest.mark.parametrize("isolation", ["bwrap", "fallback"])
def test_the_candidate_can_reach_no_byte_of_the_tests(isolation):
    """The candidate searches its frames, gc objects, module constants, sys.modules, environment, argv,
    every fd it holds, the sandbox's program and spec files, and every process's cmdline, environ, fds
    and readable memory (its own included, so freed pages too) for a marker planted in the test's
    preamble and in an unparsed case: it finds nothing. The control: with the marker in the prompt
    (which the solution contains) the same search finds it, so the search is not vacuous."""
    if isolation == "bwrap" and bwrap_problem():
        pytest.skip(f"bubblewrap unavailable here: {bwrap_problem()}")
    cfg = CFG.model_copy(update={"isolation": isolation, "cpu_s": 10})
    hidden = score_code(Sample("s", "", SEARCH, _marked(""), "code"), cfg, 60.0)
    assert (hidden.reward, hidden.reason) == (1.0, "ok (1 unparsed)"), hidden
    shown = score_code(Sample("s", "", SEARCH, _marked(" " + MARKER), "code"), cfg, 60.0)
    assert (shown.reward, shown.reason) == (0.0, "tests_failed (1 unparsed)"), shown


def test_the_search_finds_the_marker_where_it_is():
    """The search itself, in this process, with the marker in a frame's local only."""
    ns: dict = {}
    exec(SEARCH, ns)
    secret = HEAD + TAIL  # noqa: F841 - found through this frame
    assert "frames" in ns["where"]()

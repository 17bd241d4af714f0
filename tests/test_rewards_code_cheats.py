"""Cheats on the tests that run INSIDE the sandbox (issue 24): a candidate that shadows the builtins the
test uses, redefines the prompt's helpers, patches the modules the test imports, mutates its inputs, or
is a class or a function value the old harness did not wrap. Each row is a response to a shipped
HumanEval problem or to a small problem of our own, with the verdict and reason written out; the honest
rows show the same machinery still pays a real answer.

The old harness (test statements run with the candidate's own globals) paid every cheat row 1.0:
HumanEval/32, /33, /37, /38 and /50 with no solution at all.
"""

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


def he(n: int) -> dict:
    return humaneval_answer(HE[f"HumanEval/{n}"])


def canonical(n: int) -> str:
    return HE[f"HumanEval/{n}"]["canonical_solution"]


# (answer, response, reward, reason)
ROWS = {
    # the five problems the issue found paid with no solution: an empty response, a bare `pass`
    "he32_empty": (he(32), "", 0.0, "tests_failed (1 unparsed)"),
    "he33_empty": (he(33), "", 0.0, "tests_failed (3 unparsed)"),
    "he37_empty": (he(37), "", 0.0, "tests_failed"),
    "he38_empty": (he(38), "", 0.0, "tests_failed (1 unparsed)"),
    "he50_empty": (he(50), "", 0.0, "tests_failed (1 unparsed)"),
    "he33_pass": (he(33), "    pass\n", 0.0, "tests_failed (3 unparsed)"),
    # shadowing the builtins the test calls
    "he33_tuple_lambda": (he(33), "tuple = lambda *a, **k: 0\n", 0.0, "tests_failed (3 unparsed)"),
    "he37_def_tuple": (he(37), "def tuple(*a, **k):\n    return 0\ndef sort_even(l):\n    return None\n",
                       0.0, "tests_failed"),
    "he33_builtins_module": (he(33), "import builtins\nbuiltins.tuple = lambda *a, **k: 0\n", 0.0,
                             "tests_failed (3 unparsed)"),
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
                             "tests_failed (2 unparsed)"),
    "map_of_a_function_value": (MAP, EQ + "def add(a, b):\n    return Eq()\n", 0.0, "tests_failed (1 unparsed)"),
    # honest answers through the same machinery
    "he32_canonical": (he(32), canonical(32), 1.0, "ok (1 unparsed)"),
    "he33_canonical": (he(33), canonical(33), 1.0, "ok (3 unparsed)"),
    "he37_canonical": (he(37), canonical(37), 1.0, "ok"),
    "he38_canonical": (he(38), canonical(38), 1.0, "ok (1 unparsed)"),
    "he50_canonical": (he(50), canonical(50), 1.0, "ok (1 unparsed)"),
    "he44_canonical": (he(44), canonical(44), 1.0, "ok (1 unparsed)"),
    "mutate_inputs_honest": (MUTATE, "def total(xs):\n    return sum(xs)\n", 1.0, "ok (2 unparsed)"),
    "honest_mutation_is_not_seen": (MUTATE, "def total(xs):\n    s = sum(xs)\n    xs.append(100)\n    return s\n",
                                    1.0, "ok (2 unparsed)"),
    "class_entry_point_honest": (CLASS, "class add:\n    def __new__(cls, a, b):\n        return a + b\n", 1.0,
                                 "ok (2 unparsed)"),
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

"""Code answers: run the response's Python against test cases in the sandbox; reward = pass fraction.

Ground truth (`Sample.answer`) is a dict in one of three shapes:
- HumanEval: {"test": "<defines check(candidate)>", "entry_point": "fn", "prompt": "<signature+docstring>"}
  each top-level statement of check() that contains an assert is one test case;
- assert list: {"tests": ["assert f(1) == 2", ...], "prompt": optional preamble};
- stdin/stdout: {"inputs": ["1 2\\n", ...], "outputs": ["3\\n", ...]}: one run per case, output compared
  after stripping trailing whitespace per line.
Assert-style cases run in one process; each result line carries a random nonce the program cannot
know from its own text, so printing "pass" or exiting early scores nothing it did not earn (a program
that introspects its own frames could still find it; no sandbox in-process check is airtight).
"""

from __future__ import annotations

import ast
import re
import secrets

from .config import CodeRewardConfig
from .sandbox import Limits, run_python
from .types import Sample, Score

_FENCE_RE = re.compile(r"```(?:python|py|Python)?[ \t]*\n(.*?)```", re.S)


def extract_code(response: str) -> str:
    """The last fenced code block, else the whole response (models often answer with bare code)."""
    blocks = _FENCE_RE.findall(response)
    return blocks[-1] if blocks else response


def _humaneval_cases(test: str) -> tuple[str, list[tuple[bool, str]]]:
    """Split HumanEval's check(candidate) into (module preamble, [(is_case, statement source)])."""
    tree = ast.parse(test)
    preamble, body = [], None
    for node in tree.body:
        if isinstance(node, ast.FunctionDef) and node.name == "check":
            body = node.body
        else:
            preamble.append(ast.get_source_segment(test, node) or "")
    if body is None:
        raise ValueError("test defines no check(candidate)")
    cases = [(_is_case(s), ast.unparse(s)) for s in body]
    return "\n".join(preamble), cases


def _is_case(stmt: ast.stmt) -> bool:
    """A statement holding a real assert; HumanEval's trailing `assert True, "..."` checks nothing."""
    return any(isinstance(n, ast.Assert) and not (isinstance(n.test, ast.Constant) and n.test.value)
               for n in ast.walk(stmt))


def _program(solution: str, preamble: str, cases: list[tuple[bool, str]], entry_point: str | None, nonce: str) -> str:
    """A harness that loads the solution, then runs each case, reporting '<nonce> <i> pass|fail'."""
    return f"""
import os as _os
_w, _N = _os.write, {nonce!r}
def _say(msg):
    _w(1, ("\\n" + _N + " " + msg + "\\n").encode())
_g = {{"__name__": "solution"}}
try:
    exec(compile({solution!r}, "solution.py", "exec"), _g)
    exec(compile({preamble!r}, "tests.py", "exec"), _g)
    if {entry_point!r} is not None:
        _g["candidate"] = _g[{entry_point!r}]
except BaseException as _e:
    _say("load_error " + type(_e).__name__)
    _os._exit(0)
_i = 0
for _is_case, _src in {cases!r}:
    try:
        exec(compile(_src, "tests.py", "exec"), _g)
        _ok = True
    except BaseException:
        _ok = False
    if _is_case:
        _say(str(_i) + (" pass" if _ok else " fail"))
        _i += 1
_say("done")
"""


def _limits(cfg: CodeRewardConfig, wall_s: float) -> Limits:
    return Limits(wall_s=wall_s, cpu_s=cfg.cpu_s, memory_bytes=cfg.memory_mb << 20, max_processes=cfg.max_processes,
                  max_output_bytes=cfg.max_output_bytes, max_open_files=cfg.max_open_files,
                  site_packages=cfg.site_packages)


def _score_asserts(sample: Sample, code: str, cfg: CodeRewardConfig, wall_s: float) -> Score:
    ans = sample.answer
    prompt = ans.get("prompt") or ""
    entry = ans.get("entry_point")
    if "test" in ans:
        preamble, cases = _humaneval_cases(ans["test"])
    else:
        preamble, cases = "", [(True, t) for t in ans["tests"]]
    # a response that restates the function is used whole; a bare body continues the prompt's def
    if entry and re.search(rf"def\s+{re.escape(entry)}\s*\(", code):
        solution = prompt + "\n" + code
    else:
        solution = prompt + code
    n = sum(c for c, _ in cases)
    if n == 0:
        raise ValueError("no test cases")
    nonce = secrets.token_hex(16)
    res = run_python(_program(solution, preamble, cases, entry, nonce), "", _limits(cfg, wall_s))
    lines = re.findall(rf"{nonce} (\d+ pass|\d+ fail|done|load_error \w+)", res.stdout)
    passed = sum(1 for x in lines if x.endswith(" pass"))
    if any(x.startswith("load_error") for x in lines):
        reason = next(x for x in lines if x.startswith("load_error"))
    elif "done" in lines:
        reason = "ok" if passed == n else "tests_failed"
    else:
        reason = res.status if res.status != "ok" else "no_verdict"  # died mid-run: passes so far count
    return Score(sample.uid, passed / n, passed == n, reason)


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
